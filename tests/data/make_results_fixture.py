"""Regenerate ``results_compare_fixture.json``: a *synthetic* results.json for the report tests.

The numbers are drawn from a seeded RNG with effects chosen to exercise every branch of the
renderer (some differences distinguishable, some not). They are not measurements of anything.
Run: ``python tests/data/make_results_fixture.py``.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

NOTE = (
    "TEST FIXTURE, NOT A RESULT: synthetic numbers from tests/data/make_results_fixture.py (seeded RNG) "
    "in the neftune.results/1 schema, used only to exercise the report renderer."
)
ALPHAS = [0.0, 5.0, 10.0, 15.0]
SEEDS = [0, 1, 2]
STEPS, LOG_EVERY, CURVE_EVERY = 50, 5, 10
SPLITS = ["eval_seen_templates", "eval_heldout_templates", "eval_heldout_families"]


def arm(rng: random.Random, alpha: float, seed: int, seed_effect: float) -> dict:
    a = alpha / 15.0  # 0..1
    final = {
        "loss/train": 0.41 + 0.09 * a + seed_effect * 0.05 + rng.gauss(0, 0.006),
        "loss/eval_seen_templates": 0.52 + 0.01 * a + seed_effect * 0.06 + rng.gauss(0, 0.01),
        "loss/eval_heldout_templates": 0.77 - 0.01 * a + seed_effect * 0.08 + rng.gauss(0, 0.015),
        "loss/eval_heldout_families": 1.90 + 0.02 * a + seed_effect * 0.1 + rng.gauss(0, 0.03),
        "accuracy/eval_seen_templates": 0.55 + seed_effect * 0.05 + rng.gauss(0, 0.02),
        "accuracy/eval_heldout_templates": 0.31 + 0.01 * a + seed_effect * 0.04 + rng.gauss(0, 0.02),
        "accuracy/eval_heldout_families": 0.05 + rng.gauss(0, 0.01),
        "rouge_l_train": 0.61 - 0.08 * a + seed_effect * 0.02 + rng.gauss(0, 0.01),
        "length_tokens": 14.9 + 4.0 * a + seed_effect * 0.8 + rng.gauss(0, 0.4),
        "repetition_2gram": 0.02 + 0.004 * a + rng.gauss(0, 0.003),
    }
    for k in list(final):
        if k.startswith("accuracy/"):  # 60 generations per split: multiples of 1/60
            final[k] = round(min(1.0, max(0.0, final[k])) * 60) / 60
        else:
            final[k] = round(max(0.0, final[k]), 4)
    final["length_chars"] = round(final["length_tokens"] * 3.2 + rng.gauss(0, 1.0), 2)
    train_loss_curve = []
    for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY):
        base = 0.78 + 0.85 * math.exp(-step / 12) + 0.12 * a
        train_loss_curve.append([step, round(base + rng.gauss(0, 0.04), 4)])
    eval_curve = []
    for step in range(0, STEPS + 1, CURVE_EVERY):
        w = math.exp(-step / 15)  # 1 at step 0, ~0.04 at the end
        point: dict = {"step": step}
        for key in ["loss/train"] + [f"loss/{s}" for s in SPLITS] + [f"accuracy/{s}" for s in SPLITS]:
            start = 1.6 if key.startswith("loss/") else 0.0
            value = final[key] + (start - final[key]) * w
            value += 0.0 if step == STEPS else rng.gauss(0, 0.01)
            point[key] = round(value, 4)
        if step == STEPS:
            point.update({k: final[k] for k in point if k != "step"})
        eval_curve.append(point)
    train_seconds = round(171.0 + rng.gauss(0, 4.0), 1)
    ident = f"a{alpha:g}-uniform-s{seed}"
    return {
        "id": ident,
        "setting": {"alpha": alpha, "distribution": "uniform", "schedule": None},
        "seed": seed,
        "status": "complete",
        "error": None,
        "dir": f"arms/{ident}",
        "seconds": round(train_seconds + 68.0 + rng.gauss(0, 2.0), 1),
        "train": {
            "train_loss": round(sum(v for _, v in train_loss_curve) / len(train_loss_curve), 4),
            "train_seconds": train_seconds,
            "global_step": STEPS,
            "train_records": 400,
        },
        "eval": final,
        "curves": {"train_loss": train_loss_curve, "eval": eval_curve},
    }


def main() -> None:
    rng = random.Random(20261123)
    seed_effects = {s: rng.gauss(0, 1) for s in SEEDS}
    arms = [arm(rng, alpha, seed, seed_effects[seed]) for alpha in ALPHAS for seed in SEEDS]
    results = {
        "note": NOTE,
        "schema": "neftune.results/1",
        "kind": "compare",
        "status": "complete",
        "created": "2026-11-23T10:00:00Z",
        "updated": "2026-11-23T10:48:12Z",
        "command": "neftune compare --model smollm2-135m --data builtin:quick --alphas 0,5,10,15 "
        "--seeds 3 --out runs/cmp",
        "environment": {
            "python": "3.11.7",
            "platform": "Linux-6.1.0-x86_64-with-glibc2.36",
            "torch": "2.13.0+cpu",
            "transformers": "5.23.0",
            "trl": "1.16.0",
            "peft": "0.21.2",
            "neftune": "0.1.0",
            "device": "cpu",
            "cpu_count": 2,
        },
        "config": {
            "model": "smollm2-135m",
            "data": "builtin:quick",
            "alphas": ALPHAS,
            "seeds": SEEDS,
            "distributions": ["uniform"],
            "schedules": [None],
            "train": {"lr": None, "max_steps": STEPS, "batch_size": 8, "logging_steps": LOG_EVERY},
            "eval": {"n_generate": 60, "max_new_tokens": 64, "repetition_penalty": 1.0},
            "curve_every": CURVE_EVERY,
            "primary_metric": "accuracy/eval_heldout_templates",
        },
        "baseline": {"alpha": 0.0, "distribution": "uniform", "schedule": None},
        "arms": arms,
    }
    out = Path(__file__).with_name("results_compare_fixture.json")
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
