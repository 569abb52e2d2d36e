"""``neftune report``: rebuild an experiment's report from its results.json."""

from __future__ import annotations

from . import options as opts
from .common import console, fail, user_errors
from .grid import print_headline


def report_(
    folder: opts.ExperimentFolder,
) -> None:
    """Rebuild report.html, summary.md and the plots of an experiment from its results.json."""
    from ..experiments.report import build_report, load_results

    try:
        paths = build_report(folder)
        print_headline(load_results(folder), folder)
    except user_errors() as exc:  # ReportError is a ValueError
        fail(str(exc))
    console.print(f"Report: {paths['html']}  (Markdown: {paths['markdown']})")
