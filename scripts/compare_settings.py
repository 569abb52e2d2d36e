"""The paired difference between two noisy settings of one experiment, with the report's intervals.

    python scripts/compare_settings.py docs/results/smollm2-135m-cpu-scaling-quick \
        --a "alpha 10, per-sequence scaling" --b "alpha 10, batch scaling" [--json out.json]

A report compares every setting with the baseline; this compares setting A with setting B on the
same seed and prompt (A minus B), for every metric scored per answer, with the same grouped
jackknife over seeds and prompts (:func:`neftune.experiments.stats.prompt_interval`), its 95%
interval, p-value and the difference detectable with 80% power — over all answers and over the
prompts whose answers neither arm cut at the token cap. Settings are named by their report labels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CONFIDENCE = 0.95


def compare(folder: Path, a: str, b: str) -> dict:
    """``{"a", "b", "seeds", "metrics": {name: {"all": row, "untruncated": row}}}``; a row holds the
    estimate, interval, p, detectable effect and the number of seeds and prompts (None: no interval)."""
    from neftune.experiments.answers import load_experiment_answers, row_metric_names
    from neftune.experiments.report import load_results
    from neftune.experiments.stats import prompt_interval, summarize

    results = load_results(folder)
    summary = summarize(results, answers=load_experiment_answers(folder, results))
    by_label = {label: setting for setting, label in summary.labels.items()}
    missing = [x for x in (a, b) if x not in by_label]
    if missing:
        raise SystemExit(f"no setting labelled {missing[0]!r}; the labels are: {', '.join(sorted(by_label))}")
    sa, sb = by_label[a], by_label[b]
    names = sorted({n for (s, _), ans in summary.answers.items() if s == sa for n in row_metric_names(ans)})
    out: dict = {"a": a, "b": b, "confidence": CONFIDENCE, "metrics": {}}
    seeds: set[int] = set()
    for name in names:
        ua, ub = summary.units(sa, name), summary.units(sb, name)
        pairs = {seed: (ua[seed], ub[seed]) for seed in sorted(set(ua) & set(ub))}
        seeds |= set(pairs)
        row = {}
        for kind, untruncated in (("all", False), ("untruncated", True)):
            found = prompt_interval(pairs, CONFIDENCE, untruncated=untruncated) if pairs else None
            row[kind] = _row(found[0] if found else None)
        out["metrics"][name] = row
    out["seeds"] = sorted(seeds)
    return out


def _row(interval) -> dict | None:
    if interval is None or interval.degenerate or interval.lo is None:
        return None
    return {
        "diff": interval.estimate,
        "lo": interval.lo,
        "hi": interval.hi,
        "p": interval.p,
        "detectable": interval.detectable,
        "seeds": interval.n_seeds,
        "prompts_per_seed": interval.n_prompts,
        "distinguishable": not (interval.lo <= 0.0 <= interval.hi),
    }


def _text(row: dict | None) -> str:
    if row is None:
        return "no interval"
    verdict = "distinguishable" if row["distinguishable"] else "within noise"
    return (
        f"{row['diff']:+.3f} [{row['lo']:+.3f}, {row['hi']:+.3f}], p {row['p']:.2f}, "
        f"could detect ±{row['detectable']:.3f} ({verdict})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="an experiment folder (results.json, arms/)")
    parser.add_argument("--a", required=True, help="the first setting's report label")
    parser.add_argument("--b", required=True, help="the second setting's report label")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    found = compare(args.folder, args.a, args.b)
    print(
        f"{args.a} minus {args.b}, seeds {found['seeds']}, {CONFIDENCE:.0%} intervals over seeds and prompts"
    )
    for name, row in found["metrics"].items():
        print(f"  {name:32s} all: {_text(row['all'])}")
        print(f"  {'':32s} uncut: {_text(row['untruncated'])}")
    if args.json:
        args.json.write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
