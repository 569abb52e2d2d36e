"""Resolve a ``--data`` spec into train / evaluation record lists.

``builtin:<preset>`` (``quick``, ``standard``, ``full``; optional ``@seed``) gives the generated
tasks with their held-out-template and held-out-family splits, plus the verifiable instruction data
(:mod:`neftune.finetune.data.instructions`: its training records mixed into ``train``, its two eval splits in
``ifeval``); anything else goes to
:func:`neftune.finetune.data.load_records` and a seeded 10% (at most 200) is held out for evaluation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from .formats import DataError, Record, examples_to_records, load_records
from .instructions import IFEVAL_PRESETS, build_instruction_splits
from .tasks import PRESETS, build_splits


@dataclass
class DataBundle:
    """``train``: records to fit; ``evals``: named held-out splits; ``builtin``: checkable answers;
    ``ifeval``: named splits of verifiable-instruction prompts (scored by checkers, no references)."""

    train: list[Record]
    evals: dict[str, list[Record]]
    builtin: bool
    ifeval: dict[str, list[Record]] = field(default_factory=dict)


def resolve_data(spec: str, *, seed: int = 0, field_map: str | None = None) -> DataBundle:
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(
            f"data must be 'builtin:<preset>', a file, a folder or a hub dataset id; got {spec!r}"
        )
    if spec == "builtin" or spec.startswith("builtin:"):
        _, _, rest = spec.partition(":")
        preset, _, seed_text = (rest or "quick").partition("@")
        if preset not in PRESETS:
            raise DataError(f"unknown built-in data preset {preset!r}; choose one of {', '.join(PRESETS)}")
        cfg = PRESETS[preset]
        if seed_text:
            try:
                cfg = replace(cfg, seed=int(seed_text))
            except ValueError:
                raise DataError(f"data seed in {spec!r} must be an integer") from None
        splits = build_splits(cfg)
        instructions = build_instruction_splits(replace(IFEVAL_PRESETS[preset], seed=cfg.seed))
        train = examples_to_records(splits["train"]) + instructions.pop("train")
        random.Random(f"neftune-builtin-mix:{cfg.seed}").shuffle(train)
        return DataBundle(
            train=train,
            evals={k: examples_to_records(v) for k, v in splits.items() if k != "train"},
            builtin=True,
            ifeval=instructions,
        )
    records = load_records(spec, field_map=field_map)
    if len(records) < 2:
        raise DataError(
            f"{spec}: need at least 2 records (one to train on, one to evaluate), got {len(records)}"
        )
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, min(200, len(records) // 10))
    held = [records[i] for i in order[:n_eval]]
    train = [records[i] for i in order[n_eval:]]
    return DataBundle(train=train, evals={"eval": held}, builtin=False)
