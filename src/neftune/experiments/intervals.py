"""Intervals that cover how both the seeds and the evaluation prompts were sampled.

A compare experiment answers the same question twice over: which seeds (data order, noise,
and — by default — which generated data and evaluation prompts) and which prompts within
them. A paired t interval over seeds alone treats the prompts as fixed: when every seed is
scored on the same prompts, it leaves out how those prompts were drawn. Here each estimate is
a function of per-prompt values grouped by seed, and its variance is estimated by deleting one
unit at a time and recomputing the *whole* estimate (a grouped delete-one jackknife):

- *seed part* ``V_seed``: delete one seed at a time;
- *prompt part*: when every seed answered the same prompts (``crossed``), delete one prompt
  from every seed at once (``V_prompt``); when each seed drew its own prompts (``nested``),
  delete one prompt of one seed at a time (``V_within``).

The variance is ``V_seed + V_prompt - V_noise`` in the crossed design: each deletion also
moves the estimate by the seed x prompt noise, so the sum counts that noise twice, and
``V_noise`` (the two-way fit's residual mean square, scaled) takes one copy out; for a plain
mean this is exactly the two-way random-effects ANOVA estimate ``(MS_seed + MS_prompt -
MS_noise) / (seeds x prompts)``, with each part floored at the noise part as variance
components are floored at 0. In the nested design it is ``max(V_seed, V_within)``: the seeds'
spread already holds their prompts' sampling, and ``V_within`` is its floor, so seeds that
happen to agree cannot give a zero-width interval while their prompts disagree. The interval
is ``estimate ± t_{df} · sqrt(V)``, ``df`` = seeds - 1 in the nested design and Satterthwaite's
combination of the three parts (seed, prompt, noise: (seeds - 1), (prompts - 1) and their
product) in the crossed one. For
a plain mean of per-seed values the seed part is exactly the paired t interval's ``sd² / n``.

Because the whole estimate is recomputed at each deletion, a fitted quantity inside it (the
slope of the length adjustment) contributes its own estimation error. The smallest effect the
same design detects with 80% power at the same confidence is ``(t_{(1+c)/2, df} + t_{0.8, df}) ·
sqrt(V)``. An interval of zero width (every per-prompt difference identical) gives no verdict.

Pure numpy / scipy; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

__all__ = [
    "COVERS_SEEDS",
    "COVERS_SEEDS_AND_PROMPTS",
    "POWER",
    "Groups",
    "Interval",
    "detectable_effect",
    "grouped_interval",
    "planned_interval",
    "seed_interval",
]

#: Power at which the detectable effect is stated.
POWER = 0.8
COVERS_SEEDS = "seeds"
COVERS_SEEDS_AND_PROMPTS = "seeds and prompts"

#: One seed's prompts: ``keys`` (prompt identities), ``y`` (each prompt's score sum: 1/0 for a
#: prompt-level score, followed instructions for an instruction-level one, or a difference of
#: those between two arms), ``w`` (its weight: 1, or the number of instructions) and ``x`` (its
#: answer length, or length difference). The seed's value is ``sum(y) / sum(w)``.
Groups = Mapping[int, tuple[Sequence[object], np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval, p-value (H0: 0) and detectable effect; None where undefined.

    ``degenerate``: the variance is 0 (every unit identical), so no interval and no verdict.
    ``covers``: what the interval's variance includes (:data:`COVERS_SEEDS` or
    :data:`COVERS_SEEDS_AND_PROMPTS`). ``seed_var`` / ``prompt_var``: the variance of one seed's
    value from seeds and from its prompts, and ``n_prompts`` per seed: what a planner needs to
    predict the interval of another design (:func:`planned_interval`).
    """

    estimate: float
    se: float | None
    df: float | None
    lo: float | None
    hi: float | None
    p: float | None
    detectable: float | None
    n_seeds: int
    n_prompts: int
    covers: str
    crossed: bool
    degenerate: bool = False
    seed_var: float | None = None
    prompt_var: float | None = None


def _tiny(scale: float) -> float:
    """Below this a variance counts as 0 (float round-off of identical values)."""
    return (1e-9 * max(1.0, abs(scale))) ** 2


def detectable_effect(se: float, df: float, confidence: float, power: float = POWER) -> float:
    """Smallest |effect| a two-sided test at ``confidence`` detects with ``power``:
    ``(t_{(1+confidence)/2, df} + t_{power, df}) * se`` (the usual normal-theory approximation
    with Student-t quantiles)."""
    return float((scipy_stats.t.ppf((1 + confidence) / 2, df) + scipy_stats.t.ppf(power, df)) * se)


def _finish(
    estimate: float,
    var: float,
    df: float,
    confidence: float,
    *,
    n_seeds: int,
    n_prompts: int,
    covers: str,
    crossed: bool,
    seed_var: float | None,
    prompt_var: float | None,
) -> Interval:
    common = dict(
        n_seeds=n_seeds,
        n_prompts=n_prompts,
        covers=covers,
        crossed=crossed,
        seed_var=seed_var,
        prompt_var=prompt_var,
    )
    if not math.isfinite(var) or var <= _tiny(estimate) or not df > 0:
        return Interval(estimate, None, None, None, None, None, None, degenerate=True, **common)
    se = math.sqrt(var)
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, df)) * se
    p = float(2 * scipy_stats.t.sf(abs(estimate) / se, df))
    return Interval(
        estimate,
        se,
        df,
        estimate - half,
        estimate + half,
        p,
        detectable_effect(se, df, confidence),
        **common,
    )


def seed_interval(values: Mapping[int, float], confidence: float, *, crossed: bool = True) -> Interval | None:
    """Interval of the mean of per-seed ``values`` (the paired t interval when they are
    differences); None with fewer than 2 seeds. ``crossed``: the seeds were scored on the same
    records (the interval then covers seeds only)."""
    vals = np.array([values[s] for s in sorted(values)], dtype=float)
    n = len(vals)
    if n < 2:
        return None
    mean = float(vals.mean())
    var = float(vals.var(ddof=1)) / n
    covers = COVERS_SEEDS if crossed else COVERS_SEEDS_AND_PROMPTS
    return _finish(
        mean,
        var,
        n - 1,
        confidence,
        n_seeds=n,
        n_prompts=0,
        covers=covers,
        crossed=crossed,
        seed_var=var * n,
        prompt_var=None,
    )


# --------------------------------------------------------------------------- the estimator


def _estimate(W, Y, X, XY, XX, adjust: bool) -> np.ndarray:
    """The estimate from per-seed sums (last axis: seeds; leading axes: deletions).

    Seed value ``Y / W``; adjusted: minus ``slope * X / W`` with the pooled within-seed
    weighted least-squares slope ``sum(XY - X Y / W) / sum(XX - X² / W)``.
    """
    mean_y = Y / W
    if not adjust:
        return mean_y.mean(axis=-1)
    sxy = (XY - X * Y / W).sum(axis=-1)
    sxx = (XX - X * X / W).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), np.nan)
    return (mean_y - slope[..., None] * (X / W)).mean(axis=-1)


def _jackknife_var(values: np.ndarray) -> float:
    """Delete-one jackknife variance ``(n - 1) / n * sum((v_i - mean v)^2)``."""
    n = len(values)
    if n < 2:
        return 0.0
    return float((n - 1) / n * ((values - values.mean()) ** 2).sum())


def _interaction_var(y, w, x, W, Y, X, XY, XX, adjust: bool) -> float:
    """The seed x prompt noise's share of the estimate's variance in a crossed layout (``P x S``
    arrays), which the seed and the prompt deletions each count once: ``sigma_e^2 * sum_s
    sum_p (w_sp / W_s)^2 / S^2``, with ``sigma_e^2`` the residual mean square of the two-way
    (seed + prompt) fit of the per-prompt values ``y / w`` (minus ``slope * x`` when adjusted)."""
    P, S = y.shape
    if P < 2 or S < 2:
        return 0.0
    z = y / w
    if adjust:
        sxy = (XY - X * Y / W).sum()
        sxx = (XX - X * X / W).sum()
        if sxx > 0:
            z = z - (sxy / sxx) * x
    resid = z - z.mean(axis=0, keepdims=True) - z.mean(axis=1, keepdims=True) + z.mean()
    sigma2 = float((resid**2).sum()) / ((S - 1) * (P - 1))
    return sigma2 * float(((w / W) ** 2).sum()) / S**2


def slope_of(groups: Groups) -> float | None:
    """The pooled within-seed weighted least-squares slope of y/w on x (None when x never varies)."""
    sums = _sums(groups)
    sxy = float((sums[3] - sums[2] * sums[1] / sums[0]).sum())
    sxx = float((sums[4] - sums[2] ** 2 / sums[0]).sum())
    return sxy / sxx if sxx > _tiny(0.0) else None


def _sums(groups: Groups) -> tuple[np.ndarray, ...]:
    seeds = sorted(groups)
    cols = []
    for s in seeds:
        _, y, w, x = groups[s]
        cols.append((w.sum(), y.sum(), (w * x).sum(), (x * y).sum(), (w * x * x).sum()))
    return tuple(np.array(c, dtype=float) for c in zip(*cols))


def grouped_interval(
    groups: Groups,
    confidence: float,
    *,
    crossed: bool,
    adjust_length: bool = False,
) -> Interval | None:
    """Estimate, interval and detectable effect of the per-seed weighted mean of ``y`` (optionally
    adjusted to equal ``x``), with the grouped jackknife of the module docstring.

    ``crossed``: every seed answered the same prompts (only keys present in every seed are used);
    otherwise each seed's prompts are its own (nested). None with fewer than 2 seeds or no prompts.
    """
    seeds = [s for s in sorted(groups) if len(groups[s][1])]
    if len(seeds) < 2:
        return None
    if crossed:
        common = set.intersection(*(set(groups[s][0]) for s in seeds))
        if not common:
            return None
        order = sorted(common, key=repr)
        aligned = {}
        for s in seeds:
            keys, y, w, x = groups[s]
            index = {k: i for i, k in enumerate(keys)}
            pick = np.array([index[k] for k in order])
            aligned[s] = (order, y[pick], w[pick], x[pick])
        groups = aligned
    else:
        groups = {s: groups[s] for s in seeds}
    W, Y, X, XY, XX = _sums(groups)
    if np.any(W <= 0):
        return None
    S = len(seeds)
    estimate = float(_estimate(W, Y, X, XY, XX, adjust_length))
    if not math.isfinite(estimate):
        return None

    # Seed part: delete one seed (boolean mask over the seed axis).
    keep = ~np.eye(S, dtype=bool)
    by_seed = np.array([_estimate(W[k], Y[k], X[k], XY[k], XX[k], adjust_length) for k in keep], dtype=float)
    v_seed = _jackknife_var(by_seed)

    n_prompts = round(float(np.mean([len(groups[s][1]) for s in seeds])))
    if crossed:
        # Prompt part: delete prompt j from every seed at once (vectorised over j).
        y = np.stack([groups[s][1] for s in seeds], axis=1)  # (P, S)
        w = np.stack([groups[s][2] for s in seeds], axis=1)
        x = np.stack([groups[s][3] for s in seeds], axis=1)
        P = y.shape[0]
        if P < 2:
            return None
        by_prompt = _estimate(W - w, Y - y, X - w * x, XY - x * y, XX - w * x * x, adjust_length)
        v_prompt = _jackknife_var(by_prompt)
        v_noise = _interaction_var(y, w, x, W, Y, X, XY, XX, adjust_length)
        # ANOVA's unbiased combination (MS_seed + MS_prompt - MS_noise) / (S P), each part floored
        # at the noise part as the variance components are floored at 0.
        a, b = max(v_seed, v_noise), max(v_prompt, v_noise)
        var = a + b - v_noise
        # Satterthwaite over the three non-negative parts (seed, prompt, noise), each with its
        # mean square's degrees of freedom: a part near 0 then costs no degrees of freedom.
        parts = [(a - v_noise, S - 1), (b - v_noise, P - 1), (v_noise, (S - 1) * (P - 1))]
        denom = sum(v * v / d for v, d in parts if v > 0)
        df = var * var / denom if denom > 0 else float(S - 1)
        seed_var, prompt_var = a * S, b
    else:
        # Within-seed part: delete prompt j of seed s only.
        v_within = 0.0
        df_within = 0
        for i, s in enumerate(seeds):
            _, y, w, x = groups[s]
            if len(y) < 2:
                continue
            Ws, Ys, Xs, XYs, XXs = (np.repeat(a[None, :], len(y), axis=0) for a in (W, Y, X, XY, XX))
            Ws[:, i] -= w
            Ys[:, i] -= y
            Xs[:, i] -= w * x
            XYs[:, i] -= x * y
            XXs[:, i] -= w * x * x
            v_within += _jackknife_var(_estimate(Ws, Ys, Xs, XYs, XXs, adjust_length))
            df_within += len(y) - 1
        if v_seed >= v_within:
            var, df = v_seed, float(S - 1)
        else:  # the seeds agree better than their prompts' sampling allows: the floor
            var, df = v_within, float(max(df_within, 1))
        seed_var, prompt_var = max(v_seed, v_within) * S, v_within * S
    return _finish(
        estimate,
        var,
        df,
        confidence,
        n_seeds=S,
        n_prompts=n_prompts,
        covers=COVERS_SEEDS_AND_PROMPTS,
        crossed=crossed,
        seed_var=seed_var,
        prompt_var=prompt_var,
    )


# --------------------------------------------------------------------------- planning


def planned_interval(
    pilot: Interval,
    *,
    seeds: int,
    crossed: bool,
    prompts: int | None = None,
    confidence: float = 0.95,
) -> tuple[float, float] | None:
    """``(standard error, detectable effect)`` of the same comparison run with ``seeds`` seeds,
    prompts shared across seeds (``crossed``) or drawn per seed, and ``prompts`` per seed
    (default: the pilot's), from the pilot's variance components.

    A pilot's one-seed variance is split into a seed part ``a`` and a prompt part ``π``: crossed
    pilot: ``a`` = its seed part, ``π`` = its prompt part; nested pilot: ``π`` = its within-seed
    prompt part, ``a`` = the rest. The planned variance is ``(a + π r) / seeds`` for prompts drawn
    per seed and ``a / seeds + π r`` for shared prompts, ``r`` = pilot prompts / planned prompts;
    ``df`` as :func:`grouped_interval` would give. Both splits err on the wide side (a crossed
    pilot's ``a`` still holds the seed x prompt noise). None when the pilot had no variance
    components (fewer than 2 seeds, or degenerate).
    """
    if pilot.seed_var is None or seeds < 2:
        return None
    prompt_var = pilot.prompt_var or 0.0
    if pilot.crossed:
        a, pi = pilot.seed_var, prompt_var
    else:
        a, pi = max(pilot.seed_var - prompt_var, 0.0), prompt_var
    r = (pilot.n_prompts / prompts) if (prompts and pilot.n_prompts) else 1.0
    if crossed:
        seed_part, prompt_part = a / seeds, pi * r
        var = seed_part + prompt_part
        p = prompts or pilot.n_prompts or 2
        parts = [(seed_part, seeds - 1), (prompt_part, max(p - 1, 1))]
        denom = sum(v * v / d for v, d in parts if v > 0)
        df = var * var / denom if denom > 0 else float(seeds - 1)
    else:
        var, df = (a + pi * r) / seeds, float(seeds - 1)
    if var <= 0:
        return None
    se = math.sqrt(var)
    return se, detectable_effect(se, df, confidence)
