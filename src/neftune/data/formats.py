"""Loading user instruction data into one chat-shaped :class:`Record` type.

Accepted inputs (see :func:`load_records`):

- Alpaca-style ``.json`` (a list of objects) or ``.jsonl``: ``instruction``,
  optional ``input``, ``output`` and optional ``system``. Other keys go to ``meta``.
- Chat ``.json``/``.jsonl``: ``messages``, a list of ``{"role", "content"}``; an
  optional ``system`` turn first, then ``user``/``assistant`` alternating, ending
  with ``assistant``. Other keys go to ``meta``.
- TRL prompt/completion records: standard (``prompt`` and ``completion`` strings) or
  conversational (both lists of ``{"role", "content"}``: the prompt's turns, then the reply).
- ShareGPT: ``conversations``, a list of ``{"from", "value"}`` with ``from`` one of
  ``system``, ``human``/``user``, ``gpt``/``assistant``.
- ``.csv`` / ``.tsv`` (a header row naming the fields) and ``.parquet`` files of any of these
  flat layouts (Alpaca, standard prompt/completion).
- A folder written by ``datasets`` ``save_to_disk`` (``Dataset`` or ``DatasetDict``).
- A hub dataset id ``owner/name`` (only when no such local path exists).

The format is detected per record from the fields present, so one file may mix
both kinds. Problems raise :class:`DataError` naming the file, the 1-based line
(JSONL), the 0-based item (``file.json[3]``) or row, and the offending field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

from .tasks import FAMILIES, Example

__all__ = [
    "DataError",
    "Record",
    "apply_field_map",
    "examples_to_records",
    "load_records",
    "parse_field_map",
    "parse_record",
    "records_to_examples",
]

ROLES = ("system", "user", "assistant")
#: ShareGPT speaker names -> chat roles.
SHAREGPT_ROLES = {
    "system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant",
}  # fmt: skip
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_TABLE_SUFFIXES = {".csv", ".tsv", ".parquet"}


class DataError(ValueError):
    """Bad or unreadable training data; the message says where and what."""

    def __init__(
        self, message: str, *, source: str | None = None, where: str | None = None, field: str | None = None
    ) -> None:
        self.source = source
        self.where = where
        self.field = field
        self.reason = message
        prefix = " ".join(p for p in (source, where) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


@dataclass
class Record:
    """One training conversation. ``messages[-1]`` is the assistant response."""

    messages: list[dict[str, str]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_messages(self) -> list[dict[str, str]]:
        """Every message before the final assistant response."""
        return self.messages[:-1]

    @property
    def response(self) -> str:
        """The content of the final assistant message."""
        return self.messages[-1]["content"]


# --------------------------------------------------------------------------- parsing one record


class _Fail(Protocol):
    def __call__(self, message: str, fld: str | None = None, /) -> NoReturn: ...


def _validate_messages(messages: Any, fail: _Fail) -> list[dict[str, str]]:
    if not isinstance(messages, list):
        fail(f"field 'messages' must be a list, got {type(messages).__name__}", "messages")
    if not messages:
        fail("field 'messages' is empty", "messages")
    out: list[dict[str, str]] = []
    for i, msg in enumerate(messages):
        name = f"messages[{i}]"
        if not isinstance(msg, dict):
            fail(f"field '{name}' must be an object with 'role' and 'content'", name)
        for key in ("role", "content"):
            if key not in msg:
                fail(f"field '{name}.{key}' is missing", f"{name}.{key}")
            if not isinstance(msg[key], str):
                fail(f"field '{name}.{key}' must be a string, got {type(msg[key]).__name__}", f"{name}.{key}")
        role = msg["role"]
        if role not in ROLES:
            fail(
                f"field '{name}.role' has unknown role {role!r} (expected system, user or assistant)",
                f"{name}.role",
            )
        out.append({"role": role, "content": msg["content"]})
    body = out[1:] if out[0]["role"] == "system" else out
    if not body:
        fail("field 'messages' has only a system message; it needs user and assistant turns", "messages")
    for i, msg in enumerate(body):
        index = i + (len(out) - len(body))
        expected = "user" if i % 2 == 0 else "assistant"
        if msg["role"] != expected:
            fail(
                f"field 'messages[{index}].role' is {msg['role']!r} but {expected!r} was expected "
                "(optional system first, then user/assistant alternating)",
                f"messages[{index}].role",
            )
    if out[-1]["role"] != "assistant":
        fail(
            f"field 'messages[{len(out) - 1}].role': the last message must be from the assistant, "
            f"got {out[-1]['role']!r}",
            f"messages[{len(out) - 1}].role",
        )
    return out


def _string_field(obj: dict[str, Any], key: str, fail: _Fail, *, required: bool) -> str:
    if key not in obj or obj[key] is None:
        if required:
            fail(f"field '{key}' is missing (Alpaca records need 'instruction' and 'output')", key)
        return ""
    value = obj[key]
    if not isinstance(value, str):
        fail(f"field '{key}' must be a string, got {type(value).__name__}", key)
    return value


def parse_record(obj: Any, *, source: str | None = None, where: str | None = None) -> Record:
    """Turn one Alpaca or chat object into a :class:`Record`, or raise :class:`DataError`."""

    def fail(message: str, fld: str | None = None, /) -> NoReturn:
        raise DataError(message, source=source, where=where, field=fld)

    if not isinstance(obj, dict):
        fail(f"expected a JSON object, got {type(obj).__name__}")
    if "prompt" in obj and "completion" in obj:
        return _prompt_completion(obj, fail)
    if "conversations" in obj:
        messages = _validate_messages(_sharegpt_messages(obj["conversations"], fail), fail)
        return Record(messages=messages, meta={k: v for k, v in obj.items() if k != "conversations"})
    if "messages" in obj:
        messages = _validate_messages(obj["messages"], fail)
        meta = {k: v for k, v in obj.items() if k != "messages"}
        return Record(messages=messages, meta=meta)
    if "instruction" in obj or "output" in obj:
        instruction = _string_field(obj, "instruction", fail, required=True)
        inp = _string_field(obj, "input", fail, required=False)
        output = _string_field(obj, "output", fail, required=True)
        system = _string_field(obj, "system", fail, required=False)
        if not instruction.strip():
            fail("field 'instruction' is empty", "instruction")
        prompt = f"{instruction}\n\n{inp}" if inp else instruction
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
        meta = {k: v for k, v in obj.items() if k not in ("instruction", "input", "output", "system")}
        meta.update({"instruction": instruction, "input": inp})
        return Record(messages=messages, meta=meta)
    keys = ", ".join(repr(k) for k in list(obj)[:8]) or "none"
    fail(
        f"unrecognised record (fields: {keys}); expected 'messages' (chat), 'instruction' and 'output' "
        "(Alpaca), 'prompt' and 'completion' (TRL) or 'conversations' (ShareGPT); other names: --field-map"
    )


def _prompt_completion(obj: dict[str, Any], fail: _Fail) -> Record:
    """TRL's prompt/completion layouts: both strings (standard) or both message lists (conversational)."""
    prompt, completion = obj["prompt"], obj["completion"]
    meta = {k: v for k, v in obj.items() if k not in ("prompt", "completion")}
    if isinstance(prompt, str) and isinstance(completion, str):
        if not prompt.strip():
            fail("field 'prompt' is empty", "prompt")
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        return Record(messages=messages, meta={**meta, "instruction": prompt, "input": ""})
    if isinstance(prompt, list) and isinstance(completion, list):
        if len(completion) != 1:
            fail(f"field 'completion' must hold one assistant message, got {len(completion)}", "completion")
        return Record(messages=_validate_messages([*prompt, *completion], fail), meta=meta)
    fail(
        "fields 'prompt' and 'completion' must both be strings (standard) or both lists of "
        f"{{role, content}} messages (conversational); got {type(prompt).__name__} and "
        f"{type(completion).__name__}",
        "prompt",
    )


def _sharegpt_messages(turns: Any, fail: _Fail) -> list[dict[str, Any]]:
    if not isinstance(turns, list):
        fail(f"field 'conversations' must be a list, got {type(turns).__name__}", "conversations")
    out = []
    for i, turn in enumerate(turns):
        name = f"conversations[{i}]"
        if isinstance(turn, dict) and "role" in turn and "content" in turn:
            out.append(turn)
            continue
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            fail(f"field '{name}' must be an object with 'from' and 'value'", name)
        role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            fail(
                f"field '{name}.from' is {turn['from']!r}; expected one of {', '.join(SHAREGPT_ROLES)}",
                f"{name}.from",
            )
        out.append({"role": role, "content": turn["value"]})
    return out


def apply_field_map(obj: Any, field_map: dict[str, str] | None) -> Any:
    """Rename a record's fields: ``{"instruction": "question"}`` reads ``question`` as ``instruction``."""
    if not field_map or not isinstance(obj, dict):
        return obj
    out = {k: v for k, v in obj.items() if k not in field_map.values()}
    for target, source in field_map.items():
        if source in obj:
            out[target] = obj[source]
    return out


def parse_field_map(text: str | None) -> dict[str, str]:
    """``"instruction=question,output=answer"`` -> ``{"instruction": "question", "output": "answer"}``."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        target, sep, source = (x.strip() for x in part.partition("="))
        if not sep or not target or not source:
            raise DataError(
                f"--field-map entries are NAME=COLUMN pairs like instruction=question; got {part!r}"
            )
        out[target] = source
    return out


# --------------------------------------------------------------------------- files


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"invalid JSON ({exc.msg} at column {exc.colno})"


def _iter_jsonl(text: str, source: str, field_map: dict[str, str] | None = None) -> Iterator[Record]:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(_json_error(exc), source=source, where=where) from None
        yield parse_record(apply_field_map(obj, field_map), source=source, where=where)


def _table_rows(path: Path, source: str) -> list[dict[str, Any]]:
    """Rows of a CSV / TSV (header row first) or Parquet file, as dicts."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - pyarrow comes with datasets
            raise DataError("reading Parquet needs pyarrow (pip install pyarrow)", source=source) from None
        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:
            raise DataError(f"cannot read Parquet ({type(exc).__name__}: {exc})", source=source) from None
    import csv

    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=source) from None
    except csv.Error as exc:
        raise DataError(f"invalid {suffix[1:].upper()} ({exc})", source=source) from None
    return [{k: v for k, v in row.items() if k is not None} for row in rows]


def _load_file(path: Path, source: str, field_map: dict[str, str] | None = None) -> list[Record]:
    if path.suffix.lower() in _TABLE_SUFFIXES:
        rows = _table_rows(path, source)
        return _records_from_rows((apply_field_map(r, field_map) for r in rows), source, start=1)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=source) from None
    except OSError as exc:
        raise DataError(f"cannot read file ({exc.strerror})", source=source) from None
    if not text.strip():
        raise DataError("no records found (the file is empty)", source=source)
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        records = list(_iter_jsonl(text, source, field_map))
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data" and text.lstrip().startswith("{"):
                # JSON Lines saved with a .json suffix.
                return _nonempty(list(_iter_jsonl(text, source, field_map)), source)
            raise DataError(_json_error(exc), source=source, where=f"line {exc.lineno}") from None
        if isinstance(data, dict) and ("messages" in data or "instruction" in data):
            data = [data]
        if not isinstance(data, list):
            raise DataError(f"expected a JSON list of records, got {type(data).__name__}", source=source)
        records = [
            parse_record(apply_field_map(obj, field_map), source=f"{source}[{i}]")
            for i, obj in enumerate(data)
        ]
    else:
        raise DataError(
            f"unsupported file type {suffix or '(none)'!r}; use .json, .jsonl, .csv, .tsv or .parquet, "
            "a folder saved with datasets.save_to_disk, or a hub dataset id",
            source=source,
        )
    return _nonempty(records, source)


def _nonempty(records: list[Record], source: str) -> list[Record]:
    if not records:
        raise DataError("no records found", source=source)
    return records


def _records_from_rows(rows: Iterable[dict[str, Any]], source: str, start: int = 0) -> list[Record]:
    return _nonempty(
        [parse_record(row, source=source, where=f"row {i}") for i, row in enumerate(rows, start=start)],
        source,
    )


def _load_saved_dataset(
    path: Path, source: str, split: str | None, field_map: dict[str, str] | None = None
) -> list[Record]:
    if not any((path / name).exists() for name in ("dataset_dict.json", "state.json")):
        raise DataError(
            "folder is not a dataset saved with datasets.save_to_disk (no dataset_dict.json or state.json)",
            source=source,
        )
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is in the [transformers] extra
        raise DataError(
            "loading a saved dataset folder needs the 'datasets' package "
            "(pip install 'neftune[transformers]')",
            source=source,
        ) from None
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(f"cannot load saved dataset ({exc})", source=source) from None
    if isinstance(ds, datasets.DatasetDict):
        name = split or "train"
        if name not in ds:
            raise DataError(f"split {name!r} not found; available: {', '.join(ds)}", source=source)
        ds = ds[name]
        source = f"{source} (split {name!r})"
    return _records_from_rows((apply_field_map(r, field_map) for r in ds), source)


def _load_hub_dataset(name: str, split: str | None, field_map: dict[str, str] | None = None) -> list[Record]:
    try:
        import datasets
    except ImportError:  # pragma: no cover
        raise DataError("loading a hub dataset needs the 'datasets' package", source=name) from None
    split_name = split or "train"
    try:
        ds = datasets.load_dataset(name, split=split_name)
    except Exception as exc:
        raise DataError(
            f"{name!r} is not a local file or folder, and loading it as a hub dataset failed "
            f"(no network access, or the dataset or split {split_name!r} does not exist): "
            f"{type(exc).__name__}: {exc}",
            source=name,
        ) from None
    return _records_from_rows((apply_field_map(r, field_map) for r in ds), f"{name} (split {split_name!r})")


def load_records(
    spec: str | Path, *, split: str | None = None, field_map: dict[str, str] | str | None = None
) -> list[Record]:
    """Load training records from a file, a saved ``datasets`` folder or a hub dataset id.

    ``split`` picks the split of a ``DatasetDict`` folder or hub dataset (default
    ``"train"``); it is ignored for files. ``field_map`` renames fields before parsing
    (``{"instruction": "question"}`` or ``"instruction=question"``: read ``question`` as ``instruction``).
    """
    path = Path(spec)
    source = str(spec)
    fmap = parse_field_map(field_map) if isinstance(field_map, str) or field_map is None else dict(field_map)
    if path.is_dir():
        return _load_saved_dataset(path, source, split, fmap)
    if path.is_file():
        return _load_file(path, source, fmap)
    if isinstance(spec, str) and _HUB_ID.match(spec) and path.suffix.lower() not in {".json", ".jsonl"}:
        if path.parent.is_dir():  # e.g. data/mine with data/ present: a mistyped local path, not a hub id
            raise DataError(
                f"no such file or folder (there is a local folder {str(path.parent)!r})", source=source
            )
        return _load_hub_dataset(spec, split, fmap)
    raise DataError("no such file or folder", source=source)


# --------------------------------------------------------------------------- tasks <-> records


def examples_to_records(examples: Sequence[Example]) -> list[Record]:
    """Chat records for generated task examples; ``meta`` keeps what grading needs."""
    return [
        Record(
            messages=ex.to_messages(),
            meta={
                "family": ex.family,
                "template": ex.template,
                "instruction": ex.instruction,
                "input": ex.input,
            },
        )
        for ex in examples
    ]


def records_to_examples(records: Sequence[Record]) -> list[Example]:
    """Inverse of :func:`examples_to_records`, for records whose ``meta`` names a task family."""
    out = []
    for i, rec in enumerate(records):
        family = rec.meta.get("family")
        if family not in FAMILIES:
            raise DataError(
                f"meta 'family' is {family!r}, not a known task family", where=f"record {i}", field="family"
            )
        if "instruction" in rec.meta:
            instruction, inp = rec.meta["instruction"], rec.meta.get("input", "")
        else:
            instruction, inp = rec.prompt_messages[-1]["content"], ""
        out.append(
            Example(
                instruction=instruction,
                input=inp,
                output=rec.response,
                family=family,
                template=int(rec.meta.get("template", -1)),
            )
        )
    return out
