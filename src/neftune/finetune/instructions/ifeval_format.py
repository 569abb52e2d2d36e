"""IFEval-format files: read prompts and responses, score them as IFEval's evaluation script does.

Input (IFEval's ``input_data.jsonl`` format): one JSON object per line with ``key``, ``prompt``,
``instruction_id_list`` and ``kwargs`` (one object of IFEval arguments per instruction; ``None``
values are dropped, so the Hugging Face copy, which lists every argument name on every row, reads
too). Responses: one ``{"prompt": ..., "response": ...}`` object per line, matched to the inputs by
the exact prompt text, as IFEval's script matches them (when a prompt appears twice, the later
response wins, as there).

Scores: IFEval's four accuracies, ``prompt_strict`` / ``prompt_loose`` (prompts whose every
instruction is followed) and ``instruction_strict`` / ``instruction_loose`` (instructions
followed, over all instructions), plus each instruction id's and each category's (the id's part
before ``:``) accuracy. A malformed line, an unknown id or bad arguments fail before anything is
scored, with ``FILE:LINE`` in the message; so does a prompt without a response.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.formats import DataError, Record
from ..io import read_json_object, write_json_atomic, write_jsonl_atomic
from .ifeval import INSTRUCTION_IDS, check_instruction, loose_variants, normalize_kwargs
from .text import backends, has_language_detector

__all__ = [
    "IFEVAL_FILE_SPLIT",
    "RESULT_FILES",
    "SCHEMA",
    "IFEvalPrompt",
    "check_out_dir",
    "ifeval_records",
    "read_ifeval_inputs",
    "read_responses",
    "score",
    "score_prompt",
    "summarize",
    "write_results",
]

SCHEMA = "neftune.ifeval/1"
IFEVAL_FILE_SPLIT = "ifeval_file"  # the split name of an --ifeval file in per_prompt.json
#: What ``neftune ifeval --out DIR`` writes (IFEval's two result files, neftune's per-prompt file
#: and the scores).
RESULT_FILES = (
    "eval_results_strict.jsonl",
    "eval_results_loose.jsonl",
    "per_prompt.json",
    "ifeval_scores.json",
)


@dataclass(frozen=True)
class IFEvalPrompt:
    """One input line: ``kwargs`` checked and normalised (:func:`~.ifeval.normalize_kwargs`)."""

    key: Any
    prompt: str
    instruction_id_list: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...]
    line: int


def _lines(path: Path, what: str) -> list[tuple[int, Any]]:
    """``(line number, parsed JSON object)`` of every non-blank line; ``DataError`` naming FILE:LINE."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{what} file not found", source=str(path)) from None
    except IsADirectoryError:
        raise DataError(f"{what} must be a JSON Lines file, not a folder", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", source=str(path)) from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"not a JSON object ({exc.msg})", source=f"{path}:{number}") from None
        if not isinstance(obj, dict):
            raise DataError(f"not a JSON object (a {type(obj).__name__})", source=f"{path}:{number}")
        out.append((number, obj))
    return out


def read_ifeval_inputs(path: str | Path) -> list[IFEvalPrompt]:
    """Every prompt of an IFEval-format input file, in file order; ``DataError`` on the first bad line."""
    path = Path(path)
    prompts = []
    for number, obj in _lines(path, "IFEval input"):
        where = f"{path}:{number}"
        missing = [f for f in ("key", "prompt", "instruction_id_list", "kwargs") if f not in obj]
        if missing:
            raise DataError(
                f"missing {', '.join(missing)} (IFEval lines have key, prompt, instruction_id_list, kwargs)",
                source=where,
            )
        prompt, ids, kwargs = obj["prompt"], obj["instruction_id_list"], obj["kwargs"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError("prompt must be a non-empty string", source=where)
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise DataError("instruction_id_list must be a non-empty list of instruction ids", source=where)
        if not isinstance(kwargs, list) or len(kwargs) != len(ids):
            raise DataError(
                f"kwargs must be a list of {len(ids)} objects, one per instruction id; got {kwargs!r}",
                source=where,
            )
        checked = []
        for instruction, args in zip(ids, kwargs):
            if instruction not in INSTRUCTION_IDS:
                raise DataError(
                    f"unknown instruction id {instruction!r}; known: {', '.join(INSTRUCTION_IDS)}",
                    source=where,
                )
            try:
                checked.append(normalize_kwargs(instruction, args))
            except ValueError as exc:
                raise DataError(str(exc), source=where) from None
            if instruction == "language:response_language" and not has_language_detector():
                raise DataError(
                    "language:response_language needs a language detector: pip install 'neftune[ifeval]' "
                    "(langdetect)",
                    source=where,
                )
        prompts.append(IFEvalPrompt(obj["key"], prompt, tuple(ids), tuple(checked), number))
    if not prompts:
        raise DataError("no prompts (every line is blank)", source=str(path))
    return prompts


def read_responses(path: str | Path) -> dict[str, str]:
    """``prompt -> response`` of a responses file (``{"prompt", "response"}`` lines; later lines win)."""
    path = Path(path)
    out: dict[str, str] = {}
    for number, obj in _lines(path, "responses"):
        where = f"{path}:{number}"
        for name in ("prompt", "response"):
            if not isinstance(obj.get(name), str):
                raise DataError(
                    f'{name!r} must be a string (response lines are {{"prompt": ..., "response": ...}})',
                    source=where,
                )
        out[obj["prompt"]] = obj["response"]
    return out


def score_prompt(item: IFEvalPrompt, response: str) -> dict[str, Any]:
    """One prompt's verdicts: ``strict`` and ``loose`` lists (one bool per instruction), IFEval's rules."""
    variants = [v for v in loose_variants(response) if v.strip()]
    strict, loose = [], []
    for instruction, args in zip(item.instruction_id_list, item.kwargs):
        ok = bool(response.strip()) and check_instruction(instruction, args, response)
        strict.append(ok)
        loose.append(ok or any(check_instruction(instruction, args, v) for v in variants))
    return {
        "key": item.key,
        "prompt": item.prompt,
        "response": response,
        "instruction_id_list": list(item.instruction_id_list),
        "strict": strict,
        "loose": loose,
    }


def score(
    prompts: Sequence[IFEvalPrompt], responses: Mapping[str, str], *, source: str = "responses"
) -> list[dict[str, Any]]:
    """:func:`score_prompt` of every prompt with its response; ``DataError`` if any has none."""
    missing = [p for p in prompts if p.prompt not in responses]
    if missing:
        first = missing[0]
        raise DataError(
            f"no response for {len(missing)} of {len(prompts)} prompts (first: key {first.key!r}, input line "
            f"{first.line}: {first.prompt[:60]!r}); responses are matched by the exact prompt text",
            source=source,
        )
    return [score_prompt(p, responses[p.prompt]) for p in prompts]


def _rate(hits: Sequence[bool]) -> float:
    return sum(hits) / len(hits) if hits else float("nan")


def summarize(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """IFEval's accuracies of :func:`score` results: ``metrics`` (``ifeval/prompt_strict`` ...), and
    ``by_instruction`` / ``by_category`` (``{"n", "strict", "loose"}`` each)."""
    metrics = {}
    for mode in ("strict", "loose"):
        metrics[f"ifeval/prompt_{mode}"] = _rate([all(r[mode]) for r in results])
        metrics[f"ifeval/instruction_{mode}"] = _rate([h for r in results for h in r[mode]])
    groups: dict[str, dict[str, list[list[bool]]]] = {"by_instruction": {}, "by_category": {}}
    for r in results:
        for instruction, s, lo in zip(r["instruction_id_list"], r["strict"], r["loose"]):
            for group, name in (("by_instruction", instruction), ("by_category", instruction.split(":")[0])):
                acc = groups[group].setdefault(name, [[], []])
                acc[0].append(s)
                acc[1].append(lo)
    out: dict[str, Any] = {"metrics": metrics}
    for group, table in groups.items():
        out[group] = {
            name: {"n": len(s), "strict": _rate(s), "loose": _rate(lo)}
            for name, (s, lo) in sorted(table.items())
        }
    return out


def ifeval_records(prompts: Sequence[IFEvalPrompt]) -> list[Record]:
    """Prompts as records to generate for (empty assistant turn); each constraint is an IFEval id with
    its arguments, which :func:`neftune.finetune.instructions.follows` checks."""
    return [
        Record(
            messages=[{"role": "user", "content": p.prompt}, {"role": "assistant", "content": ""}],
            meta={
                "ifeval": True,
                "key": p.key,
                "split": IFEVAL_FILE_SPLIT,
                "variant": IFEVAL_FILE_SPLIT,
                "constraints": [{"kind": i, "args": a} for i, a in zip(p.instruction_id_list, p.kwargs)],
            },
        )
        for p in prompts
    ]


# --------------------------------------------------------------------------- writing results


def check_out_dir(out: str | Path, *, overwrite: bool = False) -> Path:
    """Raise ``ValueError`` unless ``out`` may receive :data:`RESULT_FILES`: a new or empty-of-them
    folder; or, with ``overwrite``, one whose files an earlier ``neftune ifeval`` wrote."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    present = [n for n in RESULT_FILES if (out / n).exists()]
    if not present:
        return out
    earlier = read_json_object(out / "ifeval_scores.json")
    ours = earlier is not None and earlier.get("schema") == SCHEMA
    if not ours:
        raise ValueError(
            f"{out} holds {', '.join(present)} that neftune ifeval did not write; nothing was replaced: "
            "choose another --out"
        )
    if not overwrite:
        raise ValueError(f"{out} holds earlier results of neftune ifeval; pass --overwrite to replace them")
    return out


def write_results(
    out: str | Path,
    results: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    provenance: Mapping[str, Any],
) -> Path:
    """Write :data:`RESULT_FILES` into ``out`` (each atomically; the scores file last)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for mode in ("strict", "loose"):
        rows = [
            {
                "instruction_id_list": r["instruction_id_list"],
                "prompt": r["prompt"],
                "response": r["response"],
                "follow_all_instructions": all(r[mode]),
                "follow_instruction_list": r[mode],
            }
            for r in results
        ]
        write_jsonl_atomic(out / f"eval_results_{mode}.jsonl", rows)
    per_prompt = [
        {
            "key": r["key"],
            "length_chars": len(r["response"]),
            "variant": IFEVAL_FILE_SPLIT,
            "kinds": r["instruction_id_list"],
            "strict": r["strict"],
            "loose": r["loose"],
        }
        for r in results
    ]
    write_json_atomic(
        out / "per_prompt.json", {"schema": "neftune.per_prompt/1", "splits": {IFEVAL_FILE_SPLIT: per_prompt}}
    )
    write_json_atomic(
        out / "ifeval_scores.json", {"schema": SCHEMA, **provenance, "text_units": backends(), **summary}
    )
    return out
