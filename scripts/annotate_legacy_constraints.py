#!/usr/bin/env python
"""Store each instruction answer's constraints in an experiment made before answers carried them.

Evaluations since the truncation fix store every instruction answer's constraints in
``generations.json``, so ``neftune report`` re-scores them with the installed checkers. Older
experiments (such as ``docs/results/smollm2-135m-cpu-ifeval-quick``) do not, and their prompts come
from built-in data that this version no longer generates (held-out hygiene changed the topics and
request sentences). This script adds the constraints, in IFEval's ids and arguments, from a JSON
file written by the neftune version that generated the experiment's data (``--legacy``: ``{split:
[{"prompt", "constraints"}]}`` in that version's own constraint format), after checking that every
stored prompt is the same text. Constraints with no IFEval definition (the old ``starts_with``) are
left out of the prompt's list, so the report keeps that prompt's stored score.

    # with the generating version's source on the path (e.g. `git archive 969e672 src`):
    python -c "..."  # dump builtin:quick@0's instruction prompts and constraints (see docs/results README)
    python scripts/annotate_legacy_constraints.py docs/results/smollm2-135m-cpu-ifeval-quick --legacy old.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# old kind -> (old argument -> IFEval argument); the kind's IFEval id is checkers.KIND_IDS[kind] (the
# short names did not change). "relation" values are translated too.
_LEGACY_ARGS: dict[str, dict[str, str]] = {
    "word_count": {"n": "num_words", "relation": "relation"},
    "sentence_count": {"n": "num_sentences", "relation": "relation"},
    "paragraph_count": {"n": "num_paragraphs"},
    "bullet_count": {"n": "num_bullets"},
    "highlights": {"n": "num_highlights"},
    "include_keywords": {"keywords": "keywords"},
    "exclude_keyword": {"keyword": "forbidden_words"},
    "keyword_frequency": {"keyword": "keyword", "n": "frequency", "relation": "relation"},
    "lowercase": {},
    "uppercase": {},
    "ends_with": {"phrase": "end_phrase"},
    "no_commas": {},
    "title": {},
    "postscript": {"marker": "postscript_marker"},
    "json_format": {},
    "repeat_request": {"request": "prompt_to_repeat"},
    "placeholders": {"n": "num_placeholders"},
    "letter_frequency": {"letter": "letter", "n": "let_frequency", "relation": "let_relation"},
    "capital_words": {"n": "capital_frequency", "relation": "capital_relation"},
    "quotation": {},
    "sections": {"n": "num_sections", "marker": "section_spliter"},
    "two_responses": {},
}


def to_ifeval(constraint: dict[str, Any]) -> dict[str, Any] | None:
    """An old-format constraint as ``{"kind": <IFEval id>, "args": {...}}``; None without an IFEval
    definition. "at most n" of a count is IFEval's "less than n + 1" (the same test on integers)."""
    from neftune.finetune.instructions.checkers import KIND_IDS

    names = _LEGACY_ARGS.get(constraint["kind"])
    if names is None:
        return None
    ifeval_id = KIND_IDS[constraint["kind"]]
    old = dict(constraint.get("args") or {})
    relation = old.get("relation")
    if relation == "at most":
        old["relation"], old["n"] = "less than", int(old["n"]) + 1
    elif relation not in (None, "at least", "less than"):
        return None
    args = {names[k]: v for k, v in old.items() if k in names}
    if "forbidden_words" in args and isinstance(args["forbidden_words"], str):
        args["forbidden_words"] = [args["forbidden_words"]]
    return {"kind": ifeval_id, "args": args}


def annotate(folder: Path, legacy: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Write the constraints into every arm's ``eval/generations.json``; returns counts. Refuses
    (``ValueError``) when a stored prompt differs from the legacy file's prompt at its position."""
    from neftune.finetune.instructions.checkers import follows_all
    from neftune.finetune.io import write_json_atomic

    counts = {"files": 0, "answers": 0, "without_ifeval_definition": 0}
    for path in sorted(folder.glob("arms/*/eval/generations.json")):
        gens = json.loads(path.read_text())
        for split, rows in legacy.items():
            stored = gens.get(split) or []
            if len(stored) != len(rows):
                raise ValueError(f"{path}: {split} has {len(stored)} answers, the legacy file {len(rows)}")
            for i, (gen, row) in enumerate(zip(stored, rows)):
                if gen.get("prompt") != row["prompt"]:
                    raise ValueError(f"{path}: {split}[{i}]: the stored prompt is not the legacy file's")
                converted = [to_ifeval(c) for c in row["constraints"]]
                if any(c is None for c in converted):
                    gen.pop("constraints", None)  # not re-scorable: the report keeps the stored score
                    counts["without_ifeval_definition"] += 1
                    continue
                follows_all(converted, gen.get("output", ""))  # arguments valid for IFEval's checkers
                gen["constraints"] = converted
                counts["answers"] += 1
        write_json_atomic(path, gens)
        counts["files"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="the experiment folder (holds arms/*/eval/generations.json)")
    p.add_argument("--legacy", type=Path, required=True, help="{split: [{prompt, constraints}]} JSON")
    args = p.parse_args(argv)
    try:
        counts = annotate(args.folder, json.loads(args.legacy.read_text()))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
