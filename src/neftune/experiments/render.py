"""The report's jinja2 templates (package data in ``templates/``) and how they are rendered.

HTML templates (``*.html.j2``) are autoescaped; Markdown ones (``*.md.j2``) are not, and get the
``md_cell`` filter for table cells. Both keep their trailing newline and drop the newline after a
block tag, so a template line is an output line.
"""

from __future__ import annotations

import base64
import functools
from importlib.resources import files
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

__all__ = ["md_cell", "png_data_uri", "render", "stylesheet"]

#: markupsafe writes quotes as decimal references; the report has always used the spelling of
#: :func:`html.escape`. Mapping one onto the other keeps rebuilt reports byte-identical (an escaped
#: ``&`` can never produce these sequences from text, so nothing else is touched).
_QUOTE_REFERENCES = {"&#39;": "&#x27;", "&#34;": "&quot;"}


def md_cell(text: Any) -> str:
    """A Markdown table cell: ``|`` escaped, newlines as spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def png_data_uri(data: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes, to embed an image in a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("neftune.experiments", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=StrictUndefined,
    )
    env.filters["md_cell"] = md_cell
    return env


@functools.lru_cache(maxsize=1)
def stylesheet() -> Markup:
    """The report's CSS (``templates/report.css``), to inline in a ``<style>`` element."""
    return Markup(files("neftune.experiments").joinpath("templates", "report.css").read_text("utf-8"))


def render(name: str, **context: Any) -> str:
    """Render ``templates/<name>`` with ``context``."""
    text = _environment().get_template(name).render(**context)
    if name.endswith(".html.j2"):
        for decimal, named in _QUOTE_REFERENCES.items():
            text = text.replace(decimal, named)
    return text
