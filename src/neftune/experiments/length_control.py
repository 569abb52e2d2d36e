"""Length control: is a quality gain more than longer answers?

NEFTune's headline gains come with much longer answers (AlpacaEval: raw win rate 26.5 -> 61.6,
length-controlled 26.3 -> 31.6). Here every per-prompt quality score (a task answer checked
right, a prompt's instructions all followed, one instruction followed) of a noisy arm is paired
with the baseline arm of the same seed on the same prompt, giving a score difference ``d`` and an
answer-length difference ``x`` (characters) per prompt. Per setting and metric:

- *raw* difference: per seed, the mean of ``d`` (exactly the difference of the arms' metric);
- *length-adjusted* difference: the regression ``d = a_s + b * x`` with one intercept per seed
  and a common slope ``b`` (least squares, within-seed centred), so ``a_s`` is seed ``s``'s score
  difference *at equal answer length*;

and each of the two is summarised across seeds like every other comparison (mean, Student-t
interval, paired t-test: :func:`neftune.experiments.stats.difference_estimate`). A gain
that only comes from length has a raw interval above 0 and an adjusted one around 0. The
adjustment assumes the score changes linearly with the length difference; it answers "would the
gain remain at equal length", not whether length itself is what the instructions asked for.

Pure functions; :func:`load_arm_rows` reads an arm's ``eval/per_prompt.json``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.instructions import IFEVAL_SPLIT_SUFFIX
from ..io import read_json_object
from ..metrics import PER_PROMPT_FILE
from .labels import metric_direction
from .setting import Setting
from .stats import PairedDifference, Summary, difference_estimate, verdict

__all__ = [
    "LengthControlled",
    "adjusted_differences",
    "arm_rows",
    "length_control",
    "load_arm_rows",
    "load_length_control",
]

#: A per-prompt score: prompt key -> (score, answer length in characters).
Rows = dict[tuple[Any, ...], tuple[float, float]]


def arm_rows(per_prompt: Mapping[str, Any]) -> dict[str, Rows]:
    """Per metric name, the per-prompt (score, length) rows of one arm's ``per_prompt.json`` dict.

    Task splits give ``accuracy/<split>``; instruction splits give ``ifeval/prompt_{strict,loose}``
    (one row per prompt) and ``ifeval/instruction_{strict,loose}`` (one row per instruction, with
    its prompt's length), overall and with the ``/<split suffix>``.
    """
    out: dict[str, Rows] = {}
    for split, rows in (per_prompt.get("splits") or {}).items():
        for i, row in enumerate(rows):
            length = float(row["length_chars"])
            if "correct" in row:
                out.setdefault(f"accuracy/{split}", {})[(split, i)] = (float(row["correct"]), length)
                continue
            suffix = IFEVAL_SPLIT_SUFFIX.get(split, split)
            for mode in ("strict", "loose"):
                hits = [bool(h) for h in row[mode]]
                for name in (f"ifeval/prompt_{mode}", f"ifeval/prompt_{mode}/{suffix}"):
                    out.setdefault(name, {})[(split, i)] = (float(all(hits)), length)
                for j, hit in enumerate(hits):
                    for name in (f"ifeval/instruction_{mode}", f"ifeval/instruction_{mode}/{suffix}"):
                        out.setdefault(name, {})[(split, i, j)] = (float(hit), length)
    return out


def load_arm_rows(arm_dir: str | Path) -> dict[str, Rows] | None:
    """:func:`arm_rows` of ``arm_dir/eval/per_prompt.json``; None when it is missing or unreadable."""
    data = read_json_object(Path(arm_dir) / "eval" / PER_PROMPT_FILE)
    if data is None:
        return None
    try:
        return arm_rows(data)
    except (KeyError, TypeError, ValueError):
        return None


def _summary(per_seed: Mapping[int, float], confidence: float) -> PairedDifference:
    """:func:`~.stats.difference_estimate` of the seeds whose value is finite."""
    return difference_estimate({s: v for s, v in per_seed.items() if math.isfinite(v)}, confidence)


def adjusted_differences(
    pairs: Mapping[int, Sequence[tuple[float, float]]],
) -> tuple[dict[int, float], dict[int, float], float | None]:
    """Per seed: raw mean score difference and length-adjusted intercept; and the common slope.

    ``pairs[seed]`` holds ``(score difference, length difference)`` per prompt. The slope is the
    within-seed least-squares slope ``sum((x - mean_s x)(d - mean_s d)) / sum((x - mean_s x)^2)``;
    the adjusted value of seed ``s`` is ``mean_s d - slope * mean_s x``. When the length
    differences do not vary within any seed the slope is undefined: adjusted values are NaN.
    """
    raw: dict[int, float] = {}
    means: dict[int, tuple[float, float]] = {}
    sxy = sxx = 0.0
    for seed, rows in pairs.items():
        if not rows:
            continue
        d_mean = statistics.fmean(d for d, _ in rows)
        x_mean = statistics.fmean(x for _, x in rows)
        raw[seed], means[seed] = d_mean, (d_mean, x_mean)
        sxy += sum((x - x_mean) * (d - d_mean) for d, x in rows)
        sxx += sum((x - x_mean) ** 2 for _, x in rows)
    if sxx <= 0:
        return raw, {s: math.nan for s in raw}, None
    slope = sxy / sxx
    return raw, {s: d - slope * x for s, (d, x) in means.items()}, slope


@dataclass(frozen=True)
class LengthControlled:
    """One (setting, metric) against the baseline: raw and length-adjusted differences."""

    metric: str
    setting: Setting
    raw: PairedDifference
    adjusted: PairedDifference
    raw_verdict: str
    adjusted_verdict: str
    slope_per_100_chars: float | None
    length_difference: float  # mean answer-length difference (characters), over seeds and prompts

    @property
    def survives(self) -> bool | None:
        """Whether a distinguishable raw gain stays distinguishable and positive at equal length.

        None when there is no distinguishable raw gain to test.
        """
        if self.raw_verdict != "better":
            return None
        return self.adjusted_verdict == "better"


def length_control(
    arms: Sequence[tuple[Setting, int, Mapping[str, Rows]]],
    baseline: Setting,
    confidence: float = 0.95,
) -> list[LengthControlled]:
    """Raw and length-adjusted differences from ``baseline`` of every (noisy setting, metric).

    ``arms``: (setting, seed, :func:`arm_rows`) of each finished arm. Only prompts both arms of
    a seed answered are paired. Metrics without a better direction are skipped.
    """
    by_setting: dict[Setting, dict[int, Mapping[str, Rows]]] = {}
    for setting, seed, rows in arms:
        by_setting.setdefault(setting, {})[seed] = rows
    base = by_setting.get(baseline, {})
    out = []
    for setting in sorted(by_setting, key=Setting.sort_key):
        if setting == baseline:
            continue
        names = sorted({n for rows in by_setting[setting].values() for n in rows})
        for name in names:
            direction = metric_direction(name)
            if direction == "descriptive":
                continue
            pairs: dict[int, list[tuple[float, float]]] = {}
            for seed, rows in by_setting[setting].items():
                mine, theirs = rows.get(name), base.get(seed, {}).get(name)
                if not mine or not theirs:
                    continue
                pairs[seed] = [
                    (v - theirs[k][0], n - theirs[k][1]) for k, (v, n) in mine.items() if k in theirs
                ]
            if not pairs:
                continue
            raw, adjusted, slope = adjusted_differences(pairs)
            raw_d, adj_d = _summary(raw, confidence), _summary(adjusted, confidence)
            all_x = [x for rows in pairs.values() for _, x in rows]
            out.append(
                LengthControlled(
                    metric=name,
                    setting=setting,
                    raw=raw_d,
                    adjusted=adj_d,
                    raw_verdict=verdict(direction, raw_d),
                    adjusted_verdict=verdict(direction, adj_d),
                    slope_per_100_chars=None if slope is None else 100 * slope,
                    length_difference=statistics.fmean(all_x) if all_x else math.nan,
                )
            )
    return out


def load_length_control(
    folder: str | Path, results: Mapping[str, Any], summary: Summary
) -> list[LengthControlled]:
    """:func:`length_control` of an experiment folder's finished arms (those with ``per_prompt.json``)."""
    if summary.baseline is None:
        return []
    arms = []
    for arm in results.get("arms", []):
        if arm.get("status") != "complete":
            continue
        rows = load_arm_rows(Path(folder) / str(arm.get("dir", "")))
        if rows:
            arms.append((Setting.from_mapping(arm["setting"]), int(arm["seed"]), rows))
    return length_control(arms, summary.baseline, summary.confidence)
