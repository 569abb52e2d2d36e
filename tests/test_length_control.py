"""The length-controlled comparison on synthetic data with a known answer."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from neftune.experiments.answers import ArmAnswers, Row
from neftune.experiments.instruction_report import instruction_section, verdict_sentences
from neftune.experiments.intervals import grouped_interval
from neftune.experiments.length_control import length_control
from neftune.experiments.setting import Setting
from neftune.experiments.stats import summarize

BASE, NOISY = Setting(0.0), Setting(5.0)
N_PROMPTS, SEEDS = 200, range(5)


def _rows(gain: float, seed: int = 0) -> dict[tuple[Setting, int], list[Row]]:
    """Task answers checked right with probability length/1000 (+ ``gain`` for the noisy arm).

    Noisy answers are longer by a per-prompt amount (mean 200 characters), so a pure-length
    effect (``gain`` 0) raises the raw score by about 0.2 and nothing at equal length. Each seed
    draws its own prompts.
    """
    rng = random.Random(seed)
    out = {}
    for s in SEEDS:
        seed_effect = rng.gauss(0, 0.02)
        base, noisy = [], []
        for i in range(N_PROMPTS):
            length = rng.uniform(100, 500)
            longer = length + max(0.0, rng.gauss(200, 80))
            prompt = f"seed {s} prompt {i}"
            for rows, n, extra in ((base, length, 0.0), (noisy, longer, gain + seed_effect)):
                correct = rng.random() < n / 1000 + extra
                rows.append(Row("x", i, int(n), False, prompt=prompt, correct=correct))
        out[(BASE, s)], out[(NOISY, s)] = base, noisy
    return out


def _summary(rows: dict[tuple[Setting, int], list[Row]], metric: str = "accuracy/x"):
    answers = {k: ArmAnswers(tuple(v)) for k, v in rows.items()}
    arms = [
        {"id": f"a{st.alpha:g}-s{s}", "setting": st.to_dict(), "seed": s, "status": "complete", "eval": {}}
        for st, s in rows
    ]
    results = {"arms": arms, "baseline": BASE.to_dict(), "config": {"primary_metric": metric}}
    return summarize(results, answers=answers)


def _only(rows):
    (lc,) = length_control(_summary(rows))
    return lc


def test_a_pure_length_gain_is_no_gain_at_equal_length():
    lc = _only(_rows(0.0))
    assert lc.raw_verdict == "better" and lc.raw.mean == pytest.approx(0.2, abs=0.05)
    assert lc.adjusted_verdict == "no detectable difference", lc.adjusted
    assert lc.adjusted.lo < 0 < lc.adjusted.hi
    assert lc.survives is False
    assert lc.slope_per_100_chars == pytest.approx(0.1, abs=0.03)  # 1/1000 per character
    assert lc.length_difference == pytest.approx(200, abs=10)
    assert lc.raw.covers == lc.adjusted.covers == "seeds and prompts"


def test_a_real_gain_remains_at_equal_length():
    # With 5 seeds x 200 prompts the length-adjusted difference has a standard error of about
    # 0.06 (most of it the slope's: 200 characters x its error), so the gain must be large.
    lc = _only(_rows(0.3))
    assert lc.raw.mean == pytest.approx(0.5, abs=0.05)
    assert lc.adjusted_verdict == "better" and lc.survives is True
    assert lc.adjusted.lo < 0.3 < lc.adjusted.hi
    # The slope's own uncertainty widens the adjusted interval beyond the raw one's.
    assert lc.adjusted.se > lc.raw.se


def test_adjusted_estimate_exact():
    # d = a_s + 0.5 x exactly, with a_0 = 2 and a_1 = 4: the pooled within-seed slope is 0.5 and
    # the estimate at equal length is the mean intercept, 3.
    groups = {
        0: ([0, 1, 2], np.array([2 + 0.5 * x for x in (0, 10, 20)]), np.ones(3), np.array([0.0, 10, 20])),
        1: ([3, 4], np.array([4 + 0.5 * x for x in (5, 15)]), np.ones(2), np.array([5.0, 15])),
    }
    iv = grouped_interval(groups, 0.95, crossed=False, adjust_length=True)
    assert iv.estimate == pytest.approx(3.0)
    raw = grouped_interval(groups, 0.95, crossed=False)
    assert raw.estimate == pytest.approx((7.0 + 9.0) / 2)


def test_only_shared_prompts_and_seeds_are_paired():
    rows = {
        (BASE, 0): [Row("x", 0, 10, False, "p0", correct=False), Row("x", 1, 10, False, "p1", correct=True)],
        (NOISY, 0): [Row("x", 0, 30, False, "p0", correct=True), Row("x", 2, 10, False, "p2", correct=True)],
        (NOISY, 1): [Row("x", 0, 30, False, "p0", correct=True)],
    }
    (lc,) = length_control(_summary(rows))
    assert lc.raw.seeds == (0,) and lc.raw.mean == 1.0 and lc.raw_verdict == "n/a (1 seed)"


def _as_instruction_rows(rows):
    """The same rows as instruction answers: one no-comma constraint, followed or not."""
    return {
        k: [Row("ifeval_seen_types", r.index, r.length, False, r.prompt, kinds=("no_commas",),
                strict=(bool(r.correct),), loose=(bool(r.correct),)) for r in v]
        for k, v in rows.items()
    }  # fmt: skip


def test_verdict_in_plain_words():
    def sentence(gain: float) -> str:
        rows = _as_instruction_rows(_rows(gain))
        summary = _summary(rows, "ifeval/prompt_strict")
        (text,) = verdict_sentences(instruction_section(summary), summary)
        return text

    pure_length = sentence(0.0)
    # The length is the length metric's own paired difference, with its interval.
    assert re.match(
        r"alpha 5: answers to instruction prompts (19\d|20\d) characters longer than the baseline's "
        r"\(95% CI \+\d+ to \+\d+, beyond noise\)",
        pure_length,
    ), pure_length
    assert (
        "prompts with every instruction followed (strict) (better) is within noise at equal answer length, "
        "so it goes with the length" in pure_length
    )
    assert "remains better at equal answer length" in sentence(0.3)


def test_one_seed_gives_no_quality_claim_in_words():
    """With one paired seed there is no interval, so the sentence must not say "no quality metric
    moved beyond noise" (a claim about noise it cannot make)."""
    rows = _as_instruction_rows({k: v for k, v in _rows(0.3).items() if k[1] == 0})
    summary = _summary(rows, "ifeval/prompt_strict")
    (text,) = verdict_sentences(instruction_section(summary), summary)
    assert "no verdict on quality" in text and "fewer than 2 seeds" in text, text
    assert "beyond noise" not in text and "within noise" not in text, text


def test_report_section_from_arm_folders(tmp_path):
    """A folder whose arms hold synthetic per_prompt.json files (a pure-length effect): the report
    shows the answer lengths, the raw and length-adjusted table, the verdict and per-type accuracy."""
    from PIL import Image

    from neftune.experiments.report import build_report
    from report_render import is_blank

    arms = []
    for (setting, seed), rows in _rows(0.0).items():
        arm_id = f"a{setting.alpha:g}-s{seed}"
        splits = {
            "ifeval_seen_types": [
                {
                    "length_chars": r.length,
                    "kinds": ["no_commas"],
                    "strict": [r.correct],
                    "loose": [r.correct],
                }
                for r in rows
            ]
        }
        eval_dir = tmp_path / "arms" / arm_id / "eval"
        eval_dir.mkdir(parents=True)
        (eval_dir / "per_prompt.json").write_text(json.dumps({"splits": splits}))
        score = sum(r.correct for r in rows) / len(rows)
        arms.append(
            {"id": arm_id, "setting": setting.to_dict(), "seed": seed, "status": "complete",
             "dir": f"arms/{arm_id}", "eval": {"ifeval/prompt_strict": score}, "train": {"train_loss": 1.0}}
        )  # fmt: skip
    results = {
        "schema": "neftune.results/1", "kind": "compare", "status": "complete", "arms": arms,
        "baseline": BASE.to_dict(), "config": {"primary_metric": "ifeval/prompt_strict"},
    }  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(results))
    paths = build_report(tmp_path)
    html = paths["html"].read_text()
    assert "Length control: quality at equal answer length" in html and "at equal length [95% CI]" in html
    assert "is within noise at equal answer length, so it goes with the length" in html
    assert "<td>no_commas</td><td>seen</td>" in html
    assert not is_blank(Image.open(paths["answer_lengths"]))
    doc = json.loads(paths["summary"].read_text())
    (overall,) = [
        e for e in doc["instruction_following"]["length_control"] if e["metric"] == "ifeval/prompt_strict"
    ]
    assert overall["raw_verdict"] == "better" and overall["adjusted_verdict"] == "no detectable difference"
    assert "## Length control" in paths["markdown"].read_text()
