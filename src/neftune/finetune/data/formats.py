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
(JSONL), the 0-based item (``file.json[3]``) or row, and the offending field. A field map
(``--field-map instruction=question``) naming a column the file does not have is refused with
the file's columns; records with an empty answer are refused, all of them counted and named.
A record may hold several assistant turns; which of them are trained is
:mod:`neftune.finetune.data.turns`' job.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

from .tasks import FAMILIES, Example

__all__ = [
    "DataError",
    "EmptyAnswer",
    "Record",
    "apply_field_map",
    "check_field_map",
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


class EmptyAnswer(DataError):
    """A record whose answer (an assistant turn) is empty: nothing to train on."""


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
    def __call__(self, message: str, fld: str | None = None, /, *, empty: bool = False) -> NoReturn: ...


def _validate_messages(messages: Any, fail: _Fail, field: str = "messages") -> list[dict[str, str]]:
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
    for i, msg in enumerate(out):
        if msg["role"] == "assistant" and not msg["content"].strip():
            name = f"{field}[{i}].{'value' if field == 'conversations' else 'content'}"
            fail(f"field '{name}' (an assistant turn) is empty", name, empty=True)
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


#: Field names a record may hold (what ``--field-map NAME=COLUMN`` may name as NAME).
FIELDS = ("instruction", "input", "output", "system", "prompt", "completion", "messages", "conversations")
#: Column names often used for the question and the answer, for the --field-map hint.
_QUESTION_NAMES = ("question", "query", "problem", "instruction_text", "input_text", "human", "user", "task")
_ANSWER_NAMES = ("answer", "response", "reply", "solution", "target", "output_text", "assistant", "gpt")


def _field_map_hint(keys: list[str], **known: str) -> str:
    """``--field-map instruction=question,output=answer`` for columns like these, else ''."""
    lower = {k.lower(): k for k in keys}
    pairs = dict(known)
    for target, names in (("instruction", _QUESTION_NAMES), ("output", _ANSWER_NAMES)):
        if target not in pairs:
            found = next((lower[n] for n in names if n in lower), None)
            if found is not None:
                pairs[target] = found
    if len(pairs) < 2:
        return ""
    return ",".join(f"{t}={c}" for t, c in pairs.items())


def parse_record(obj: Any, *, source: str | None = None, where: str | None = None) -> Record:
    """Turn one Alpaca, chat, prompt/completion or ShareGPT object into a :class:`Record`, or raise
    :class:`DataError` (:class:`EmptyAnswer` for an empty answer)."""

    def fail(message: str, fld: str | None = None, /, *, empty: bool = False) -> NoReturn:
        raise (EmptyAnswer if empty else DataError)(message, source=source, where=where, field=fld)

    if not isinstance(obj, dict):
        fail(f"expected a JSON object, got {type(obj).__name__}")
    if "prompt" in obj and "completion" in obj:
        return _prompt_completion(obj, fail)
    if "conversations" in obj:
        turns = _sharegpt_messages(obj["conversations"], fail)
        messages = _validate_messages(turns, fail, "conversations")
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
        if not output.strip():
            fail("field 'output' (the answer) is empty", "output", empty=True)
        prompt = f"{instruction}\n\n{inp}" if inp else instruction
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
        meta = {k: v for k, v in obj.items() if k not in ("instruction", "input", "output", "system")}
        meta.update({"instruction": instruction, "input": inp})
        return Record(messages=messages, meta=meta)
    keys = [str(k) for k in obj]
    if "prompt" in obj or "completion" in obj:
        have, missing = ("prompt", "completion") if "prompt" in obj else ("completion", "prompt")
        answer = _field_map_hint(keys, instruction="prompt").partition("output=")[2]
        hint = (
            f"; if your answers are in {answer!r}: --field-map completion={answer}"
            if answer and have == "prompt"
            else ""
        )
        fail(
            f"field {missing!r} is missing: TRL prompt/completion records need both 'prompt' and "
            f"'completion' (this one has {have!r}){hint}",
            missing,
        )
    shown = ", ".join(repr(k) for k in keys[:8]) or "none"
    suggestion = _field_map_hint(keys)
    fail(
        f"unrecognised record (fields: {shown}); expected 'messages' (chat), 'instruction' and 'output' "
        "(Alpaca), 'prompt' and 'completion' (TRL) or 'conversations' (ShareGPT); other names: --field-map"
        + (f" {suggestion}" if suggestion else " NAME=COLUMN,...")
    )


def _prompt_completion(obj: dict[str, Any], fail: _Fail) -> Record:
    """TRL's prompt/completion layouts: both strings (standard) or both message lists (conversational)."""
    prompt, completion = obj["prompt"], obj["completion"]
    meta = {k: v for k, v in obj.items() if k not in ("prompt", "completion")}
    if isinstance(prompt, str) and isinstance(completion, str):
        if not prompt.strip():
            fail("field 'prompt' is empty", "prompt")
        if not completion.strip():
            fail("field 'completion' (the answer) is empty", "completion", empty=True)
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        return Record(messages=messages, meta={**meta, "instruction": prompt, "input": ""})
    if isinstance(prompt, list) and isinstance(completion, list):
        if len(completion) != 1:
            fail(f"field 'completion' must hold one assistant message, got {len(completion)}", "completion")
        answer = completion[0] if completion else None
        if (
            isinstance(answer, dict)
            and isinstance(answer.get("content"), str)
            and not answer["content"].strip()
        ):
            fail("field 'completion[0].content' (the answer) is empty", "completion[0].content", empty=True)
        messages = _validate_messages([*prompt, *completion], fail)
        return Record(messages=messages, meta=meta)
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
        if target not in FIELDS:
            reversed_hint = f" (reversed? {source}={target})" if source in FIELDS else ""
            raise DataError(
                f"--field-map {part.strip()}: {target!r} is not a field neftune reads{reversed_hint}; NAME is one "
                f"of {', '.join(FIELDS)} and COLUMN your file's name for it, e.g. instruction=question"
            )
        out[target] = source
    return out


def check_field_map(field_map: dict[str, str] | None, objs: Sequence[Any], source: str) -> None:
    """Raise :class:`DataError` when a column ``field_map`` reads is in none of ``objs`` (a typo),
    listing the columns the data has."""
    if not field_map:
        return
    columns: dict[str, None] = {}
    for obj in objs:
        if isinstance(obj, dict):
            columns.update(dict.fromkeys(str(k) for k in obj))
    for target, column in field_map.items():
        if column in columns:
            continue
        close = difflib.get_close_matches(column, list(columns), n=1)
        did_you_mean = f"; did you mean {target}={close[0]}?" if close else ""
        raise DataError(
            f"--field-map {target}={column}: {column!r} is not a column of this data{did_you_mean} "
            f"(its columns: {', '.join(columns) or 'none'})",
            source=source,
        )


def _parse_all(items: Iterable[tuple[str, str | None, Any]], source: str) -> list[Record]:
    """Records of ``(source label, where, object)`` items. Every record with an empty answer is
    counted before one :class:`DataError` names them all (fix the file once, not once per record)."""
    records: list[Record] = []
    empty: list[EmptyAnswer] = []
    total = 0
    for label, where, obj in items:
        total += 1
        try:
            records.append(parse_record(obj, source=label, where=where))
        except EmptyAnswer as exc:
            empty.append(exc)
    if empty:
        # "line 3" (JSONL), "row 4" (tables), "[2]" (a JSON list: the label is "file.json[2]")
        places = [f"{e.source.removeprefix(source)} {e.where or ''}".strip() for e in empty]
        shown = ", ".join(places[:8]) + (f" and {len(places) - 8} more" if len(places) > 8 else "")
        fields = sorted({e.field or "?" for e in empty})
        raise DataError(
            f"{len(empty)} of {total} records have an empty answer (field {', '.join(fields)}): {shown}; "
            "fill them in or remove them (neftune does not train on empty answers)",
            source=source,
            field=fields[0],
        )
    return records


# --------------------------------------------------------------------------- files


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"invalid JSON ({exc.msg} at column {exc.colno})"


def _jsonl_objects(text: str, source: str) -> list[tuple[str, Any]]:
    """``(where, object)`` of every non-blank line."""
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            out.append((where, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(_json_error(exc), source=source, where=where) from None
    return out


def _parse_jsonl(text: str, source: str, field_map: dict[str, str] | None = None) -> list[Record]:
    objs = _jsonl_objects(text, source)
    check_field_map(field_map, [o for _, o in objs], source)
    return _parse_all(((source, where, apply_field_map(o, field_map)) for where, o in objs), source)


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
        check_field_map(field_map, rows, source)
        return _records_from_rows([apply_field_map(r, field_map) for r in rows], source, start=1)
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
        records = _parse_jsonl(text, source, field_map)
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data" and text.lstrip().startswith("{"):
                # JSON Lines saved with a .json suffix.
                return _nonempty(_parse_jsonl(text, source, field_map), source)
            raise DataError(_json_error(exc), source=source, where=f"line {exc.lineno}") from None
        if isinstance(data, dict) and ("messages" in data or "instruction" in data):
            data = [data]
        if not isinstance(data, list):
            raise DataError(f"expected a JSON list of records, got {type(data).__name__}", source=source)
        check_field_map(field_map, data, source)
        records = _parse_all(
            ((f"{source}[{i}]", None, apply_field_map(obj, field_map)) for i, obj in enumerate(data)), source
        )
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
    items = ((source, f"row {i}", row) for i, row in enumerate(rows, start=start))
    return _nonempty(_parse_all(items, source), source)


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
    rows = list(ds)
    check_field_map(field_map, rows[:1] or [dict.fromkeys(ds.column_names)], source)
    return _records_from_rows([apply_field_map(r, field_map) for r in rows], source)


def _load_hub_dataset(name: str, split: str | None, field_map: dict[str, str] | None = None) -> list[Record]:
    try:
        import datasets
    except ImportError:  # pragma: no cover
        raise DataError("loading a hub dataset needs the 'datasets' package", source=name) from None
    split_name = split or "train"
    from ..hub import hub_problem, hub_status

    problem = hub_problem(hub_status(name, "dataset"), name, "--data")
    if problem:
        raise DataError(problem)
    try:
        ds = datasets.load_dataset(name, split=split_name)
    except Exception as exc:
        raise DataError(
            f"{name!r} is not a local file or folder, and loading it as a hub dataset failed "
            f"(no network access, or the dataset or split {split_name!r} does not exist): "
            f"{type(exc).__name__}: {exc}",
            source=name,
        ) from None
    source = f"{name} (split {split_name!r})"
    rows = list(ds)
    check_field_map(field_map, rows[:1] or [dict.fromkeys(ds.column_names)], source)
    return _records_from_rows([apply_field_map(r, field_map) for r in rows], source)


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
