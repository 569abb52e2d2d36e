"""Experiment statistics against hand-computed answers (no training, no torch use)."""

from __future__ import annotations

import json
import math

import pytest

from neftune.experiments.findings import (
    headline_sentences,
    multiple_comparisons_sentence,
    paper_signatures,
    recommend,
    status_sentence,
    summary_to_dict,
)
from neftune.experiments.formatting import fmt_ci, fmt_estimate
from neftune.experiments.labels import metric_direction, metric_label, setting_word
from neftune.experiments.stats import (
    NA_NO_BASELINE,
    NA_NO_SHARED_SEEDS,
    NA_ONE_SEED,
    Setting,
    mean_interval,
    paired_difference,
    paired_t_p_value,
    summarize,
    verdict,
)

# t_{0.975, 2}: for 2 degrees of freedom the t quantile has the closed form
# t_q = (2q - 1) * sqrt(2 / (1 - (2q - 1)^2)); q = 0.975 gives 0.95 * sqrt(2 / 0.0975) = 4.30265...
T975_DF2 = 0.95 * math.sqrt(2 / (1 - 0.95**2))
ACC = "accuracy/eval_heldout_templates"
BASE = {"alpha": 0.0, "distribution": "uniform", "schedule": None}


def arm(alpha, seed, status="complete", distribution="uniform", schedule=None, **metrics):
    return {
        "id": f"a{alpha}-{distribution}-{schedule}-s{seed}",
        "setting": {"alpha": alpha, "distribution": distribution, "schedule": schedule},
        "seed": seed,
        "status": status,
        "eval": metrics if status == "complete" else {},
    }


def results(arms, baseline=BASE, primary=ACC, status="complete", kind="compare"):
    return {
        "schema": "neftune.results/1",
        "kind": kind,
        "status": status,
        "config": {"primary_metric": primary},
        "baseline": baseline,
        "arms": arms,
    }


def compare(base_vals, noisy_vals, metric=ACC, alpha=5.0, seeds=(0, 1, 2)):
    """Two settings, one metric; values listed by seed."""
    arms = [arm(0.0, s, **{metric: v}) for s, v in zip(seeds, base_vals)]
    arms += [arm(alpha, s, **{metric: v}) for s, v in zip(seeds, noisy_vals)]
    return results(arms, primary=metric if metric_direction(metric) != "descriptive" else ACC)


def cell(summary, metric, alpha, distribution="uniform", schedule=None):
    m = summary.metric(metric)
    assert m is not None
    c = m.cell(Setting.from_mapping({"alpha": alpha, "distribution": distribution, "schedule": schedule}))
    assert c is not None
    return c


# --------------------------------------------------------------------------- core numbers


def test_paired_differences_1_2_3_hand_computed() -> None:
    # diffs [1, 2, 3]: mean 2, sd 1, CI 2 +- t_{.975,2} * 1 / sqrt(3)
    s = summarize(compare([0.1, 0.2, 0.3], [1.1, 2.2, 3.3]))
    d = cell(s, ACC, 5.0).diff
    assert d is not None
    half = T975_DF2 / math.sqrt(3)
    assert d.seeds == (0, 1, 2)
    assert d.mean == pytest.approx(2.0)
    assert d.sd == pytest.approx(1.0)
    assert d.lo == pytest.approx(2 - half, rel=1e-9)
    assert d.hi == pytest.approx(2 + half, rel=1e-9)
    assert half == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)
    # paired t: t = 2 / (1 / sqrt 3) = sqrt(12). With 2 df the CDF is 1/2 + t / (2 sqrt(2 + t^2)),
    # so the two-sided p is 1 - t / sqrt(2 + t^2) = 1 - sqrt(12 / 14).
    assert d.p == pytest.approx(1 - math.sqrt(12 / 14), rel=1e-9)
    assert cell(s, ACC, 5.0).verdict == "no detectable difference"  # CI [-0.48, 4.48] holds 0


def test_setting_estimate_mean_sd_ci() -> None:
    s = summarize(compare([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]))
    e = cell(s, ACC, 0.0).estimate
    half = T975_DF2 / math.sqrt(3)  # sd of [1, 2, 3] is 1
    assert (e.n, e.mean, e.sd) == (3, pytest.approx(2.0), pytest.approx(1.0))
    assert (e.lo, e.hi) == (pytest.approx(2 - half), pytest.approx(2 + half))


def test_p_value_closed_form_and_matches_interval() -> None:
    # diffs [2, 3, 4]: t = 3 sqrt 3, t^2 = 27 -> p = 1 - sqrt(27 / 29) = 0.0351 < 0.05, and the CI
    # 3 +- 2.484 = [0.516, 5.484] excludes 0: both criteria agree (same t distribution).
    assert paired_t_p_value([2.0, 3.0, 4.0]) == pytest.approx(1 - math.sqrt(27 / 29), rel=1e-9)
    d = paired_difference({0: 2.0, 1: 3.0, 2: 4.0}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert d.distinguishable and d.p is not None and d.p < 0.05
    # The equivalence "CI excludes 0 <=> p < 0.05" on a few more sets, near and far from the edge.
    for diffs in ([0.1, 0.2, 0.35, 0.05], [1.0, -1.0, 0.5], [0.4, 0.5, 0.45, 0.6, 0.2], [3.0, 3.1]):
        d = paired_difference(dict(enumerate(diffs)), dict.fromkeys(range(len(diffs)), 0.0))
        assert d.distinguishable == (d.p < 0.05), diffs


def test_zero_variance_differences_give_no_verdict() -> None:
    assert paired_t_p_value([0.0, 0.0, 0.0]) == 1.0
    assert paired_t_p_value([0.5, 0.5]) == 0.0
    # Identical non-zero differences: an interval of zero width and p = 0 would call them "better"
    # (issue 23, item 4). There is no interval, hence no verdict.
    d = paired_difference({0: 1.5, 1: 2.5}, {0: 1.0, 1: 2.0})
    assert d.mean == pytest.approx(0.5) and d.degenerate
    assert (d.lo, d.hi, d.p) == (None, None, None) and not d.distinguishable
    assert verdict("higher", d) == "n/a (no variation)"
    s = summarize(compare([0.25, 0.25, 0.25], [0.275, 0.275, 0.275]))  # steps of 1/40, all equal
    c = cell(s, ACC, 5.0)
    assert c.verdict == "n/a (no variation)" and c not in s.metric(ACC).compared
    with pytest.raises(ValueError, match="at least 2"):
        paired_t_p_value([1.0])


def test_pairing_is_by_seed_and_unmatched_seeds_are_dropped() -> None:
    base = {1: 10.0, 2: 20.0, 3: 30.0, 5: 99.0}
    noisy = {0: -50.0, 3: 31.0, 1: 11.0, 2: 22.0}
    d = paired_difference(noisy, base)
    # shared seeds 1, 2, 3: diffs 1, 2, 1 -> mean 4/3; seed 0 and 5 dropped
    assert d.seeds == (1, 2, 3)
    assert d.mean == pytest.approx(4 / 3)
    # through summarize, with the arms in a scrambled order
    arms = [arm(0.0, s, **{ACC: v}) for s, v in base.items()]
    arms += [arm(5.0, s, **{ACC: v}) for s, v in reversed(list(noisy.items()))]
    c = cell(summarize(results(arms)), ACC, 5.0)
    assert c.diff is not None and c.diff.seeds == (1, 2, 3) and c.diff.mean == pytest.approx(4 / 3)
    assert c.estimate.n == 4  # the setting's own estimate keeps all its seeds


def test_verdict_direction_per_metric() -> None:
    up = ([0.0, 0.0, 0.0], [2.0, 3.0, 4.0])  # diff CI [0.52, 5.48] > 0
    down = ([2.0, 3.0, 4.0], [0.0, 0.0, 0.0])
    expect = {
        "accuracy/eval_heldout_templates": ("better", "worse"),
        "loss/eval_heldout_templates": ("worse", "better"),
        "loss/eval": ("worse", "better"),
        "repetition_2gram": ("worse", "better"),
        "loss/train": ("higher", "lower"),  # noise-off training loss is descriptive (the signature)
        "length_tokens": ("higher", "lower"),
        "rouge_l_train": ("higher", "lower"),
        "some_new_metric": ("higher", "lower"),
    }
    for metric, (v_up, v_down) in expect.items():
        assert cell(summarize(compare(*up, metric=metric)), metric, 5.0).verdict == v_up, metric
        assert cell(summarize(compare(*down, metric=metric)), metric, 5.0).verdict == v_down, metric


def test_verdict_function_edge_cases() -> None:
    assert verdict("higher", None) == NA_NO_BASELINE
    assert verdict("higher", paired_difference({0: 1.0}, {1: 1.0})) == NA_NO_SHARED_SEEDS
    assert verdict("higher", paired_difference({0: 1.0, 1: 2.0}, {1: 1.0})) == NA_ONE_SEED


def test_one_seed() -> None:
    s = summarize(compare([0.3], [0.5], seeds=(0,)))
    c = cell(s, ACC, 5.0)
    assert c.verdict == "n/a (1 seed)"
    assert c.estimate.sd is None and c.estimate.lo is None and c.estimate.hi is None
    assert c.diff is not None and c.diff.mean == pytest.approx(0.2) and c.diff.lo is None and c.diff.p is None
    assert s.n_comparisons == 0
    text = " ".join(headline_sentences(s))
    assert "No verdict on accuracy on held-out templates" in text and "run 2 or more seeds" in text
    rec = recommend(s)
    assert rec.recommended is None and "cannot be told from seed noise" in rec.reason
    json.dumps(summary_to_dict(s), allow_nan=False)  # undefined intervals are null, never NaN


def test_no_baseline() -> None:
    arms = [arm(5.0, s, **{ACC: 0.3 + s / 10}) for s in range(3)]
    s = summarize(results(arms, baseline=None))
    assert cell(s, ACC, 5.0).verdict == "n/a (no baseline)"
    assert any("No finished baseline" in h for h in headline_sentences(s))
    rec = recommend(s)
    assert rec.recommended is None and "no baseline" in rec.reason
    # declared baseline whose arms all failed: same verdict
    arms += [arm(0.0, s, status="failed") for s in range(3)]
    s = summarize(results(arms))
    assert cell(s, ACC, 5.0).verdict == "n/a (no baseline)"
    base_info = next(i for i in s.settings if i.is_baseline)
    assert base_info.seeds_complete == () and base_info.n_failed == 3


def test_alpha_zero_is_normalised_to_the_baseline() -> None:
    arms = [arm(0, s, distribution="gaussian", schedule="linear", **{ACC: 0.3}) for s in range(2)]
    arms += [arm(5.0, s, **{ACC: 0.3}) for s in range(2)]
    s = summarize(results(arms))
    assert cell(s, ACC, 0.0).is_baseline


def test_partial_results_count_failed_and_pending() -> None:
    arms = [arm(0.0, s, **{ACC: 0.3 + s / 100}) for s in range(3)]
    arms += [arm(5.0, 0, **{ACC: 0.31}), arm(5.0, 1, status="failed"), arm(5.0, 2, status="pending")]
    s = summarize(results(arms, status="running"))
    assert (s.n_arms, s.n_complete, s.n_failed, s.n_pending) == (6, 4, 1, 1)
    assert cell(s, ACC, 5.0).verdict == "n/a (1 seed)"
    assert status_sentence(s) == (
        "Partial results (status 'running'): 4 of 6 arms finished, 1 failed, 1 pending; every number will change."
    )
    assert status_sentence(summarize(results(arms[:3]))) is None


def test_malformed_arm_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="alpha"):
        summarize(results([{"setting": {"alpha": "big"}, "seed": 0, "status": "complete"}]))
    with pytest.raises(ValueError, match="seed"):
        summarize(results([{"setting": {"alpha": 1.0}, "seed": "x", "status": "complete"}]))
    with pytest.raises(ValueError, match="arms"):
        summarize({"arms": None})


# --------------------------------------------------------------------------- recommend


def sweep_results(effects: dict[tuple[float, str], list[float]], base: list[float]):
    arms = [arm(0.0, s, **{ACC: v}) for s, v in enumerate(base)]
    for (alpha, dist), vals in effects.items():
        arms += [arm(alpha, s, distribution=dist, **{ACC: v}) for s, v in enumerate(vals)]
    return results(arms, kind="sweep")


def test_recommend_clear_winner() -> None:
    base = [0.30, 0.32, 0.31]
    r = sweep_results(
        {
            (5.0, "uniform"): [0.40, 0.43, 0.41],  # diffs .10 .11 .10: CI excludes 0 -> better
            (5.0, "gaussian"): [0.29, 0.33, 0.31],  # diffs -.01 .01 0
            (10.0, "uniform"): [0.20, 0.21, 0.22],  # worse
        },
        base,
    )
    s = summarize(r)
    assert not s.only_alpha_varies and setting_word(s.only_alpha_varies) == "setting"
    assert cell(s, ACC, 5.0, "gaussian").label == "alpha 5, gaussian"
    rec = recommend(s, ACC)
    assert rec.recommended == Setting(5.0, "uniform", None) and rec.beats_baseline
    assert rec.reason.startswith("Alpha 5, uniform is recommended: it beat the baseline beyond seed noise")
    assert "Alpha 10, uniform was worse beyond seed noise" in rec.reason
    # the runner-up (gaussian) is also clearly behind: paired gaps .11 .10 .10
    assert "It also beat alpha 5, gaussian beyond seed noise" in rec.reason


def test_recommend_nothing_distinguishable() -> None:
    base = [0.30, 0.32, 0.31]
    r = sweep_results({(5.0, "uniform"): [0.36, 0.30, 0.33], (10.0, "uniform"): [0.29, 0.34, 0.30]}, base)
    s = summarize(r)
    rec = recommend(s)
    assert rec.recommended is None and not rec.beats_baseline
    assert rec.best_by_mean == Setting(5.0)  # the highest mean is still reported, not hidden
    assert rec.reason.startswith("No setting is recommended over training without noise")
    assert "within noise; the experiment could detect ±" in rec.reason


def test_recommend_baseline_best_and_loss_direction() -> None:
    # held-out loss: lower is better; every noisy setting has a higher loss than the baseline
    metric = "loss/eval"
    arms = [arm(0.0, s, **{metric: v}) for s, v in enumerate([1.0, 1.1, 1.05])]
    arms += [arm(5.0, s, **{metric: v}) for s, v in enumerate([1.2, 1.31, 1.24])]
    s = summarize(results(arms, primary=metric))
    rec = recommend(s)
    assert rec.recommended is None and rec.best_by_mean == Setting(0.0)
    assert rec.reason.startswith("Training without noise (alpha 0) had the lowest mean held-out loss")
    assert "Alpha 5 was worse beyond seed noise" in rec.reason


def test_recommend_prefers_a_distinguishable_setting_over_a_noisy_higher_mean() -> None:
    base = [0.30, 0.32, 0.31]
    r = sweep_results(
        {(5.0, "uniform"): [0.60, 0.20, 0.50], (10.0, "uniform"): [0.35, 0.38, 0.36]},  # a5: mean .433, noisy
        base,
    )
    rec = recommend(summarize(r))
    assert rec.recommended == Setting(10.0) and rec.best_by_mean == Setting(5.0)
    assert "Alpha 5 had a higher mean" in rec.reason


def test_recommend_rejects_descriptive_metric() -> None:
    s = summarize(compare([1.0, 2.0], [1.0, 2.0], seeds=(0, 1)))
    with pytest.raises(ValueError, match="primary_metric 'length_tokens'"):
        recommend(s, "length_tokens")


# --------------------------------------------------------------------------- words


def test_headline_says_plainly_when_nothing_changed() -> None:
    r = compare([0.30, 0.32, 0.31], [0.31, 0.31, 0.33])
    r["arms"] += [arm(10.0, s, **{ACC: v}) for s, v in enumerate([0.29, 0.33, 0.30])]
    s = summarize(r)
    lines = headline_sentences(s)
    # Each "no detectable difference" says what could have been detected: (t_.975,2 + t_.8,2) x SE.
    # alpha 5: diffs .01 -.01 .02, sd 0.015275, SE = sd / sqrt 3 = 0.0088192;
    # alpha 10: diffs -.01 .01 -.01, sd 0.011547, SE 0.0066667.
    t = 4.302653 + 1.060660  # scipy.stats.t.ppf(0.975, 2) + t.ppf(0.8, 2)
    assert cell(s, ACC, 5.0).diff.detectable == pytest.approx(t * 0.0088192, rel=1e-4)
    assert cell(s, ACC, 10.0).diff.detectable == pytest.approx(t * 0.0066667, rel=1e-4)
    assert lines[0] == (
        "NEFTune did not measurably change accuracy on held-out templates at any alpha "
        "(3 seeds; differences from −0.003 to +0.007, all within noise); the experiment could detect "
        "±0.036–0.047 or larger at 80% power."
    )


def test_headline_with_equal_differences_says_so_once() -> None:
    # two settings whose differences round to the same value: not "from +0.007 to +0.007"
    r = compare([0.30, 0.32, 0.31], [0.31, 0.31, 0.33])
    r["arms"] += [arm(10.0, s, **{ACC: v}) for s, v in enumerate([0.31, 0.31, 0.33])]
    line = headline_sentences(summarize(r))[0]
    assert "(3 seeds; the difference was +0.007 at each, all within noise)" in line, line
    assert "from +0.007 to" not in line


def test_headline_names_improvement_with_interval() -> None:
    lines = headline_sentences(summarize(compare([0.0, 0.0, 0.0], [2.0, 3.0, 4.0])))
    assert (
        lines[0]
        == "NEFTune improved accuracy on held-out templates at alpha 5 (+3.0, 95% CI [+0.5, +5.5]) (3 seeds)."
    )
    assert not any("did not help" in line for line in lines)


def test_multiple_comparisons_sentence() -> None:
    # 3 metrics x 2 noisy settings = 6 comparisons -> 0.3 expected false positives at 95%
    arms = []
    for alpha in (0.0, 5.0, 10.0):
        for s in range(3):
            arms.append(
                arm(
                    alpha,
                    s,
                    **{
                        ACC: 0.3 + s / 100 + alpha * (1 + s) / 1000,
                        "loss/eval": 1.0 + s / 7 + alpha * s / 1000,
                        "x": s + alpha * s / 100,
                    },
                )
            )
    s = summarize(results(arms))
    assert s.n_comparisons == 6
    text = multiple_comparisons_sentence(s)
    assert "6 comparisons" in text and "about 0.3 of them" in text


def test_paper_signatures() -> None:
    arms = []
    for alpha, shift in ((0.0, 0.0), (5.0, 1.0), (10.0, 0.0)):
        for s in range(3):
            arms.append(
                arm(
                    alpha,
                    s,
                    **{
                        "length_chars/ifeval": 10 + s + shift * (2 + s / 10) + alpha * (s % 2) / 1000,
                        "loss/train": 0.4 + s / 50 + alpha * ((s % 2) - 0.5) / 1000,
                    },
                )
            )
    sig = {x.name: x for x in paper_signatures(summarize(results(arms)))}
    longer = sig["longer answers"]
    # Measured on the answers it claims: the instruction prompts' answers, and it says so.
    assert longer.metric == "length_chars/ifeval" and "answers to the instruction prompts" in longer.sentence
    assert (
        longer.status == "partly seen"
        and longer.seen_at == ("alpha 5",)
        and longer.unclear_at == ("alpha 10",)
    )
    assert sig["higher training loss with noise off"].status == "not seen"
    assert sig["lower ROUGE-L against the training responses"].status == "not measured"


def test_labels_and_formatting() -> None:
    assert metric_label("accuracy/eval_heldout_templates") == "accuracy on held-out templates"
    assert metric_label("loss/eval") == "held-out loss"
    assert metric_label("unknown/key") == "unknown/key"
    # decimals follow the half-width (2.484 -> 1 decimal); true minus signs
    assert fmt_estimate(2.0, 2 - 2.484, 2 + 2.484) == "2.0 [−0.5, 4.5]"
    assert fmt_estimate(0.02, 0.012, 0.028, signed=True) == "+0.0200 [+0.0120, +0.0280]"
    assert fmt_ci(None, None) == "–"


def test_mean_interval_hand_computed() -> None:
    # mean 2, s = 1, n = 3: half-width = t_{0.975,2} / sqrt(3) = 4.30265 / 1.73205 = 2.48414
    mean, lo, hi = mean_interval([1.0, 2.0, 3.0], 0.95)
    assert mean == 2.0
    assert (lo, hi) == pytest.approx((2 - 2.48414, 2 + 2.48414), abs=1e-5)
    # ten values 1..10: mean 5.5, s = 3.02765, t_{0.975,9} = 2.26216 -> half 2.16585
    mean, lo, hi = mean_interval(list(range(1, 11)), 0.95)
    assert (mean, lo, hi) == pytest.approx((5.5, 5.5 - 2.16585, 5.5 + 2.16585), abs=1e-5)
    _, lo90, hi90 = mean_interval(list(range(1, 11)), 0.9)
    assert lo < lo90 < hi90 < hi  # 90% is narrower than 95%
    assert mean_interval([4.0, 4.0, 4.0], 0.95) == (4.0, 4.0, 4.0)
    assert mean_interval([0.7], 0.95) == (0.7, None, None)
    with pytest.raises(ValueError):
        mean_interval([], 0.95)
