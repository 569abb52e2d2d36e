#!/usr/bin/env python
"""How long are a model's answers to the built-in instruction prompts? Sizes the generation cap.

Generates (greedy, noise off, as ``neftune eval`` does: same batches, same chat template) the
answers of ``--model`` to the instruction prompts of ``builtin:<preset>@<seed>`` for each data
seed, with a cap far above any answer (``--cap``), and records every answer's token count up to
the end-of-sequence token. Greedy decoding does not depend on the cap, so an answer of ``n``
tokens is cut by any cap ``<= n``, and one that has not ended at ``--cap`` by every smaller cap:
the file lists the fraction of answers each candidate cap would cut, and the smallest cap that
cuts at most ``--target`` of them.

    python benchmarks/generation_cap.py --model runs/quick-a10 --seeds 0,1 --out benchmarks/results/cpu-generation-cap.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

CANDIDATES = (64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 768, 1024)


def cut_fraction(tokens: list[int], ended: list[bool], cap: int) -> float:
    """Fraction of answers a cap of ``cap`` new tokens would cut: those of ``cap`` tokens or more,
    and those that had not ended at the measuring cap."""
    return sum((not e) or n >= cap for n, e in zip(tokens, ended)) / len(tokens)


def _summary(tokens: list[int], ended: list[bool], args) -> dict:
    """Token-count quantiles, the fraction each candidate cap would cut, and the smallest cap that
    cuts at most ``args.target``."""
    cut = {c: cut_fraction(tokens, ended, c) for c in CANDIDATES if c <= args.cap}
    fits = [c for c, f in cut.items() if f <= args.target]
    ordered = sorted(tokens)
    q = {
        f"p{round(100 * x)}": ordered[min(len(ordered) - 1, math.ceil(x * len(ordered)) - 1)]
        for x in (0.5, 0.9, 0.95, 0.98, 0.99)
    }
    return {
        "answers": len(tokens),
        "not_ended_at_measuring_cap": sum(not e for e in ended),
        "new_tokens": {"mean": statistics.fmean(tokens), "max": max(tokens), **q},
        "cut_fraction_by_cap": cut,
        "smallest_cap_within_target": min(fits) if fits else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a run folder (fine-tuned) or a preset (smollm2-135m)")
    p.add_argument(
        "--preset", default="quick", help="built-in data preset whose instruction prompts are used"
    )
    p.add_argument("--seeds", default="0", help="data seeds, comma-separated (each gives its own prompts)")
    p.add_argument("--cap", type=int, default=512, help="measuring cap (new tokens)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--target", type=float, default=0.02, help="largest fraction of answers a cap may cut")
    p.add_argument(
        "--tasks",
        type=int,
        default=0,
        help="also this many answers per held-out task split (measured at --cap as well; 0: none)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: the CPU count). On a shared, loaded CPU use 1: measured here at load ~5, "
        "a decoding step took 0.28 s with 1 thread and 6.3 s with 2 (threads waiting for each other)",
    )
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    import torch

    from neftune.finetune.data.bundle import resolve_data
    from neftune.finetune.evaluation import generate_answers, load_for_eval

    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    model, tok = load_for_eval(args.model)
    per_answer = []
    start = time.perf_counter()
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        bundle = resolve_data(f"builtin:{args.preset}@{seed}")
        groups = dict(bundle.ifeval)
        if args.tasks:
            groups.update({k: v[: args.tasks] for k, v in bundle.evals.items()})
        for split, records in groups.items():
            t0 = time.perf_counter()
            answers = generate_answers(
                model, tok, records, max_new_tokens=args.cap, batch_size=args.batch_size
            )
            seconds = time.perf_counter() - t0
            for r, a in zip(records, answers):
                per_answer.append(
                    {"seed": seed, "split": split, "new_tokens": a.new_tokens, "ended": not a.truncated,
                     "chars": len(a.text), "kinds": [c["kind"] for c in r.meta.get("constraints", [])]}
                )  # fmt: skip
            print(f"seed {seed} {split}: {len(records)} answers in {seconds:.0f} s", flush=True)
    summary = {}
    for group, pick in (
        ("instruction", lambda a: a["split"].startswith("ifeval")),
        ("task", lambda a: not a["split"].startswith("ifeval")),
    ):
        chosen = [a for a in per_answer if pick(a)]
        if chosen:
            summary[group] = _summary([a["new_tokens"] for a in chosen], [a["ended"] for a in chosen], args)
    result = {
        "benchmark": "generation_cap",
        "command": "python benchmarks/generation_cap.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "load_average_at_end": os.getloadavg()},
        "model": args.model,
        "preset": args.preset,
        "seeds": args.seeds,
        "measuring_cap": args.cap,
        "target": args.target,
        **summary,
        "seconds": time.perf_counter() - start,
        "per_answer": per_answer,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_answer"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
