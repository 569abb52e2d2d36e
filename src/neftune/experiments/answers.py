"""Every arm's stored answers, scored per prompt: what the intervals, the length control and the
truncation figures of the report are computed from.

An arm's ``eval/`` folder holds ``per_prompt.json`` (length and score of each answer) and
``generations.json`` (the answers themselves). :func:`load_arm_answers` reads both and
**re-scores the instruction answers with the checkers of this neftune version**
(:func:`neftune.finetune.instructions.checkers.follows_all`), taking each prompt's constraints from the
generation (newer evaluations store them), else from the built-in data regenerated with the
arm's data spec and seed, matched by prompt text, else by position when the request sentence
and the constraint kinds agree. Where none is found the stored scores are kept and the arm says
so (``rescored``).

Each answer's ``truncated`` flag (it reached the generation cap without ending) comes from
``per_prompt.json``; evaluations made before the flag existed get it inferred from the answer's
token count against the cap, re-encoded with the model's tokenizer (:func:`infer_truncated`),
or ``None`` (unknown).

:func:`metric_units` turns an arm's rows into one metric's per-prompt units ``key -> (score sum,
weight, answer length, truncated)``: the arm's metric is ``sum(score) / sum(weight)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..finetune.data.instructions import IFEVAL_SPLIT_SUFFIX
from ..finetune.io import read_json_object
from ..finetune.metrics import PER_PROMPT_FILE

__all__ = [
    "UNIT_METRICS",
    "ArmAnswers",
    "Row",
    "Unit",
    "arm_metric_values",
    "infer_truncated",
    "load_arm_answers",
    "metric_units",
    "rows_from_per_prompt",
]

#: Tokens of slack when a truncation is inferred from a re-encoded answer: re-encoding the
#: stripped text can give a token or two fewer than were generated (a leading space token, a
#: merge across the cut), so counts within this of the cap are "unknown".
INFER_SLACK = 2

#: Metrics computed from per-prompt rows (prefixes and exact names).
UNIT_METRICS = ("accuracy/", "ifeval/", "length_chars/ifeval", "length_chars", "truncated/")


@dataclass(frozen=True)
class Row:
    """One scored answer. ``strict`` / ``loose``: per-constraint results (instruction prompts);
    ``correct``: the checked task answer (built-in tasks); ``prompt``: its text when known."""

    split: str
    index: int
    length: int
    truncated: bool | None
    prompt: str | None = None
    correct: bool | None = None
    kinds: tuple[str, ...] = ()
    strict: tuple[bool, ...] | None = None
    loose: tuple[bool, ...] | None = None

    @property
    def is_instruction(self) -> bool:
        return self.strict is not None

    @property
    def key(self) -> tuple[str, int, str | None]:
        """Identity of the prompt: split, position and a hash of its text (when known), so that
        prompts shared by two seeds have the same key and different prompts do not."""
        digest = hashlib.sha1(self.prompt.encode()).hexdigest()[:12] if self.prompt is not None else None
        return (self.split, self.index, digest)


@dataclass(frozen=True)
class ArmAnswers:
    """An arm's rows and how they were obtained."""

    rows: tuple[Row, ...]
    rescored: int = 0  # instruction answers re-scored with the current checkers
    changed: int = 0  # of those, answers whose strict or loose result changed
    not_rescored: int = 0  # instruction answers whose constraints could not be found
    truncation: str = "recorded"  # "recorded" | "inferred" | "unknown"
    caps: Mapping[str, int] = field(default_factory=dict)  # "ifeval" / "tasks" -> max new tokens


#: One prompt's unit of a metric: (score sum, weight, answer length in characters, truncated).
Unit = tuple[float, float, float, bool | None]


def rows_from_per_prompt(data: Mapping[str, Any]) -> list[Row]:
    """The rows of a ``per_prompt.json`` dict, as stored (no re-scoring, no prompt text)."""
    rows = []
    for split, items in (data.get("splits") or {}).items():
        for i, r in enumerate(items):
            truncated = r.get("truncated")
            common = dict(
                split=split,
                index=i,
                length=int(r["length_chars"]),
                truncated=truncated if isinstance(truncated, bool) else None,
            )
            if "correct" in r:
                rows.append(Row(**common, correct=bool(r["correct"])))
            else:
                rows.append(
                    Row(
                        **common,
                        kinds=tuple(str(k) for k in r.get("kinds") or ()),
                        strict=tuple(bool(h) for h in r["strict"]),
                        loose=tuple(bool(h) for h in r["loose"]),
                    )
                )
    return rows


def infer_truncated(output: str, cap: int, count_tokens: Callable[[str], int] | None) -> bool | None:
    """Whether an answer stored without the flag reached ``cap``: True when its re-encoded token
    count is at least the cap, False when it is more than :data:`INFER_SLACK` below, else None."""
    if count_tokens is None:
        return None
    try:
        n = count_tokens(output)
    except Exception:  # a tokenizer that cannot encode it: unknown, never a crash
        return None
    if n >= cap:
        return True
    return False if n < cap - INFER_SLACK else None


def _caps(eval_dir: Path) -> dict[str, int]:
    """The caps the evaluation used (its config.yaml), with the defaults of the version that wrote
    evaluations without them (tasks 64, instructions 96)."""
    from ..finetune.configfile import load_config_file

    caps = {"tasks": 64, "ifeval": 96}
    try:
        saved = load_config_file(eval_dir / "config.yaml")
    except (ValueError, OSError):
        return caps
    for key, name in (("tasks", "max_new_tokens"), ("ifeval", "ifeval_max_new_tokens")):
        value = saved.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            caps[key] = value
    return caps


ConstraintSource = Callable[[str, int, str, tuple[str, ...]], list[dict[str, Any]] | None]


def builtin_constraints(spec: str, seed: int) -> ConstraintSource | None:
    """A lookup ``(split, index, prompt, kinds) -> constraints`` over the built-in data ``spec`` with
    data seed ``seed`` regenerated by this neftune version; None for other data."""
    if not (spec == "builtin" or str(spec).startswith("builtin:")):
        return None
    from ..finetune.data.bundle import resolve_data

    try:
        bundle = resolve_data(spec, seed=seed)
    except Exception:  # a spec this version cannot build: nothing to match
        return None
    by_text: dict[str, list[dict[str, Any]]] = {}
    for records in bundle.ifeval.values():
        for r in records:
            by_text[r.messages[0]["content"]] = r.meta["constraints"]

    def lookup(split: str, index: int, prompt: str, kinds: tuple[str, ...]) -> list[dict[str, Any]] | None:
        if prompt in by_text:
            return by_text[prompt]
        records = bundle.ifeval.get(split) or []
        if index < len(records):  # same position, same request sentence, same kinds: the wording moved
            r = records[index]
            same_kinds = tuple(c["kind"] for c in r.meta["constraints"]) == kinds
            if same_kinds and prompt.startswith(r.meta.get("request", "\0")):
                return r.meta["constraints"]
        return None

    return lookup


def load_arm_answers(
    eval_dir: str | Path,
    *,
    constraints: ConstraintSource | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> ArmAnswers | None:
    """An arm's scored rows from its ``eval_dir`` (see the module docstring); None without a
    readable ``per_prompt.json``. ``constraints``: where constraints missing from the stored
    generations are looked up (:func:`builtin_constraints`); ``count_tokens``: the model's token
    counter, to infer truncation of answers stored without the flag."""
    from ..finetune.instructions.checkers import follows_all

    eval_dir = Path(eval_dir)
    data = read_json_object(eval_dir / PER_PROMPT_FILE)
    if data is None:
        return None
    try:
        stored = rows_from_per_prompt(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    generations = read_json_object(eval_dir / "generations.json") or {}
    caps = _caps(eval_dir)
    rows: list[Row] = []
    rescored = changed = not_rescored = 0
    inferred = unknown = False
    for row in stored:
        gen_rows = generations.get(row.split)
        gen = gen_rows[row.index] if isinstance(gen_rows, list) and row.index < len(gen_rows) else None
        if not isinstance(gen, Mapping):
            rows.append(row)
            unknown |= row.truncated is None
            if row.is_instruction:
                not_rescored += 1
            continue
        output, prompt = str(gen.get("output", "")), gen.get("prompt")
        prompt = str(prompt) if prompt is not None else None
        truncated = row.truncated
        if truncated is None:
            flag = gen.get("truncated")
            if isinstance(flag, bool):
                truncated = flag
            else:
                cap = caps["ifeval" if row.is_instruction else "tasks"]
                truncated = infer_truncated(output, cap, count_tokens)
                inferred = True
                unknown |= truncated is None
        strict, loose = row.strict, row.loose
        if row.is_instruction:
            found = gen.get("constraints")
            if not isinstance(found, list) and constraints is not None and prompt is not None:
                found = constraints(row.split, row.index, prompt, row.kinds)
            if isinstance(found, list) and len(found) == len(row.kinds or found):
                try:
                    strict = tuple(follows_all(found, output))
                    loose = tuple(follows_all(found, output, loose=True))
                    rescored += 1
                    changed += (strict, loose) != (row.strict, row.loose)
                except (ValueError, TypeError, KeyError):
                    strict, loose = row.strict, row.loose
                    not_rescored += 1
            else:
                not_rescored += 1
        rows.append(
            Row(
                split=row.split,
                index=row.index,
                length=len(output) if gen is not None else row.length,
                truncated=truncated,
                prompt=prompt,
                correct=row.correct,
                kinds=row.kinds,
                strict=strict,
                loose=loose,
            )
        )
    if unknown:
        truncation = "unknown" if all(r.truncated is None for r in rows) else "partly unknown"
    else:
        truncation = "inferred" if inferred else "recorded"
    return ArmAnswers(tuple(rows), rescored, changed, not_rescored, truncation, caps)


# --------------------------------------------------------------------------- per-metric units


def _instruction_rows(rows: Iterable[Row], suffix: str | None) -> list[Row]:
    return [
        r
        for r in rows
        if r.is_instruction and (suffix is None or IFEVAL_SPLIT_SUFFIX.get(r.split, r.split) == suffix)
    ]


def metric_units(rows: Sequence[Row], metric: str) -> dict[tuple[str, int, str | None], Unit] | None:
    """One metric's per-prompt units of an arm's rows; None when the rows do not define it.

    ``accuracy/<split>``: task answers checked right; ``ifeval/prompt_<mode>[/<types>]``: every
    instruction of the prompt followed; ``ifeval/instruction_<mode>[/<types>]``: instructions
    followed, weighted by the prompt's number of instructions; ``length_chars/ifeval`` and
    ``length_chars``: answer lengths (instruction prompts; held-out task prompts);
    ``truncated/ifeval``, ``truncated/tasks``: answers cut at the cap (None when unknown).
    """
    out: dict[tuple[str, int, str | None], Unit] = {}

    def add(r: Row, num: float, den: float) -> None:
        out[r.key] = (float(num), float(den), float(r.length), r.truncated)

    if metric.startswith("accuracy/"):
        split = metric.partition("/")[2]
        for r in rows:
            if r.split == split and r.correct is not None:
                add(r, r.correct, 1)
    elif metric.startswith("ifeval/"):
        _, measure, *rest = metric.split("/")
        level, _, mode = measure.partition("_")
        if level not in ("prompt", "instruction") or mode not in ("strict", "loose") or len(rest) > 1:
            return None
        for r in _instruction_rows(rows, rest[0] if rest else None):
            hits = r.strict if mode == "strict" else r.loose
            if not hits:
                continue
            if level == "prompt":
                add(r, all(hits), 1)
            else:
                add(r, sum(hits), len(hits))
    elif metric == "length_chars/ifeval":
        for r in _instruction_rows(rows, None):
            add(r, r.length, 1)
    elif metric == "length_chars":
        for r in rows:
            if not r.is_instruction and not r.split.startswith("ifeval"):
                add(r, r.length, 1)
    elif metric in ("truncated/ifeval", "truncated/tasks"):
        pick = (
            _instruction_rows(rows, None)
            if metric.endswith("ifeval")
            else [r for r in rows if not r.is_instruction]
        )
        if any(r.truncated is None for r in pick):
            return None
        for r in pick:
            add(r, bool(r.truncated), 1)
    else:
        return None
    return out or None


def arm_metric_values(answers: ArmAnswers, names: Iterable[str]) -> dict[str, float]:
    """The arm's value of each metric of ``names`` that its rows define (``sum(score) / sum(weight)``)."""
    out = {}
    for name in names:
        units = metric_units(answers.rows, name)
        if units:
            den = sum(u[1] for u in units.values())
            if den > 0:
                out[name] = sum(u[0] for u in units.values()) / den
    return out


def row_metric_names(answers: ArmAnswers) -> list[str]:
    """Every metric an arm's rows define."""
    names = set()
    for r in answers.rows:
        if r.is_instruction:
            suffix = IFEVAL_SPLIT_SUFFIX.get(r.split, r.split)
            for level in ("prompt", "instruction"):
                for mode in ("strict", "loose"):
                    names |= {f"ifeval/{level}_{mode}", f"ifeval/{level}_{mode}/{suffix}"}
            names |= {"length_chars/ifeval", "truncated/ifeval"}
        else:
            if r.correct is not None:
                names.add(f"accuracy/{r.split}")
            names |= {"length_chars", "truncated/tasks"}
    return sorted(n for n in names if metric_units(answers.rows, n))


# --------------------------------------------------------------------------- an experiment's arms


def token_counter(model: str, folders: Sequence[Path] = ()) -> Callable[[str], int] | None:
    """Token counter of the model's tokenizer, loaded from the first of ``folders`` that holds one,
    else from the model spec (the presets' tokenizer is SmolLM2's); None when none loads."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return None
    candidates: list[str] = [str(f) for f in folders if (Path(f) / "tokenizer_config.json").is_file()]
    try:
        from ..finetune.models import PRESETS, default_tokenizer_dir

        if model in PRESETS or model == "default":
            candidates.append(str(default_tokenizer_dir()))
        elif Path(model).expanduser().is_dir():
            candidates.append(str(Path(model).expanduser()))
    except Exception:  # the embedded model's package is missing: no preset tokenizer
        pass
    for where in candidates:
        try:
            tok = AutoTokenizer.from_pretrained(where)
        except Exception:
            continue
        return lambda text, tok=tok: len(tok.encode(text, add_special_tokens=False))
    return None


def arm_data(arm: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[str, int]:
    """``(data spec, data seed)`` an arm was trained and evaluated on: its own record, else the
    experiment's (experiments before per-seed data used one data seed for every arm)."""
    spec = arm.get("data") or config.get("data") or ""
    seed = arm.get("data_seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        seed = (config.get("train") or {}).get("data_seed", 0)
    return str(spec), int(seed) if isinstance(seed, int) else 0


def load_experiment_answers(
    folder: str | Path, results: Mapping[str, Any]
) -> dict[tuple[Any, int], ArmAnswers]:
    """:func:`load_arm_answers` of every finished arm of an experiment, by ``(Setting, seed)``.

    The constraints of built-in instruction prompts are regenerated once per (data spec, seed);
    the model's tokenizer is loaded only if some answer lacks its truncation flag.
    """
    from .setting import Setting

    folder = Path(folder)
    config = results.get("config") or {}
    lookups: dict[tuple[str, int], ConstraintSource | None] = {}
    counter: list[Callable[[str], int] | None] = []

    def count(text: str) -> int:
        if not counter:
            counter.append(
                token_counter(str(config.get("model", "")), [folder / str(a.get("dir", "")) for a in arms])
            )
        if counter[0] is None:
            raise LookupError("no tokenizer")
        return counter[0](text)

    out = {}
    arms = [a for a in results.get("arms") or [] if isinstance(a, Mapping) and a.get("status") == "complete"]
    for arm in arms:
        try:
            setting, seed = Setting.from_mapping(arm["setting"]), int(arm["seed"])
        except (KeyError, TypeError, ValueError):
            continue
        spec, data_seed = arm_data(arm, config)
        if (spec, data_seed) not in lookups:
            lookups[(spec, data_seed)] = builtin_constraints(spec, data_seed)
        found = load_arm_answers(
            folder / str(arm.get("dir", "")) / "eval",
            constraints=lookups[(spec, data_seed)],
            count_tokens=count,
        )
        if found is not None:
            out[(setting, seed)] = found
    return out
