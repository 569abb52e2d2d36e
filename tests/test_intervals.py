"""Intervals over seeds and prompts (neftune.experiments.intervals): exact identities and coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from neftune.experiments.intervals import (
    detectable_effect,
    grouped_interval,
    planned_interval,
    seed_interval,
)


def groups_from(
    table: np.ndarray, *, crossed: bool, x: np.ndarray | None = None, w: np.ndarray | None = None
):
    """``table`` is (seeds, prompts): one value per prompt of each seed."""
    S, P = table.shape
    x = np.zeros_like(table) if x is None else x
    w = np.ones_like(table) if w is None else w
    return {s: ([p if crossed else (s, p) for p in range(P)], table[s] * w[s], w[s], x[s]) for s in range(S)}


# --------------------------------------------------------------------------- exact identities


def test_seed_interval_is_the_paired_t_interval():
    values = {0: 1.0, 1: 2.0, 2: 4.0}
    iv = seed_interval(values, 0.95)
    sd = np.std([1, 2, 4], ddof=1)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert iv.estimate == pytest.approx(7 / 3)
    assert (iv.lo, iv.hi) == (pytest.approx(7 / 3 - half), pytest.approx(7 / 3 + half))
    assert iv.p == pytest.approx(stats.ttest_1samp([1, 2, 4], 0).pvalue)
    assert iv.detectable == pytest.approx((stats.t.ppf(0.975, 2) + stats.t.ppf(0.8, 2)) * sd / math.sqrt(3))
    assert seed_interval({0: 1.0}, 0.95) is None


def test_nested_design_is_the_t_interval_of_the_seed_means():
    # Each seed drew its own prompts: the seeds' spread holds the prompt sampling, so the interval
    # is the t interval of the seed means (the within-seed floor is far below it here).
    rng = np.random.default_rng(0)
    table = rng.normal(0, 0.1, (4, 30)) + np.array([[0.0], [0.5], [1.0], [2.0]])
    iv = grouped_interval(groups_from(table, crossed=False), 0.95, crossed=False)
    means = table.mean(axis=1)
    ref = seed_interval(dict(enumerate(means)), 0.95)
    assert (iv.estimate, iv.lo, iv.hi, iv.df) == (
        pytest.approx(ref.estimate),
        pytest.approx(ref.lo),
        pytest.approx(ref.hi),
        3,
    )


def test_nested_seeds_that_agree_cannot_give_a_zero_width_interval():
    # Three seeds with the same mean, but their prompts disagree: the floor is the prompts' own
    # sampling variance of each seed mean, sum_s var_s / P / S^2 (the delete-one jackknife of a
    # mean is exactly var / P).
    table = np.array([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    iv = grouped_interval(groups_from(table, crossed=False), 0.95, crossed=False)
    within = sum(np.var(row, ddof=1) / 4 for row in table) / 9
    assert not iv.degenerate and iv.se == pytest.approx(math.sqrt(within))
    assert iv.df == 3 * (4 - 1)


def test_identical_values_are_degenerate():
    table = np.full((3, 5), 0.25)
    for crossed in (True, False):
        iv = grouped_interval(groups_from(table, crossed=crossed), 0.95, crossed=crossed)
        assert iv.degenerate and iv.lo is None and iv.p is None and iv.detectable is None
    assert seed_interval({0: 0.5, 1: 0.5, 2: 0.5}, 0.95).degenerate


def test_crossed_design_is_the_two_way_anova_estimate():
    # Same prompts for every seed: Var(grand mean) = (MS_seed + MS_prompt - MS_noise) / (S P) of the
    # two-way random-effects ANOVA, computed here from its textbook sums of squares.
    rng = np.random.default_rng(1)
    S, P = 4, 25
    table = rng.normal(0, 0.5, (S, P)) + rng.normal(0, 0.3, (S, 1)) + rng.normal(0, 0.6, (1, P))
    iv = grouped_interval(groups_from(table, crossed=True), 0.95, crossed=True)
    m = table.mean()
    ms_a = P * ((table.mean(axis=1) - m) ** 2).sum() / (S - 1)
    ms_b = S * ((table.mean(axis=0) - m) ** 2).sum() / (P - 1)
    resid = table - table.mean(axis=1, keepdims=True) - table.mean(axis=0, keepdims=True) + m
    ms_e = (resid**2).sum() / ((S - 1) * (P - 1))
    assert ms_a > ms_e and ms_b > ms_e  # neither component floored in this draw
    assert iv.se**2 == pytest.approx((ms_a + ms_b - ms_e) / (S * P), rel=1e-9)
    assert iv.estimate == pytest.approx(m)


def test_instruction_level_weights():
    # A prompt with 3 instructions counts 3 times: the seed value is sum(followed) / sum(instructions).
    keys = [0, 1]
    groups = {
        0: (keys, np.array([3.0, 0.0]), np.array([3.0, 1.0]), np.zeros(2)),
        1: (keys, np.array([1.0, 1.0]), np.array([3.0, 1.0]), np.zeros(2)),
    }
    iv = grouped_interval(groups, 0.95, crossed=True)
    assert iv.estimate == pytest.approx((3 / 4 + 2 / 4) / 2)


# --------------------------------------------------------------------------- coverage


def _coverage(simulate, reps: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        lo, hi = simulate(rng)
        hits += lo <= 0.0 <= hi
    return hits / reps


# 200 replications: the observed coverage of a correct 95% interval has sd sqrt(.95 x .05 / 200)
# = 0.0154; 3 sd below 0.95 is 0.904, so a correct method fails this bound about 1 time in 700.
REPS = 200
FLOOR = 0.95 - 3 * math.sqrt(0.95 * 0.05 / REPS)


def test_prompt_effects_shared_by_seeds_are_covered_and_a_seeds_only_interval_misses_them():
    # Same prompts for every seed and a per-prompt effect of the noise (some prompts helped, others
    # hurt) that every seed shares: the seeds' spread does not show it. True mean difference 0.
    S, P = 5, 40

    def draw(rng):
        return rng.normal(0, 0.02, (S, 1)) + rng.normal(0, 0.3, (1, P)) + rng.normal(0, 0.3, (S, P))

    def ours(rng):
        iv = grouped_interval(groups_from(draw(rng), crossed=True), 0.95, crossed=True)
        return iv.lo, iv.hi

    def seeds_only(rng):
        iv = seed_interval(dict(enumerate(draw(rng).mean(axis=1))), 0.95)
        return iv.lo, iv.hi

    assert _coverage(ours, REPS, 1) >= FLOOR
    # Seeds only: its variance (0.02² + 0.3²/40) / 5 leaves out 0.3²/40 of the prompts' part, the
    # larger one; with t_{.975,4} its interval covers |z| < 2.78 x 0.0230 / 0.0527 = 1.21 true sd,
    # i.e. about 77%. Below 85% it is (the bound is 3 sd of 200 draws above 77%).
    assert _coverage(seeds_only, REPS, 2) < 0.85


@pytest.mark.parametrize("crossed", [True, False], ids=["same prompts", "prompts per seed"])
def test_binary_scores_coverage(crossed):
    # 0/1 scores, 3 seeds x 40 prompts, prompt difficulty, a small seed effect, no true difference.
    S, P = 3, 40

    def once(rng):
        difficulty = rng.normal(0, 1, P)
        table = []
        for _ in range(S):
            if not crossed:
                difficulty = rng.normal(0, 1, P)
            p = 1 / (1 + np.exp(-(difficulty - 0.5)))
            noisy = np.clip(p + rng.normal(0, 0.03), 0, 1)
            table.append((rng.random(P) < noisy).astype(float) - (rng.random(P) < p))
        iv = grouped_interval(groups_from(np.array(table), crossed=crossed), 0.95, crossed=crossed)
        return (iv.lo, iv.hi) if not iv.degenerate else (0.0, 0.0)

    assert _coverage(once, REPS, 3 if crossed else 4) >= FLOOR


def test_length_adjustment_carries_the_slopes_uncertainty():
    # The score rises with answer length (0.004 per character) and the noisy answers are 100
    # characters longer: the raw difference is about +0.4, the difference at equal length 0. A
    # slope treated as known shifts every seed's intercept together, so their spread misses its
    # error; re-fitting it at each deletion does not. 10 seeds x 40 prompts, per-prompt sd 0.5:
    # seeds' part of the SE 0.5 / sqrt(40) / sqrt(10) = 0.025, slope part 100 x 0.5 / sqrt(10 x
    # 40 x 40^2) = 0.0625, so the slope-known interval (t_{.975,9} x 0.025 = ±0.057) covers
    # |z| < 0.057 / 0.067 = 0.85 true sd, about 60%.
    S, P, beta = 10, 40, 0.004

    def draw(rng):
        x = rng.normal(100, 40, (S, P))
        y = beta * x + rng.normal(0, 0.5, (S, P)) + rng.normal(0, 0.02, (S, 1))
        return groups_from(y, crossed=False, x=x)

    def ours(rng):
        iv = grouped_interval(draw(rng), 0.95, crossed=False, adjust_length=True)
        return iv.lo, iv.hi

    def slope_known(rng):
        groups = draw(rng)
        xs = np.stack([g[3] for g in groups.values()])
        ys = np.stack([g[1] for g in groups.values()])
        xc = xs - xs.mean(axis=1, keepdims=True)
        b = (xc * (ys - ys.mean(axis=1, keepdims=True))).sum() / (xc**2).sum()
        iv = seed_interval(dict(enumerate(ys.mean(axis=1) - b * xs.mean(axis=1))), 0.95)
        return iv.lo, iv.hi

    assert _coverage(ours, REPS, 5) >= FLOOR
    assert _coverage(slope_known, REPS, 5) < 0.85  # 3 sd of 200 draws above 60%


# --------------------------------------------------------------------------- power and planning


def test_detectable_effect_is_the_power_formula():
    # With a known SE and many degrees of freedom: (1.96 + 0.8416) x SE.
    assert detectable_effect(0.01, 1e6, 0.95) == pytest.approx(0.028016, rel=1e-4)


def test_planned_interval_scales_with_the_design():
    rng = np.random.default_rng(7)
    nested = grouped_interval(groups_from(rng.normal(0, 0.4, (3, 40)), crossed=False), 0.95, crossed=False)
    se3, _ = planned_interval(nested, seeds=3, crossed=False)
    assert se3 == pytest.approx(nested.se)  # the pilot's own design gives its own SE
    se12, _ = planned_interval(nested, seeds=12, crossed=False)
    assert se12 == pytest.approx(nested.se / 2)  # 4x the seeds, half the SE
    crossed = grouped_interval(
        groups_from(rng.normal(0, 0.4, (3, 40)) + rng.normal(0, 0.5, (1, 40)), crossed=True),
        0.95,
        crossed=True,
    )
    many, _ = planned_interval(crossed, seeds=1000, crossed=True)
    # Shared prompts: more seeds never take away the prompts' part of the variance.
    assert many == pytest.approx(math.sqrt(crossed.prompt_var), rel=0.05)
    # Drawing prompts per seed makes the prompt part shrink with the seeds too.
    assert planned_interval(crossed, seeds=1000, crossed=False)[0] < many / 5
    assert planned_interval(crossed, seeds=1, crossed=False) is None
