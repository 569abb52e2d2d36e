"""Config files for the ``neftune`` commands: read YAML or JSON, write the resolved ``config.yaml``.

A config file is one flat mapping of option names to values, the names spelled as on the
command line with ``_`` or ``-`` (``batch_size`` or ``batch-size``, ``learning_rate`` for
``--learning-rate``), or as TRL's scripts spell them (``model_name_or_path``, ``dataset_name``,
``use_peft``, ``max_seq_length``, ``neftune_noise_alpha``). Relative paths in it (``model``,
``data``, ``out``) are read from the file's own folder, whatever the working directory.

Every run and experiment writes the values it actually used as ``config.yaml`` in its folder
(paths relative to that folder), so ``neftune train --config runs/a5/config.yaml`` runs it again,
and ``neftune compare --config runs/a5/config.yaml`` compares that run's setting with the baseline.
"""

from __future__ import annotations

import difflib
import json
import os
import re
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


#: Names TRL's and transformers' scripts use in their YAML files that mean one of neftune's options.
TRL_ALIASES = {
    "model_name_or_path": "model",
    "dataset_name": "data",
    "use_peft": "lora",
    "max_seq_length": "max_length",
    "neftune_noise_alpha": "alpha",
}
#: What a config file reading one of :data:`TRL_ALIASES` is told.
_ALIAS_NOTES = {
    "neftune_noise_alpha": "neftune_noise_alpha is read as alpha: neftune adds its own per-sequence noise "
    "(transformers' neftune_noise_alpha hook is never used)",
}
_RESPONSES_ONLY = (
    "neftune always trains on the responses only (multi-turn records: assistant_turns all or last)"
)
#: TRL / transformers names without a neftune option, and what to do instead.
NO_EQUIVALENT = {
    "packing": "neftune trains padding-free batches (padding_free: true): packed, without padding",
    "dataset_text_field": "neftune reads instruction/output, messages, prompt/completion or conversations "
    "records; other column names: field_map",
    "completion_only_loss": _RESPONSES_ONLY,
    "assistant_only_loss": _RESPONSES_ONLY,
    "gradient_checkpointing": "not an option of neftune",
    "torch_dtype": "use bf16: true or false",
    "dtype": "use bf16: true or false",
    "load_in_4bit": "quantised training is not supported",
    "load_in_8bit": "quantised training is not supported",
    "lora_task_type": "neftune's LoRA adapters are always CAUSAL_LM",
}
#: A ``neftune train`` run's per-run settings, and the option of an experiment grid each one becomes.
_RUN_TO_GRID = {
    "alpha": "alphas",
    "distribution": "distributions",
    "schedule": "schedules",
    "scaling": "scalings",
}


def _key(name: str) -> str:
    return name.replace("-", "_")


def read_options(
    values: Mapping[str, Any], aliases: Mapping[str, str], *, source: str, command: str
) -> tuple[dict[str, Any], list[str]]:
    """A config file's ``values`` keyed by the command's parameter names, and notes to show the user.

    ``aliases``: every accepted spelling (``learning_rate``, ``lr``) -> parameter name (``lr``).
    TRL's names (:data:`TRL_ALIASES`) are read as ours. A ``neftune train`` run's config.yaml given
    to a grid command (``compare``, ``sweep``) is the base of the experiment: its alpha joins the
    baseline in ``alphas`` (alpha, distribution, schedule, scaling become the grid's), while its
    ``seed`` and ``out`` are left to the grid (``--seeds``, ``--out``). Unknown names raise
    :class:`ConfigFileError`, with a suggestion for each.
    """
    notes = [_ALIAS_NOTES[_key(k)] for k in values if _key(k) in _ALIAS_NOTES]
    renamed: dict[str, Any] = {}
    for key, value in values.items():
        name = _key(key)
        target = TRL_ALIASES.get(name)
        if name not in aliases and target is not None and (target in aliases or target == "alpha"):
            name = target  # alpha: a grid command reads it as the run's, below
        if name in renamed:
            raise ConfigFileError(f"{source}: {key!r} sets {name!r}, which an earlier key already set")
        renamed[name] = value
    if "alpha" in renamed and "alpha" not in aliases and "alphas" in aliases and "alphas" not in renamed:
        renamed, note = _run_as_grid(renamed, aliases)
        notes.append(f"{source} is a run's: {note}")
    return normalize_keys(renamed, aliases, source=source, command=command), notes


def _run_as_grid(values: dict[str, Any], aliases: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """A run's settings as an experiment's: ``alpha: 5`` -> ``alphas: [0, 5]``; seed and out dropped."""
    out = dict(values)
    said = []
    alpha = out.pop("alpha")
    if isinstance(alpha, int | float) and not isinstance(alpha, bool) and alpha > 0:
        out["alphas"] = [0.0, float(alpha)]
        said.append(f"its alpha {alpha:g} is compared with the baseline (alphas 0,{alpha:g})")
    else:
        said.append(f"its alpha is {alpha!r}, so the alphas come from --alphas / --preset")
    for single, grid in _RUN_TO_GRID.items():
        if single in out and single not in aliases and grid in aliases:
            value = out.pop(single)
            out[grid] = [value]
    dropped = [k for k in ("seed", "out") if out.pop(k, None) is not None]
    if dropped:
        said.append(
            f"its {' and '.join(dropped)} are not used (the seeds come from --seeds / --preset, "
            "the experiment folder from --out)"
        )
    return out, "; ".join(said)


def normalize_keys(
    values: Mapping[str, Any], aliases: Mapping[str, str], *, source: str, command: str
) -> dict[str, Any]:
    """``values`` with every key mapped to its parameter name; unknown keys raise, naming them.

    ``aliases``: every accepted spelling (``learning_rate``, ``lr``) -> parameter name (``lr``).
    Dashes and underscores are interchangeable. Each unknown key gets a hint: TRL names without a
    neftune option say what to use instead, others the closest accepted spelling.
    """
    out: dict[str, Any] = {}
    unknown = []
    for key, value in values.items():
        name = aliases.get(_key(key))
        if name is None:
            unknown.append(f"{key!r}{_hint(_key(key), aliases)}")
            continue
        if name in out:
            raise ConfigFileError(f"{source}: {key!r} sets {name!r}, which an earlier key already set")
        out[name] = value
    if unknown:
        known = ", ".join(sorted(set(aliases.values())))
        raise ConfigFileError(
            f"{source}: unknown option{'s' if len(unknown) > 1 else ''} for neftune {command}: "
            f"{', '.join(unknown)}; known: {known}"
        )
    return out


def _hint(name: str, aliases: Mapping[str, str]) -> str:
    if name in NO_EQUIVALENT:
        return f" (TRL's; {NO_EQUIVALENT[name]})"
    if name in TRL_ALIASES:
        return f" (TRL's name for {TRL_ALIASES[name]}, which this command does not take)"
    accepted = [*aliases, *(k for k, v in TRL_ALIASES.items() if v in aliases)]
    close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


# --------------------------------------------------------------------------- paths

#: Options that hold a path (when they are not a preset, built-in data or a hub id).
PATH_OPTIONS = ("model", "data", "out", "ifeval", "pilot")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FILE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".yaml", ".yml")


def _is_name(key: str, value: str, candidate: Path) -> bool:
    """Whether ``value`` of option ``key`` names something rather than a path: a model preset,
    built-in data, or (nothing at ``candidate``) a hub id."""
    from .models import PRESETS

    if key == "model" and value in (*PRESETS, "default"):
        return True
    if key == "data" and (value == "builtin" or value.startswith("builtin:")):
        return True
    return (
        key != "out"
        and not candidate.exists()
        and bool(_HUB_ID.match(value))
        and not value.lower().endswith(_FILE_SUFFIXES)
    )


def resolve_paths(values: Mapping[str, Any], folder: str | Path) -> dict[str, Any]:
    """``values`` with relative paths (``model``, ``data``, ``out``, ``ifeval``, ``pilot``) read from ``folder`` (the config
    file's), e.g. ``data: train.jsonl`` in ``cfg/x.yaml`` -> ``cfg/train.jsonl``."""
    out = dict(values)
    for key in PATH_OPTIONS:
        value = out.get(key)
        if not isinstance(value, str | os.PathLike) or not str(value).strip():
            continue
        path = Path(value).expanduser()
        if path.is_absolute():
            continue
        candidate = Path(os.path.normpath(Path(folder) / path))
        if not _is_name(key, str(value), candidate):
            out[key] = str(candidate)
    return out


def relative_paths(values: Mapping[str, Any], folder: str | Path) -> dict[str, Any]:
    """The inverse of :func:`resolve_paths`: relative paths rewritten relative to ``folder``, where
    the config file that holds them is written (absolute paths, names and hub ids unchanged)."""
    out = dict(values)
    for key in PATH_OPTIONS:
        value = out.get(key)
        if not isinstance(value, str | os.PathLike) or not str(value).strip():
            continue
        path = Path(value).expanduser()
        if path.is_absolute() or _is_name(key, str(value), path):
            continue
        out[key] = os.path.relpath(path, Path(folder))
    return out


def write_config(path: str | Path, values: Mapping[str, Any], *, command: str) -> Path:
    """Write ``values`` as YAML with a header saying how to use the file; atomic. Relative paths are
    written relative to the file's folder (:func:`relative_paths`), where a reader resolves them."""
    import yaml

    values = relative_paths(values, Path(path).parent)

    header = (
        f"# Resolved options of this `neftune {command}` (every value it used).\n"
        f"# Rerun: neftune {command} --config {Path(path).as_posix()}"
        + (" --out NEW_FOLDER" if command == "train" else "")
        + "   (options given on the command line override these)\n"
        + "# Relative paths are relative to this file's folder.\n"
    )
    body = yaml.safe_dump(dict(values), sort_keys=False, allow_unicode=True, default_flow_style=False)
    return write_text_atomic(path, header + body)
