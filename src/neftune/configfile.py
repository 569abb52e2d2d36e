"""Config files for the ``neftune`` commands: read YAML or JSON, write the resolved ``config.yaml``.

A config file is one flat mapping of option names to values, the names spelled as on the
command line with ``_`` or ``-`` (``batch_size`` or ``batch-size``, ``learning_rate`` for
``--learning-rate``). Every run and experiment writes the values it actually used as
``config.yaml`` in its folder, so ``neftune train --config runs/a5/config.yaml`` runs it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .io import write_text_atomic

CONFIG_NAME = "config.yaml"


class ConfigFileError(ValueError):
    """A config file that cannot be read or holds something other than option: value pairs."""


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in ``path`` (``.json`` is read as JSON, anything else as YAML, a superset of JSON)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigFileError(f"--config {path}: is a folder; give a .yaml or .json file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"--config {path}: cannot read it ({exc})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(f"--config {path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    except Exception as exc:  # yaml.YAMLError and its subclasses
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigFileError(f"--config {path}: invalid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigFileError(
            f"--config {path}: expected a mapping of option names to values, got {type(data).__name__}"
        )
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigFileError(f"--config {path}: option names must be strings, got {bad[:3]}")
    return dict(data)


def normalize_keys(
    values: Mapping[str, Any], aliases: Mapping[str, str], *, source: str, command: str
) -> dict[str, Any]:
    """``values`` with every key mapped to its parameter name; unknown keys raise, naming them.

    ``aliases``: every accepted spelling (``learning_rate``, ``lr``) -> parameter name (``lr``).
    Dashes and underscores are interchangeable.
    """
    out: dict[str, Any] = {}
    unknown = []
    for key, value in values.items():
        name = aliases.get(key.replace("-", "_"))
        if name is None:
            unknown.append(key)
            continue
        if name in out:
            raise ConfigFileError(f"{source}: {key!r} sets {name!r}, which an earlier key already set")
        out[name] = value
    if unknown:
        known = ", ".join(sorted(set(aliases.values())))
        raise ConfigFileError(
            f"{source}: unknown option{'s' if len(unknown) > 1 else ''} for neftune {command}: "
            f"{', '.join(repr(k) for k in unknown)} (known: {known})"
        )
    return out


def write_config(path: str | Path, values: Mapping[str, Any], *, command: str) -> Path:
    """Write ``values`` as YAML with a header saying how to use the file; atomic."""
    import yaml

    header = (
        f"# Resolved options of this `neftune {command}` (every value it used).\n"
        f"# Rerun: neftune {command} --config {Path(path).as_posix()}"
        + (" --out NEW_FOLDER" if command == "train" else "")
        + "   (options given on the command line override these)\n"
    )
    body = yaml.safe_dump(dict(values), sort_keys=False, allow_unicode=True, default_flow_style=False)
    return write_text_atomic(path, header + body)
