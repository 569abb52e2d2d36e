"""Statistics of a compare / sweep experiment, from its ``results.json`` (schema ``neftune.results/1``).

Pure functions, no I/O. For every *setting* (alpha, distribution, schedule) and metric:
the seeds' mean, sample sd and Student-t confidence interval; the difference from the
baseline setting *paired by seed* (only seeds present in both), its interval and a
two-sided paired t-test p-value; and a verdict. A difference is *distinguishable from
seed noise* when its interval excludes 0 (equivalently p < 1 - confidence).

Verdicts (see :func:`verdict`): ``better`` / ``worse`` for metrics with a direction,
``higher`` / ``lower`` for descriptive ones, ``no detectable difference``, ``baseline``,
or ``n/a (...)`` when no paired interval exists. What metrics and settings are called, and
which way a metric is better, is :mod:`.labels`'.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats as scipy_stats

from .labels import TRAIN_LOSS_NOISE_ON, metric_direction, metric_label, metric_sort_key, setting_labels
from .setting import Setting

__all__ = [
    "RESULTS_SCHEMA",
    "SUMMARY_SCHEMA",
    "Cell",
    "Estimate",
    "MetricSummary",
    "PairedDifference",
    "Setting",
    "SettingInfo",
    "Summary",
    "difference_estimate",
    "mean_interval",
    "paired_difference",
    "paired_t_p_value",
    "summarize",
    "verdict",
]

RESULTS_SCHEMA = "neftune.results/1"
SUMMARY_SCHEMA = "neftune.summary/1"

BETTER, WORSE, HIGHER, LOWER = "better", "worse", "higher", "lower"
NO_DIFFERENCE = "no detectable difference"
BASELINE = "baseline"
NA_ONE_SEED = "n/a (1 seed)"
NA_NO_BASELINE = "n/a (no baseline)"
NA_NO_SHARED_SEEDS = "n/a (no shared seeds)"


# --------------------------------------------------------------------------- estimates


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def mean_interval(values: Sequence[float], confidence: float) -> tuple[float, float | None, float | None]:
    """Sample mean and its two-sided Student-t interval ``(mean, lo, hi)``.

    Half-width ``t_{(1+confidence)/2, n-1} * sd / sqrt(n)`` (scipy's t quantile); ``lo``/``hi``
    are None with one value or when the interval is not finite.
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = statistics.fmean(values)
    if n == 1:
        return mean, None, None
    quantile = float(scipy_stats.t.ppf((1.0 + confidence) / 2.0, n - 1))
    half = quantile * statistics.stdev(values) / math.sqrt(n)
    return mean, _finite(mean - half), _finite(mean + half)


@dataclass(frozen=True)
class Estimate:
    """Across-seed mean of one (setting, metric); ``sd``/``lo``/``hi`` are None with one seed."""

    n: int
    mean: float
    sd: float | None
    lo: float | None
    hi: float | None

    @classmethod
    def of(cls, values: Sequence[float], confidence: float) -> Estimate:
        mean, lo, hi = mean_interval(values, confidence)
        sd = statistics.stdev(values) if len(values) > 1 else None
        return cls(len(values), mean, sd, lo, hi)


def paired_t_p_value(differences: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test that the mean of ``differences`` is 0.

    scipy's one-sample t-test on the differences (``t = mean / (sd / sqrt(n))``, ``n - 1``
    degrees of freedom). When all differences are equal (sd 0) the test degenerates: p is
    1.0 if they are all 0, else 0.0 (matching the zero-width interval, which then excludes 0).
    """
    n = len(differences)
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 differences, got {n}")
    if statistics.stdev(differences) == 0:
        return 1.0 if statistics.fmean(differences) == 0 else 0.0
    return float(scipy_stats.ttest_1samp(differences, 0.0).pvalue)


@dataclass(frozen=True)
class PairedDifference:
    """``setting - baseline`` over the seeds both have: mean, sd, CI and p (None below 2 pairs)."""

    seeds: tuple[int, ...]
    mean: float | None
    sd: float | None
    lo: float | None
    hi: float | None
    p: float | None

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def distinguishable(self) -> bool:
        """True when the interval exists and excludes 0."""
        return self.lo is not None and self.hi is not None and (self.lo > 0 or self.hi < 0)


def difference_estimate(differences: Mapping[int, float], confidence: float = 0.95) -> PairedDifference:
    """Mean, sd, interval and paired t-test p of per-seed ``differences`` (seed -> difference)."""
    seeds = tuple(sorted(differences))
    if not seeds:
        return PairedDifference((), None, None, None, None, None)
    diffs = [differences[s] for s in seeds]
    mean, lo, hi = mean_interval(diffs, confidence)
    if len(seeds) == 1:
        return PairedDifference(seeds, mean, None, None, None, None)
    return PairedDifference(seeds, mean, statistics.stdev(diffs), lo, hi, paired_t_p_value(diffs))


def paired_difference(
    values: Mapping[int, float], baseline: Mapping[int, float], confidence: float = 0.95
) -> PairedDifference:
    """Pair ``values`` with ``baseline`` by seed (seeds missing from either side are dropped)."""
    shared = set(values) & set(baseline)
    return difference_estimate({s: values[s] - baseline[s] for s in shared}, confidence)


def verdict(direction: str, diff: PairedDifference | None) -> str:
    """Verdict of one (setting, metric) from its paired difference with the baseline.

    ``diff`` None means there is no baseline value to compare with.
    """
    if diff is None:
        return NA_NO_BASELINE
    if diff.n == 0:
        return NA_NO_SHARED_SEEDS
    if diff.n == 1:
        return NA_ONE_SEED
    if not diff.distinguishable:
        return NO_DIFFERENCE
    up = diff.lo is not None and diff.lo > 0
    if direction == "higher":
        return BETTER if up else WORSE
    if direction == "lower":
        return WORSE if up else BETTER
    return HIGHER if up else LOWER


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class Cell:
    """One (setting, metric): per-seed values, estimate, difference from baseline, verdict."""

    setting: Setting
    label: str
    is_baseline: bool
    values: Mapping[int, float]
    estimate: Estimate
    diff: PairedDifference | None
    verdict: str


@dataclass(frozen=True)
class MetricSummary:
    name: str
    label: str
    direction: str
    cells: tuple[Cell, ...]

    def cell(self, setting: Setting) -> Cell | None:
        return next((c for c in self.cells if c.setting == setting), None)

    @property
    def compared(self) -> tuple[Cell, ...]:
        """Non-baseline cells with a paired interval."""
        return tuple(
            c for c in self.cells if not c.is_baseline and c.diff is not None and c.diff.lo is not None
        )


@dataclass(frozen=True)
class SettingInfo:
    setting: Setting
    label: str
    is_baseline: bool
    seeds_complete: tuple[int, ...]
    n_failed: int
    n_pending: int


@dataclass(frozen=True)
class Summary:
    kind: str
    status: str
    confidence: float
    primary_metric: str | None
    baseline: Setting | None
    settings: tuple[SettingInfo, ...]
    metrics: tuple[MetricSummary, ...]

    def metric(self, name: str) -> MetricSummary | None:
        return next((m for m in self.metrics if m.name == name), None)

    @property
    def labels(self) -> dict[Setting, str]:
        return {i.setting: i.label for i in self.settings}

    @property
    def n_complete(self) -> int:
        return sum(len(i.seeds_complete) for i in self.settings)

    @property
    def n_failed(self) -> int:
        return sum(i.n_failed for i in self.settings)

    @property
    def n_pending(self) -> int:
        """Arms neither complete nor failed (not started, running or interrupted)."""
        return sum(i.n_pending for i in self.settings)

    @property
    def n_arms(self) -> int:
        return self.n_complete + self.n_failed + self.n_pending

    @property
    def n_comparisons(self) -> int:
        """(setting, metric) pairs with a paired interval."""
        return sum(len(m.compared) for m in self.metrics)

    @property
    def n_distinguishable(self) -> int:
        return sum(
            1 for m in self.metrics for c in m.compared if c.diff is not None and c.diff.distinguishable
        )

    @property
    def only_alpha_varies(self) -> bool:
        """True when all noisy settings share one distribution and schedule (a plain alpha compare)."""
        noisy = [i.setting for i in self.settings if not i.setting.is_no_noise]
        return len({(s.distribution, s.schedule, s.scaling) for s in noisy}) <= 1


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _arm_metrics(arm: Mapping[str, Any]) -> dict[str, float]:
    out = {str(k): float(v) for k, v in (arm.get("eval") or {}).items() if _is_finite_number(v)}
    train_loss = (arm.get("train") or {}).get("train_loss")
    if _is_finite_number(train_loss):
        out[TRAIN_LOSS_NOISE_ON] = float(train_loss)
    return out


def _arm_seed(arm: Mapping[str, Any]) -> int:
    seed = arm.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"arm {arm.get('id')!r}: seed must be an integer, got {seed!r}")
    return seed


def summarize(results: Mapping[str, Any], confidence: float = 0.95) -> Summary:
    """Statistics of every (setting, metric) of a results dict; works on partial results.

    Only arms with status ``complete`` contribute values; failed and pending arms are
    counted per setting. Raises ValueError on a malformed arm.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    arms = results.get("arms")
    if not isinstance(arms, list):
        raise ValueError("results['arms'] must be a list")
    baseline_d = results.get("baseline")
    baseline = Setting.from_mapping(baseline_d) if baseline_d else None

    values: dict[Setting, dict[str, dict[int, float]]] = {}
    complete: dict[Setting, list[int]] = {}
    failed: dict[Setting, int] = {}
    pending: dict[Setting, int] = {}
    for arm in arms:
        if not isinstance(arm, Mapping):
            raise ValueError(f"every arm must be an object, got {arm!r}")
        setting = Setting.from_mapping(arm.get("setting"))
        seed = _arm_seed(arm)
        complete.setdefault(setting, [])
        status = arm.get("status")
        if status == "complete":
            complete[setting].append(seed)
            for name, v in _arm_metrics(arm).items():
                values.setdefault(setting, {}).setdefault(name, {})[seed] = v
        elif status == "failed":
            failed[setting] = failed.get(setting, 0) + 1
        else:
            pending[setting] = pending.get(setting, 0) + 1

    all_settings = sorted(set(complete) | ({baseline} if baseline else set()), key=Setting.sort_key)
    labels = setting_labels(all_settings)
    infos = tuple(
        SettingInfo(
            s,
            labels[s],
            s == baseline,
            tuple(sorted(complete.get(s, []))),
            failed.get(s, 0),
            pending.get(s, 0),
        )
        for s in all_settings
    )

    config = results.get("config") or {}
    primary = config.get("primary_metric")
    names = sorted({n for per in values.values() for n in per}, key=lambda n: metric_sort_key(n, primary))
    metrics = []
    for name in names:
        direction = metric_direction(name)
        base_vals = values.get(baseline, {}).get(name) if baseline else None
        cells = []
        for s in all_settings:
            vals = values.get(s, {}).get(name)
            if not vals:
                continue
            est = Estimate.of([vals[k] for k in sorted(vals)], confidence)
            if s == baseline:
                cells.append(Cell(s, labels[s], True, vals, est, None, BASELINE))
                continue
            diff = paired_difference(vals, base_vals, confidence) if base_vals else None
            cells.append(Cell(s, labels[s], False, vals, est, diff, verdict(direction, diff)))
        metrics.append(MetricSummary(name, metric_label(name), direction, tuple(cells)))

    return Summary(
        kind=str(results.get("kind", "compare")),
        status=str(results.get("status", "unknown")),
        confidence=confidence,
        primary_metric=primary,
        baseline=baseline,
        settings=infos,
        metrics=tuple(metrics),
    )
