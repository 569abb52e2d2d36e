"""`neftune compare / sweep / report` from the command line: a real tiny run, and every bad input."""

from __future__ import annotations

import json

import pytest
import yaml

from report_consistency import contradictions
from report_render import browser_check

from conftest import cli

pytest.importorskip("trl")
pytestmark = pytest.mark.usefixtures("neftune_cache")
TINY = [
    "--model", "tiny", "--max-steps", "1", "--batch-size", "2", "--max-length", "256",
    "--n-generate", "1", "--max-new-tokens", "2", "--curve-every", "0",
]  # fmt: skip


def _squeezed(text: str) -> str:
    """Output without any whitespace: rich wraps long lines (paths) at the terminal width."""
    return text.replace(" ", "")


def test_sweep_end_to_end_then_report(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", *TINY, "--alphas", "0,5", "--distributions", "uniform", "--schedules", "constant,linear"]
    code, text = cli(*args, "--seeds", "1", "--out", out)
    assert code == 0, text
    assert "3 arms (3 settings x 1 seeds)" in text
    # A tiny random model after one step answers nothing right: no verdict, and the console says why.
    assert "Not informative, no verdict" in text and "accuracy is 0 in every arm" in text, text
    assert "Recommendation:" not in text and "report.html" in _squeezed(text)
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "sweep" and results["status"] == "complete"
    assert results["command"] == f"neftune sweep --config {out / 'config.yaml'} --out {out}"
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["preset"] == "quick" and config["model"] == "tiny" and config["seeds"] == [0]
    assert config["schedules"] == ["constant", "linear"] and config["max_steps"] == 1
    assert {a["setting"]["schedule"] for a in results["arms"]} == {None, "linear"}
    html = (out / "report" / "report.html").read_text()
    assert "linear schedule" in html
    assert '<div class="box warn"><b>Not informative:</b> every generated answer was empty' in html
    # Instead of a verdict: no headline verdicts, no recommendation box (good news or not).
    assert "No verdict and no recommendation" in html
    top = html.split("<summary>The paper's signatures</summary>")[0]
    assert 'class="box headline"' not in top and 'class="pick"' not in html
    md = (out / "report" / "summary.md").read_text()
    assert "> **Not informative:** every generated answer was empty" in md
    assert "## Headline" not in md and "## Recommendation" not in md
    # A degenerate tiny run: no length differences under its banner, nothing else contradicted.
    assert contradictions(out / "report") == []
    browser_check(out / "report" / "report.html", tmp_path)

    # Rebuild from results.json alone.
    (out / "report" / "report.html").unlink()
    code, text = cli("report", out)
    assert code == 0, text
    assert (out / "report" / "report.html").exists()

    # Rerunning the finished experiment recomputes nothing.
    code, text = cli(*args, "--seeds", "1", "--out", out)
    assert code == 0 and "finished a" not in text


def test_compare_scalings_then_length_control_in_the_report(tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", *TINY, "--alphas", "0,5", "--scalings", "per_sequence,batch", "--seeds", "1"]
    code, text = cli(*args, "--out", out)
    assert code == 0, text
    assert "3 arms (3 settings x 1 seeds)" in text
    results = json.loads((out / "results.json").read_text())
    assert results["command"].startswith(f"neftune compare --config {out / 'config.yaml'}")
    from neftune.finetune.configfile import load_config_file

    assert load_config_file(out / "config.yaml")["scalings"] == "per_sequence,batch"  # the rerun keeps them
    batch = [a for a in results["arms"] if a["setting"].get("scaling") == "batch"]
    assert [a["id"] for a in batch] == ["a5-uniform-constant-batch-s0"]
    run = json.loads((out / batch[0]["dir"] / "neftune_run.json").read_text())
    assert run["config"]["scaling"] == "batch" and run["config"]["padding_free"] is True
    assert all("ifeval/prompt_strict/heldout_types" in a["eval"] for a in results["arms"])
    html = (out / "report" / "report.html").read_text()
    assert "alpha 5, batch scaling" in html and "alpha 5, per-sequence scaling" in html
    assert "Length control" in html and "per constraint type" in html
    assert (out / "report" / "answer_lengths.png").exists()
    doc = json.loads((out / "report" / "summary.json").read_text())["instruction_following"]
    compared = {(e["setting"].get("scaling", "per_sequence"), e["metric"]) for e in doc["length_control"]}
    assert {("batch", "ifeval/prompt_strict"), ("per_sequence", "ifeval/prompt_loose")} <= compared
    assert doc["by_constraint_type"] and doc["length_control"]
    assert contradictions(out / "report") == []
    browser_check(out / "report" / "report.html", tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alphas", "0,x"], "alphas must be comma-separated numbers"),
        (["--alphas", "0,-5"], "alphas must be >= 0"),
        (["--alphas", "0,500"], "far outside the useful range"),
        (["--seeds", "-1"], "seeds must be a count"),
        (["--preset", "huge"], "unknown preset"),
        (["--distribution", "laplace"], "unknown distributions"),
        (["--scalings", "per_sequence,padded"], "unknown scalings"),
        (["--max-steps", "0", "--epochs", "0"], "give epochs > 0 or max_steps > 0"),
        (["--batch-size", "0"], "batch_size must be >= 1"),
        (["--curve-every", "-2"], "curve-every must be >= 0"),
        (["--model", "no/such/model"], "unknown model"),
        (["--data", "builtin:huge"], "unknown built-in data preset"),
        (["--data", "missing.jsonl"], "no such file or folder"),
    ],
)
def test_compare_bad_options(tmp_path, args, message):
    code, text = cli("compare", *TINY, "--out", tmp_path / "c", *args)
    assert code == 2, text
    assert message in text


def test_compare_checks_eval_values_before_training(tmp_path):
    code, text = cli("compare", *TINY, "--out", tmp_path / "c", "--n-generate", "-1")
    assert code == 2, text
    assert "n_generate must be >= 0, got -1" in text
    assert not (tmp_path / "c" / "arms").exists(), "refused before the first arm trained"


def test_sweep_bad_schedule(tmp_path):
    code, text = cli("sweep", *TINY, "--schedules", "sawtooth", "--out", tmp_path / "s")
    assert code == 2
    assert "schedule" in text


def test_compare_refuses_a_foreign_folder_and_a_file(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    code, text = cli("compare", *TINY, "--out", folder)
    assert code == 2 and "holds no neftune experiment" in text
    assert (folder / "keep.txt").exists()
    file = tmp_path / "file"
    file.write_text("x")
    code, text = cli("compare", *TINY, "--out", file)
    assert code == 2 and "is a file" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "results.json not found"),
        ("{not json", "not readable JSON"),
        ('{"schema": "other/9", "arms": []}', "schema"),
    ],
)
def test_report_bad_folder(tmp_path, content, message):
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    code, text = cli("report", tmp_path)
    assert code == 2
    assert message in text


def test_analyze_and_viz_commands(tmp_path):
    out = tmp_path / "exp"
    code, text = cli(
        "analyze", "--model", "tiny", "--alphas", "0,5", "--n-sequences", "4", "--out", out / "analyze"
    )
    assert code == 0, text
    assert "flips L2" in text and (out / "analyze" / "analyze.png").exists()
    data = json.loads((out / "analyze" / "analyze.json").read_text())
    assert [row["alpha"] for row in data["metrics"]] == [0.0, 5.0]
    assert data["metrics"][0]["flip_rate_l2"] == 0.0, "no noise, no flip"

    code, text = cli("viz", "--model", "tiny", "--alpha", "5", "--length", "50", "--out", out / "viz")
    assert code == 0, text
    assert "L=50 (given)" in text and (out / "viz" / "viz.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "--alphas", "0,x"], "alphas must be comma-separated numbers"),
        (["analyze", "--alphas", "-1"], "alphas must be >= 0"),
        (["analyze", "--n-sequences", "0"], "n_sequences must be >= 1"),
        (["analyze", "--distribution", "cauchy"], "unknown distribution"),
        (["analyze", "--model", "./missing-folder"], "unknown model"),
        (["viz", "--alpha", "-2"], "alpha must be >= 0"),
        (["viz", "--length", "0"], "length must be >= 1"),
        (["viz", "--distribution", "cauchy"], "unknown distribution"),
    ],
)
def test_analyze_viz_bad_options(tmp_path, args, message):
    code, text = cli(*args, "--out", tmp_path / "o")
    assert code == 2, text
    assert message in text
