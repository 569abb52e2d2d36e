"""The length-controlled comparison on synthetic data with a known answer."""

from __future__ import annotations

import math
import random
import re

import pytest

from neftune.experiments.instruction_report import InstructionSection, verdict_sentences
from neftune.experiments.length_control import adjusted_differences, arm_rows, length_control
from neftune.experiments.setting import Setting

BASE, NOISY = Setting(0.0), Setting(5.0)
N_PROMPTS, SEEDS = 200, range(5)


def _arms(gain: float, *, binary: bool, seed: int = 0):
    """Arms whose score depends on answer length (slope 1/1000 per character) plus ``gain``.

    Noisy answers are longer by a per-prompt amount (mean 200 characters), so a pure-length
    effect (``gain`` 0) raises the raw score by about 0.2 and nothing at equal length.
    """
    rng = random.Random(seed)
    arms = []
    for s in SEEDS:
        seed_effect = rng.gauss(0, 0.02)
        base_rows, noisy_rows = {}, {}
        for i in range(N_PROMPTS):
            length = rng.uniform(100, 500)
            longer = length + max(0.0, rng.gauss(200, 80))
            for rows, n, extra in ((base_rows, length, 0.0), (noisy_rows, longer, gain + seed_effect)):
                p = n / 1000 + extra
                score = float(rng.random() < p) if binary else p + rng.gauss(0, 0.05)
                rows[("x", i)] = (score, n)
        arms += [(BASE, s, {"m": base_rows}), (NOISY, s, {"m": noisy_rows})]
    return arms


def _only(arms):
    (lc,) = length_control([(st, s, {"accuracy/x": r["m"]}) for st, s, r in arms], BASE)
    return lc


@pytest.mark.parametrize("binary", [False, True], ids=["continuous", "binary"])
def test_a_pure_length_gain_is_no_gain_after_control(binary):
    lc = _only(_arms(0.0, binary=binary))
    assert lc.raw_verdict == "better" and lc.raw.mean == pytest.approx(0.2, abs=0.05)
    assert lc.adjusted_verdict == "no detectable difference", lc.adjusted
    assert lc.adjusted.lo < 0 < lc.adjusted.hi
    assert lc.survives is False
    assert lc.slope_per_100_chars == pytest.approx(0.1, abs=0.03)  # 1/1000 per character
    assert lc.length_difference == pytest.approx(200, abs=10)


@pytest.mark.parametrize("binary", [False, True], ids=["continuous", "binary"])
def test_a_real_gain_survives_control(binary):
    lc = _only(_arms(0.15, binary=binary))
    assert lc.raw.mean == pytest.approx(0.35, abs=0.05)
    assert lc.adjusted_verdict == "better" and lc.survives is True
    assert lc.adjusted.lo < 0.15 < lc.adjusted.hi


def test_adjusted_differences_exact():
    # d = a_s + 0.5 x exactly, with a_0 = 2 and a_1 = 4.
    pairs = {0: [(2 + 0.5 * x, x) for x in (0, 10, 20)], 1: [(4 + 0.5 * x, x) for x in (5, 15)]}
    raw, adjusted, slope = adjusted_differences(pairs)
    assert slope == pytest.approx(0.5)
    assert adjusted == pytest.approx({0: 2.0, 1: 4.0})
    assert raw == pytest.approx({0: 7.0, 1: 9.0})
    raw, adjusted, slope = adjusted_differences({0: [(1.0, 3.0), (0.0, 3.0)]})  # length never varies
    assert slope is None and math.isnan(adjusted[0]) and raw[0] == 0.5


def test_arm_rows_from_per_prompt_file():
    data = {
        "splits": {
            "eval_seen_templates": [{"length_chars": 3, "correct": True}],
            "ifeval_seen_types": [
                {"length_chars": 40, "kinds": ["a", "b"], "strict": [True, False], "loose": [True, True]}
            ],
        }
    }
    rows = arm_rows(data)
    assert rows["accuracy/eval_seen_templates"] == {("eval_seen_templates", 0): (1.0, 3.0)}
    assert rows["ifeval/prompt_strict"] == {("ifeval_seen_types", 0): (0.0, 40.0)}
    assert rows["ifeval/prompt_loose/seen_types"] == {("ifeval_seen_types", 0): (1.0, 40.0)}
    assert list(rows["ifeval/instruction_strict"].values()) == [(1.0, 40.0), (0.0, 40.0)]


def test_only_shared_prompts_and_seeds_are_paired():
    base = {"accuracy/x": {("x", 0): (0.0, 10.0), ("x", 1): (1.0, 10.0)}}
    noisy = {"accuracy/x": {("x", 0): (1.0, 30.0), ("x", 2): (1.0, 10.0)}}
    (lc,) = length_control([(BASE, 0, base), (NOISY, 0, noisy), (NOISY, 1, noisy)], BASE)
    assert lc.raw.seeds == (0,) and lc.raw.mean == 1.0 and lc.raw_verdict == "n/a (1 seed)"


def test_verdict_in_plain_words():
    labels = {BASE: "alpha 0 (no noise)", NOISY: "alpha 5"}

    def sentence(gain):
        arms = [(st, s, {"ifeval/prompt_strict": r["m"]}) for st, s, r in _arms(gain, binary=False)]
        section = InstructionSection(tuple(length_control(arms, BASE)), {"ifeval": {}}, {})
        (text,) = verdict_sentences(section, labels)
        return text

    pure_length = sentence(0.0)
    assert re.match(r"alpha 5: answers (19\d|20\d) characters longer than the baseline's", pure_length)
    assert "does not survive it on prompts with every instruction followed (strict)" in pure_length
    assert "survives length control on" in sentence(0.15)
    flat = [
        (st, s, {"ifeval/prompt_strict": {k: (0.5, 100.0) for k in r["m"]}})
        for st, s, r in _arms(0.0, binary=False)
    ]
    (text,) = verdict_sentences(
        InstructionSection(tuple(length_control(flat, BASE)), {"ifeval": {}}, {}), labels
    )
    assert "no quality metric improved beyond seed noise" in text and "0 characters longer" in text


def test_report_section_from_arm_folders(tmp_path):
    """A folder whose arms hold synthetic per_prompt.json files (a pure-length effect): the report
    shows the answer lengths, the raw and length-adjusted table, the verdict and per-type accuracy."""
    import json

    from PIL import Image

    from neftune.experiments.report import build_report
    from report_render import is_blank

    arms = []
    for setting, seed, rows in _arms(0.0, binary=True):
        arm_id = f"a{setting.alpha:g}-s{seed}"
        splits = {
            "ifeval_seen_types": [
                {"length_chars": n, "kinds": ["no_commas"], "strict": [v == 1.0], "loose": [v == 1.0]}
                for v, n in rows["m"].values()
            ]
        }
        eval_dir = tmp_path / "arms" / arm_id / "eval"
        eval_dir.mkdir(parents=True)
        (eval_dir / "per_prompt.json").write_text(json.dumps({"splits": splits}))
        score = sum(v for v, _ in rows["m"].values()) / len(rows["m"])
        arms.append(
            {"id": arm_id, "setting": setting.to_dict(), "seed": seed, "status": "complete",
             "dir": f"arms/{arm_id}", "eval": {"ifeval/prompt_strict": score}, "train": {}}
        )  # fmt: skip
    results = {
        "schema": "neftune.results/1", "kind": "compare", "status": "complete", "arms": arms,
        "baseline": BASE.to_dict(), "config": {"primary_metric": "ifeval/prompt_strict"},
    }  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(results))
    paths = build_report(tmp_path)
    html = paths["html"].read_text()
    assert "<h2>Length control</h2>" in html and "length-adjusted diff" in html
    assert "does not survive it on prompts with every instruction followed (strict)" in html
    assert "<td>no_commas</td><td>seen</td>" in html
    assert not is_blank(Image.open(paths["answer_lengths"]))
    doc = json.loads(paths["summary"].read_text())
    (overall,) = [
        e for e in doc["instruction_following"]["length_control"] if e["metric"] == "ifeval/prompt_strict"
    ]
    assert overall["raw_verdict"] == "better" and overall["adjusted_verdict"] == "no detectable difference"
    assert "## Length control" in paths["markdown"].read_text()
