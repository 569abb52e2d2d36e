"""scripts/compare_settings.py: setting A minus setting B with the report's intervals."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "docs" / "results" / "smollm2-135m-cpu-ifeval-quick"  # 3 seeds on the same 80 prompts
_spec = importlib.util.spec_from_file_location("compare_settings", ROOT / "scripts" / "compare_settings.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


@pytest.mark.slow  # loads and re-scores the committed study's answers (~20 s)
@pytest.mark.usefixtures("neftune_cache")  # the SmolLM2 tokenizer infers old answers' truncation
def test_a_minus_b_agrees_with_the_reports_differences_from_the_baseline(capsys):
    from neftune.experiments.answers import load_experiment_answers
    from neftune.experiments.report import load_results
    from neftune.experiments.stats import summarize

    results = load_results(STUDY)
    summary = summarize(results, answers=load_experiment_answers(STUDY, results))
    by_label = {label: s for s, label in summary.labels.items()}
    metric = summary.metric("ifeval/prompt_strict")
    vs_base = {label: metric.cell(by_label[label]).diff for label in ("alpha 5", "alpha 10")}

    # against the baseline: the report's own interval, number for number
    found = script.compare(STUDY, "alpha 10", "alpha 0 (no noise)")["metrics"]["ifeval/prompt_strict"]["all"]
    assert found["diff"] == pytest.approx(vs_base["alpha 10"].mean, abs=1e-12)
    assert (found["lo"], found["hi"]) == pytest.approx(
        (vs_base["alpha 10"].lo, vs_base["alpha 10"].hi), abs=1e-12
    )
    # between two noisy settings on the same prompts: the difference of their differences
    found = script.compare(STUDY, "alpha 10", "alpha 5")
    row = found["metrics"]["ifeval/prompt_strict"]["all"]
    assert found["seeds"] == [0, 1, 2] and row["seeds"] == 3 and row["prompts_per_seed"] == 80
    assert row["diff"] == pytest.approx(vs_base["alpha 10"].mean - vs_base["alpha 5"].mean, abs=1e-12)
    assert row["lo"] < row["diff"] < row["hi"] and row["detectable"] > 0
    assert found["metrics"]["ifeval/prompt_strict"]["untruncated"] is not None
    # a setting against itself: every difference 0, no interval (no verdict)
    same = script.compare(STUDY, "alpha 5", "alpha 5")["metrics"]["ifeval/prompt_strict"]["all"]
    assert same is None


def test_an_unknown_label_names_the_known_ones():
    with pytest.raises(SystemExit, match="no setting labelled 'alpha 7'; the labels are: alpha 0"):
        script.compare(STUDY, "alpha 7", "alpha 5")
