"""Length control: how much of a quality difference goes with longer answers?

NEFTune's headline gains come with much longer answers (AlpacaEval: raw win rate 26.5 -> 61.6,
length-controlled 26.3 -> 31.6). Here every per-prompt quality score (a task answer checked
right, a prompt's instructions all followed, the instructions followed) of a noisy arm is paired
with the baseline arm of the same seed on the same prompt, giving a score difference ``d`` and an
answer-length difference ``x`` (characters) per prompt. Per setting and metric:

- *raw* difference: per seed, the mean of ``d`` (exactly the difference of the arms' metric);
- *length-adjusted* difference: the regression ``d = a_s + b * x`` with one intercept per seed
  and a common slope ``b`` (weighted least squares, within-seed centred); the estimate is the
  mean of the ``a_s``, the score difference *at equal answer length*.

Both go through the same intervals as every other comparison (:mod:`.intervals`: over seeds and
prompts), and the adjusted one re-fits the slope at every deletion, so the slope's estimation
error is in its interval. The adjustment is an *association*, not an effect: answer length is
itself changed by the noise, so "at equal length" compares answers the noise made longer with
baseline answers that happened to be as long; it assumes a linear relation and says whether a
difference is more than the length that goes with it, not what the noise would do with length
held fixed. Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .intervals import slope_of
from .labels import metric_direction
from .setting import Setting
from .stats import PairedDifference, Summary, paired_groups, prompt_interval, verdict

__all__ = ["LengthControlled", "length_control", "quality_metric"]


def quality_metric(name: str) -> bool:
    """Metrics whose per-prompt scores the length control adjusts (generation-scored, with a direction)."""
    return name.startswith(("accuracy/", "ifeval/")) and metric_direction(name) != "descriptive"


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


def length_control(summary: Summary) -> list[LengthControlled]:
    """Raw and length-adjusted differences from the baseline of every (noisy setting, quality metric)
    whose arms stored per-prompt answers (``summary.answers``), over the seeds both sides have."""
    if summary.baseline is None:
        return []
    out = []
    confidence = summary.confidence
    for m in summary.metrics:
        if not quality_metric(m.name):
            continue
        base = summary.units(summary.baseline, m.name)
        for c in m.cells:
            if c.is_baseline:
                continue
            mine = summary.units(c.setting, m.name)
            shared = sorted(set(mine) & set(base))
            if not shared:
                continue
            pairs = {s: (mine[s], base[s]) for s in shared}
            raw = prompt_interval(pairs, confidence)
            adjusted = prompt_interval(pairs, confidence, adjust_length=True)
            if raw is None or adjusted is None:
                continue
            groups = paired_groups(pairs) or {}
            slope = slope_of(groups) if len(groups) else None
            xs = [float(g[3].mean()) for g in groups.values()]
            raw_d = _difference(raw)
            adj_d = _difference(adjusted)
            out.append(
                LengthControlled(
                    metric=m.name,
                    setting=c.setting,
                    raw=raw_d,
                    adjusted=adj_d,
                    raw_verdict=verdict(m.direction, raw_d),
                    adjusted_verdict=verdict(m.direction, adj_d),
                    slope_per_100_chars=None if slope is None else 100 * slope,
                    length_difference=sum(xs) / len(xs) if xs else math.nan,
                )
            )
    return out


def _difference(found) -> PairedDifference:
    interval, per_seed = found
    mean = interval.estimate if interval is not None else sum(per_seed.values()) / len(per_seed)
    return PairedDifference.from_interval(sorted(per_seed), mean, None, interval)
