"""Statistics of a compare / sweep experiment, from its ``results.json`` (schema ``neftune.results/1``)
and, where the arms stored them, their per-prompt answers (:mod:`.answers`).

Pure functions, no I/O. For every *setting* (alpha, distribution, schedule) and metric:
the seeds' mean and its confidence interval; the difference from the baseline setting *paired
by seed* (only seeds present in both) and, for metrics scored per answer, by prompt; its
interval, p-value and the smallest effect it could have detected; and a verdict.

Intervals (:mod:`.intervals`): a metric scored per answer (accuracy, instruction following,
answer length, truncation) gets an interval over seeds *and* prompts (grouped jackknife, Student
t); other metrics (losses, ROUGE-L, training loss) an interval over seeds (the paired t
interval), which covers the evaluation records only when they were drawn per seed. A difference
is *distinguishable* when its interval excludes 0 (equivalently p < 1 - confidence); an interval
of zero width gives no verdict. Instruction-following differences are also computed over the
prompts whose answers neither arm cut at the generation cap.

Verdicts (see :func:`verdict`): ``better`` / ``worse`` for metrics with a direction,
``higher`` / ``lower`` for descriptive ones, ``no detectable difference``, ``baseline``,
or ``n/a (...)`` when no paired interval exists. What metrics and settings are called, and
which way a metric is better, is :mod:`.labels`'.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from .answers import ArmAnswers, Unit, arm_metric_values, metric_units, row_metric_names
from .intervals import COVERS_SEEDS, Interval, grouped_interval, seed_interval
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
#: One arm's per-prompt units of one metric (:func:`~.answers.metric_units`).
UnitMap = Mapping[tuple[str, int, str | None], Unit]
SUMMARY_SCHEMA = "neftune.summary/1"

BETTER, WORSE, HIGHER, LOWER = "better", "worse", "higher", "lower"
NO_DIFFERENCE = "no detectable difference"
BASELINE = "baseline"
NA_ONE_SEED = "n/a (1 seed)"
NA_NO_BASELINE = "n/a (no baseline)"
NA_NO_SHARED_SEEDS = "n/a (no shared seeds)"
NA_DEGENERATE = "n/a (no variation)"


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
    """Across-seed mean of one (setting, metric); ``sd``/``lo``/``hi`` are None with one seed.

    ``sd``: the seeds' sample sd; the interval covers what ``covers`` says (seeds, or seeds and
    prompts for metrics scored per answer)."""

    n: int
    mean: float
    sd: float | None
    lo: float | None
    hi: float | None
    covers: str = COVERS_SEEDS

    @classmethod
    def of(cls, values: Sequence[float], confidence: float) -> Estimate:
        mean, lo, hi = mean_interval(values, confidence)
        sd = statistics.stdev(values) if len(values) > 1 else None
        return cls(len(values), mean, sd, lo, hi)

    @classmethod
    def with_interval(cls, values: Sequence[float], interval: Interval | None) -> Estimate:
        """The seeds' mean and sd with ``interval``'s bounds (none when it is missing or degenerate)."""
        mean = statistics.fmean(values)
        sd = statistics.stdev(values) if len(values) > 1 else None
        if interval is None or interval.degenerate:
            return cls(len(values), mean, sd, None, None)
        return cls(len(values), mean, sd, interval.lo, interval.hi, interval.covers)


def paired_t_p_value(differences: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test that the mean of ``differences`` is 0.

    scipy's one-sample t-test on the differences (``t = mean / (sd / sqrt(n))``, ``n - 1``
    degrees of freedom). When all differences are equal (sd 0) the test degenerates: p is
    1.0 if they are all 0, else 0.0; :func:`difference_estimate` then gives no interval and
    :func:`verdict` no verdict.
    """
    n = len(differences)
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 differences, got {n}")
    if statistics.stdev(differences) == 0:
        return 1.0 if statistics.fmean(differences) == 0 else 0.0
    return float(scipy_stats.ttest_1samp(differences, 0.0).pvalue)


@dataclass(frozen=True)
class PairedDifference:
    """``setting - baseline`` over the seeds both have: mean, sd (of the per-seed differences),
    CI and p (None below 2 pairs or for a degenerate interval).

    ``se`` / ``df``: the interval's standard error and degrees of freedom; ``detectable``: the
    smallest |difference| this design detects with 80% power (:mod:`.intervals`); ``covers``:
    seeds, or seeds and prompts; ``degenerate``: zero variance, so no interval and no verdict;
    ``n_prompts``: paired prompts per seed (0 for a seed-level metric); ``interval``: the full
    :class:`~.intervals.Interval` (variance components, for planning).
    """

    seeds: tuple[int, ...]
    mean: float | None
    sd: float | None
    lo: float | None
    hi: float | None
    p: float | None
    se: float | None = None
    df: float | None = None
    detectable: float | None = None
    covers: str = COVERS_SEEDS
    degenerate: bool = False
    n_prompts: int = 0
    interval: Interval | None = None

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def distinguishable(self) -> bool:
        """True when the interval exists and excludes 0."""
        return self.lo is not None and self.hi is not None and (self.lo > 0 or self.hi < 0)

    @classmethod
    def from_interval(
        cls, seeds: Sequence[int], mean: float, sd: float | None, interval: Interval | None
    ) -> PairedDifference:
        """``mean`` (the per-seed differences' mean) with ``interval``'s bounds, p and power."""
        seeds = tuple(sorted(seeds))
        if interval is None:
            return cls(seeds, mean, sd, None, None, None)
        return cls(
            seeds,
            mean,
            sd,
            interval.lo,
            interval.hi,
            interval.p,
            interval.se,
            interval.df,
            interval.detectable,
            interval.covers,
            interval.degenerate,
            interval.n_prompts,
            interval,
        )


def difference_estimate(
    differences: Mapping[int, float], confidence: float = 0.95, *, crossed: bool = True
) -> PairedDifference:
    """Mean, sd, paired t interval, p and detectable effect of per-seed ``differences``
    (seed -> difference). Identical differences (sd 0) give a degenerate interval: no bounds.
    ``crossed``: the seeds were scored on the same records (the interval covers seeds only)."""
    seeds = tuple(sorted(differences))
    if not seeds:
        return PairedDifference((), None, None, None, None, None)
    diffs = [differences[s] for s in seeds]
    mean = statistics.fmean(diffs)
    if len(seeds) == 1:
        return PairedDifference(seeds, mean, None, None, None, None)
    return PairedDifference.from_interval(
        seeds, mean, statistics.stdev(diffs), seed_interval(differences, confidence, crossed=crossed)
    )


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
    if diff.degenerate:
        return NA_DEGENERATE
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
    #: The difference over the prompts whose answers neither arm cut at the generation cap
    #: (instruction-following metrics; None when not computed or truncation is unknown).
    diff_untruncated: PairedDifference | None = None
    verdict_untruncated: str | None = None


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
    #: True when every seed was scored on the same prompts (and records), False when each seed
    #: drew its own.
    same_prompts: bool = True
    #: The per-prompt answers the statistics used, by (setting, seed) (:mod:`.answers`).
    answers: Mapping[tuple[Setting, int], ArmAnswers] = field(default_factory=dict)

    def metric(self, name: str) -> MetricSummary | None:
        return next((m for m in self.metrics if m.name == name), None)

    def units(self, setting: Setting, name: str) -> dict[int, UnitMap]:
        """Per seed, ``setting``'s per-prompt units of metric ``name`` (:func:`~.answers.metric_units`)."""
        out = {}
        for (s, seed), ans in self.answers.items():
            if s == setting:
                found = metric_units(ans.rows, name)
                if found:
                    out[seed] = found
        return out

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


def paired_groups(
    pairs: Mapping[int, tuple[UnitMap, UnitMap | None]], *, untruncated: bool = False
) -> dict[int, tuple[list, np.ndarray, np.ndarray, np.ndarray]] | None:
    """Per seed ``(keys, y, w, x)`` for :func:`~.intervals.grouped_interval`: a setting's own units
    (``pairs[seed] = (units, None)``) or its differences from the baseline's on the prompts both
    answered (``(units, baseline units)``). ``untruncated``: only prompts whose answers no arm cut
    at the cap (an answer whose truncation is unknown counts as cut); None when it is unknown for
    every answer."""
    out = {}
    unknown = total = 0
    for seed, (mine, theirs) in pairs.items():
        keys, y, w, x = [], [], [], []
        for k, (num, den, length, cut) in mine.items():
            if theirs is None:
                other = (0.0, den, 0.0, False)
            elif k in theirs and theirs[k][1] == den:
                other = theirs[k]
            else:
                continue
            if untruncated:
                if cut is None or other[3] is None:
                    unknown += 1
                if cut is not False or other[3] is not False:
                    continue
            total += 1
            keys.append(k)
            y.append(num - other[0])
            w.append(den)
            x.append(length - other[2])
        if keys:
            out[seed] = (keys, np.array(y, float), np.array(w, float), np.array(x, float))
    if untruncated and unknown and not total:
        return None
    return out


def prompt_interval(
    pairs: Mapping[int, tuple[UnitMap, UnitMap | None]],
    confidence: float,
    *,
    untruncated: bool = False,
    adjust_length: bool = False,
) -> tuple[Interval | None, dict[int, float]] | None:
    """The grouped interval of a setting's units or of its paired differences (see :func:`_groups`),
    and each seed's value; None when the units do not allow it. The design is *crossed* when every
    seed holds the same prompt keys, else nested (each seed its own prompts)."""
    groups = paired_groups(pairs, untruncated=untruncated)
    if not groups:
        return None
    crossed = len({frozenset(g[0]) for g in groups.values()}) == 1
    per_seed = {s: float(g[1].sum() / g[2].sum()) for s, g in groups.items()}
    return grouped_interval(groups, confidence, crossed=crossed, adjust_length=adjust_length), per_seed


def _same_prompts(
    answers: Mapping[tuple[Setting, int], ArmAnswers], config: Mapping[str, Any]
) -> bool | None:
    """Whether the seeds were scored on the same prompts: from the stored answers, else the config."""
    keys_by_seed: dict[int, frozenset] = {}
    for (_, seed), ans in answers.items():
        keys = frozenset(r.key for r in ans.rows)
        keys_by_seed.setdefault(seed, keys)
    if len(keys_by_seed) >= 2:
        return len(set(keys_by_seed.values())) == 1
    # Experiments from before the option always used one data seed for every arm.
    return config.get("data_seeds") != "per_seed"


def summarize(
    results: Mapping[str, Any],
    confidence: float = 0.95,
    answers: Mapping[tuple[Setting, int], ArmAnswers] | None = None,
) -> Summary:
    """Statistics of every (setting, metric) of a results dict; works on partial results.

    Only arms with status ``complete`` contribute values; failed and pending arms are
    counted per setting. ``answers``: the arms' per-prompt answers by (setting, seed)
    (:func:`~.answers.load_arm_answers`): metrics they define are recomputed from them (so
    re-scored instruction answers count) and get intervals over seeds and prompts. Raises
    ValueError on a malformed arm.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    arms = results.get("arms")
    if not isinstance(arms, list):
        raise ValueError("results['arms'] must be a list")
    answers = dict(answers or {})
    baseline_d = results.get("baseline")
    baseline = Setting.from_mapping(baseline_d) if baseline_d else None

    values: dict[Setting, dict[str, dict[int, float]]] = {}
    units: dict[Setting, dict[str, dict[int, UnitMap]]] = {}
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
            found = _arm_metrics(arm)
            ans = answers.get((setting, seed))
            if ans is not None:
                names = row_metric_names(ans)
                found.update(arm_metric_values(ans, names))
                for name in names:
                    u = metric_units(ans.rows, name)
                    if u:
                        units.setdefault(setting, {}).setdefault(name, {})[seed] = u
            for name, v in found.items():
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
    same = _same_prompts({k: v for k, v in answers.items() if k[0] == baseline}, config)
    primary = config.get("primary_metric")
    names = sorted({n for per in values.values() for n in per}, key=lambda n: metric_sort_key(n, primary))
    metrics = []
    for name in names:
        direction = metric_direction(name)
        base_vals = values.get(baseline, {}).get(name) if baseline else None
        base_units = units.get(baseline, {}).get(name, {}) if baseline else {}
        cells = []
        for s in all_settings:
            vals = values.get(s, {}).get(name)
            if not vals:
                continue
            ordered = [vals[k] for k in sorted(vals)]
            own = units.get(s, {}).get(name, {})
            if len(own) == len(vals) and len(vals) > 1:
                found = prompt_interval({seed: (u, None) for seed, u in own.items()}, confidence)
                est = Estimate.with_interval(ordered, found[0] if found else None)
            else:
                est = Estimate.of(ordered, confidence)
                if len(vals) > 1 and est.sd == 0:
                    est = Estimate(est.n, est.mean, est.sd, None, None)  # zero width: no interval
            if s == baseline:
                cells.append(Cell(s, labels[s], True, vals, est, None, BASELINE))
                continue
            diff = diff_untruncated = None
            if base_vals:
                shared = sorted(set(vals) & set(base_vals))
                seed_diffs = {k: vals[k] - base_vals[k] for k in shared}
                mine = units.get(s, {}).get(name, {})
                if len(shared) > 1 and all(k in mine and k in base_units for k in shared):
                    pairs = {k: (mine[k], base_units[k]) for k in shared}
                    found = prompt_interval(pairs, confidence)
                    if found is not None:
                        interval, per_seed = found
                        sd = statistics.stdev(per_seed.values()) if len(per_seed) > 1 else None
                        diff = PairedDifference.from_interval(
                            shared, statistics.fmean(per_seed.values()), sd, interval
                        )
                    if name.startswith("ifeval/"):
                        cut = prompt_interval(pairs, confidence, untruncated=True)
                        if cut is not None:
                            interval, per_seed = cut
                            sd = statistics.stdev(per_seed.values()) if len(per_seed) > 1 else None
                            diff_untruncated = PairedDifference.from_interval(
                                sorted(per_seed), statistics.fmean(per_seed.values()), sd, interval
                            )
                if diff is None:
                    diff = difference_estimate(seed_diffs, confidence, crossed=same)
            cells.append(
                Cell(
                    s,
                    labels[s],
                    False,
                    vals,
                    est,
                    diff,
                    verdict(direction, diff),
                    diff_untruncated,
                    None if diff_untruncated is None else verdict(direction, diff_untruncated),
                )
            )
        metrics.append(MetricSummary(name, metric_label(name), direction, tuple(cells)))

    return Summary(
        kind=str(results.get("kind", "compare")),
        status=str(results.get("status", "unknown")),
        confidence=confidence,
        primary_metric=primary,
        baseline=baseline,
        settings=infos,
        metrics=tuple(metrics),
        same_prompts=same,
        answers=answers,
    )
