"""The experiment report built from a stored results.json fixture, and rendered in headless Chromium."""

from __future__ import annotations

import copy
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import report_render as render_check  # tests/report_render.py: blank test and Chromium call
from neftune.experiments.plots import setting_colors
from neftune.experiments.report import ReportError, build_report, load_results
from neftune.experiments.stats import summarize
from report_consistency import contradictions
from report_render import browser_check

FIXTURE = Path(__file__).parent / "data" / "results_compare_fixture.json"

is_blank = render_check.is_blank


def write_results(folder: Path, results: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def fixture_results() -> dict:
    results = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert results["note"].startswith("TEST FIXTURE, NOT A RESULT")
    return results


@pytest.fixture(scope="module")
def built(tmp_path_factory, fixture_results):
    """The full fixture, plus an analyze figure to exercise the optional section."""
    folder = write_results(tmp_path_factory.mktemp("exp") / "cmp", fixture_results)
    (folder / "analyze").mkdir()
    gradient = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (32, 1))
    Image.fromarray(gradient).save(folder / "analyze" / "analyze.png")
    paths = build_report(folder)
    html = paths["html"].read_text(encoding="utf-8")
    return folder, paths, html


# --------------------------------------------------------------------------- files and content


def test_report_writes_every_file(built) -> None:
    folder, paths, _ = built
    report = folder / "report"
    assert paths["html"] == report / "report.html"
    assert paths["markdown"] == report / "summary.md"
    assert paths["summary"] == report / "summary.json"
    for name in ("forest", "learning_curves", "metric_means", "differences"):
        assert paths[name] == report / f"{name}.png" and paths[name].stat().st_size > 0
    assert "heldout_curves" not in paths  # every curve is drawn once, in learning_curves
    assert not list(report.glob(".*.tmp"))  # no leftovers of the atomic writes


def test_summary_json_holds_the_statistics(built, fixture_results) -> None:
    _, paths, _ = built

    def no_nan(token: str):
        raise AssertionError(f"summary.json contains {token}")

    doc = json.loads(paths["summary"].read_text(encoding="utf-8"), parse_constant=no_nan)
    assert doc["schema"] == "neftune.summary/1"
    names = {m["name"] for m in doc["metrics"]}
    assert set(fixture_results["arms"][0]["eval"]) <= names
    acc = next(m for m in doc["metrics"] if m["name"] == "accuracy/eval_heldout_templates")
    base = next(c for c in acc["cells"] if c["is_baseline"])
    base_arms = sorted(
        (a for a in fixture_results["arms"] if a["setting"]["alpha"] == 0), key=lambda a: a["seed"]
    )
    values = [a["eval"]["accuracy/eval_heldout_templates"] for a in base_arms]
    assert base["seeds"] == [0, 1, 2] and base["values"] == values
    assert base["mean"] == pytest.approx(sum(values) / 3)
    assert doc["recommendation"]["metric"] == "accuracy/eval_heldout_templates"
    assert doc["comparisons"]["total"] == 3 * len(names)


def test_html_has_headline_tables_verdicts_and_no_external_resources(built, fixture_results) -> None:
    _, paths, html = built
    doc = json.loads(paths["summary"].read_text(encoding="utf-8"))
    for sentence in doc["headline"]:
        assert sentence.replace("'", "&#x27;") in html
    assert "NEFTune did not measurably change accuracy on held-out templates at any alpha" in html
    # The page opens with the verdict, then the forest plot of the primary metric, then the table.
    verdict = html.index('<p class="verdict">')
    assert (
        verdict
        < html.index("The primary metric, each setting minus training without noise")
        < html.index('<table class="glance">')
    )
    assert doc["verdict"].replace("'", "&#x27;") in html and "could detect ±" in doc["verdict"]
    # one table per metric, with the verdicts, behind a collapsible section
    for m in doc["metrics"]:
        assert f"<code>{m['name']}</code>" in html
    assert html.count('<div class="metric">') == len(doc["metrics"])
    assert "<details><summary>Every metric: means, differences, intervals, p-values</summary>" in html
    for verdict in ("better", "worse", "higher", "lower", "no detectable difference", "baseline"):
        assert f">{verdict}</span>" in html, verdict
    # what was run, signatures, reproduction, multiple comparisons
    assert fixture_results["command"] in html
    assert "The paper's signatures" in html and "longer answers" in html
    assert "How to reproduce" in html and "neftune report runs/cmp" in html
    assert "would look distinguishable by chance" in html
    assert "47.5 min over 12 arms" in html
    # self-contained: no scripts, no external URLs, every image inline
    assert "<script" not in html.lower()
    assert "http://" not in html and "https://" not in html
    assert re.findall(r'<img src="(?!data:image/png;base64,)', html) == []


def test_every_embedded_png_decodes_and_is_not_blank(built) -> None:
    _, paths, html = built
    pngs = render_check.embedded_pngs(html)
    figure_names = [k for k in paths if k not in ("html", "markdown", "summary")]
    assert len(pngs) == len(figure_names) + 1  # + the analyze figure
    for png in pngs:
        img = Image.open(io.BytesIO(png))
        img.load()
        assert img.format == "PNG"
        assert not is_blank(img), img.size
    # the PNG files are the embedded ones
    embedded = set(pngs)
    for name in figure_names:
        assert paths[name].read_bytes() in embedded


def test_blank_image_fails_the_blank_check() -> None:
    white = Image.new("RGB", (400, 300), "white")
    assert is_blank(white)
    assert render_check.grey_std(white) == 0.0  # strictly below the lone frame's sd, which is > 0


def test_markdown_summary(built) -> None:
    _, paths, _ = built
    md = paths["markdown"].read_text(encoding="utf-8")
    assert md.startswith("# NEFTune compare: smollm2-135m on builtin:quick")
    assert "| setting | seeds | mean [95% CI] | diff vs baseline [95% CI] | detectable | p | verdict |" in md
    assert md.index("**NEFTune did not measurably change") < md.index("![The primary metric")
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (paths["markdown"].parent / link).resolve().is_file(), link
    assert "../analyze/analyze.png" in md
    # The fixture ran on torch 2.13.0+cpu: the pip line pins the release, not the local build tag,
    # which pip cannot install from PyPI.
    pip_line = next(line for line in md.splitlines() if line.startswith("pip install"))
    assert "torch==2.13.0 " in pip_line + " " and "+cpu" not in pip_line


def test_partial_results_with_failed_and_pending_arms(tmp_path, fixture_results) -> None:
    results = copy.deepcopy(fixture_results)
    results["status"] = "running"
    keep = ("loss/train", "loss/eval_heldout_templates")  # losses only, as with n_generate 0
    for arm in results["arms"]:
        arm["eval"] = {k: arm["eval"][k] for k in keep}
        arm["curves"]["eval"] = [{k: p[k] for k in ("step", *keep)} for p in arm["curves"]["eval"]]
    failed, pending = results["arms"][10], results["arms"][11]
    failed.update(status="failed", error="CUDA out of memory <b>&</b>", eval={}, curves={})
    pending.update(status="pending", eval={}, curves={}, seconds=None, train={})
    paths = build_report(write_results(tmp_path / "partial", results))
    html = paths["html"].read_text(encoding="utf-8")
    assert "Partial results (status &#x27;running&#x27;): 10 of 12 arms finished, 1 failed, 1 pending" in html
    assert (
        failed["id"] in html
        and "CUDA out of memory &lt;b&gt;&amp;&lt;/b&gt;" in html
        and pending["id"] in html
    )
    assert "CUDA out of memory <b>&</b>" in paths["markdown"].read_text(encoding="utf-8")  # Markdown: as is
    assert "heldout_curves" not in paths  # one held-out split only
    doc = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert doc["status"] == "running" and doc["arms"] == {
        "total": 12,
        "complete": 10,
        "failed": 1,
        "pending": 1,
    }
    # no accuracy was measured: the primary metric is absent and the report says so
    assert "No finished arm reported accuracy on held-out templates" in doc["recommendation"]["reason"]
    assert '<div class="box warn"><p class="pick">No setting recommended' in html, "not dressed as good news"
    assert contradictions(paths["html"].parent) == []
    browser_check(paths["html"], tmp_path)


def test_sweep_on_user_data(tmp_path, fixture_results) -> None:
    """A sweep (alpha x distribution) on user data: one held-out split ``eval``, no accuracy."""
    results = copy.deepcopy(fixture_results)
    results["kind"] = "sweep"
    results["config"]["primary_metric"] = "loss/eval"
    arms = []
    for arm in results["arms"]:
        arm["eval"] = {
            "loss/train": arm["eval"]["loss/train"],
            "loss/eval": arm["eval"]["loss/eval_heldout_templates"],
        }
        arm["curves"]["eval"] = [
            {"step": p["step"], "loss/train": p["loss/train"], "loss/eval": p["loss/eval_heldout_templates"]}
            for p in arm["curves"]["eval"]
        ]
        arms.append(arm)
        if arm["setting"]["alpha"] == 10.0:  # a gaussian twin, 0.05 lower held-out loss on every seed
            twin = copy.deepcopy(arm)
            twin["id"] += "-gaussian"
            twin["setting"]["distribution"] = "gaussian"
            twin["eval"]["loss/eval"] -= 0.05
            arms.append(twin)
    results["arms"] = arms
    paths = build_report(write_results(tmp_path / "sweep", results))
    html = paths["html"].read_text(encoding="utf-8")
    assert "learning_curves" in paths and "heldout_curves" not in paths  # one held-out split
    doc = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert {m["name"] for m in doc["metrics"]} == {"loss/eval", "loss/train", "train/train_loss"}
    held = next(m for m in doc["metrics"] if m["name"] == "loss/eval")
    verdicts = {(c["setting"]["alpha"], c["setting"]["distribution"]): c["verdict"] for c in held["cells"]}
    # the twin's paired difference is alpha 10's minus 0.05 on every seed: its interval moves below 0
    assert verdicts == {
        (0.0, "uniform"): "baseline",
        (5.0, "uniform"): "no detectable difference",
        (10.0, "uniform"): "no detectable difference",
        (10.0, "gaussian"): "better",
        (15.0, "uniform"): "no detectable difference",
    }
    rec = doc["recommendation"]
    assert rec["recommended"] == {"alpha": 10.0, "distribution": "gaussian", "schedule": None}
    assert "Recommended: alpha 10, gaussian" in html
    assert contradictions(paths["html"].parent) == []
    browser_check(paths["html"], tmp_path)


def test_report_errors(tmp_path, fixture_results) -> None:
    with pytest.raises(ReportError, match="results.json not found"):
        build_report(tmp_path / "nothing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ReportError, match="not readable JSON"):
        load_results(bad)
    wrong = write_results(tmp_path / "wrong", {**fixture_results, "schema": "other/9"})
    with pytest.raises(ReportError, match="schema 'other/9'"):
        build_report(wrong)
    broken = copy.deepcopy(fixture_results)
    broken["arms"][0]["setting"] = {"alpha": "five"}
    with pytest.raises(ReportError, match="alpha"):
        build_report(write_results(tmp_path / "broken", broken))
    assert issubclass(ReportError, ValueError)


# --------------------------------------------------------------------------- real browser


def _chromium() -> str | None:
    found = render_check.find_chromium()
    if found is None:
        if os.environ.get("NEFTUNE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium not found but NEFTUNE_REQUIRE_BROWSER=1 (apt-get install chromium)")
        pytest.skip("chromium not installed (set NEFTUNE_REQUIRE_BROWSER=1 to make this a failure)")
    return found


def test_report_renders_in_headless_chromium(built, tmp_path, fixture_results) -> None:
    chromium = _chromium()
    _, paths, _ = built
    browser_check(paths["html"], tmp_path)  # every section open: nothing wider than the page
    shot = tmp_path / "shot.png"
    # With the collapsible sections open, as a reader who opens them sees the page.
    proc = render_check.open_screenshot(paths["html"], shot, chromium=chromium, width=1280, height=4000)
    assert shot.is_file(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    img = Image.open(shot).convert("RGB")
    w, h = img.size
    assert (w, h) == (1280, 4000)
    assert not is_blank(img)
    # The plots are on screen: each noisy setting's colour occurs only inside the figures (the page's
    # CSS uses none of them). The first figure alone draws each setting's mean line (~3 px wide) across
    # four panels some 400 px wide, i.e. well over a thousand pixels; 100 is a conservative floor.
    # Tolerance 24 levels per channel (~10% of the range) absorbs anti-aliasing and resampling; the
    # closest two palette colours differ by far more (>= 86 levels in some channel).
    pixels = np.asarray(img, dtype=np.int16)
    colors = setting_colors(i.setting for i in summarize(fixture_results).settings)
    for setting, hex_color in colors.items():
        if setting.is_no_noise:
            continue  # dark grey, close to the text colour
        rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
        hits = int((np.abs(pixels - rgb).max(axis=2) <= 24).sum())
        assert hits >= 100, f"{setting}: colour {hex_color} found on {hits} pixels only"


# --------------------------------------------------------------------------- no contradictions

RESULTS_DIR = Path(__file__).resolve().parents[1] / "docs" / "results"
COMMITTED = sorted(p.parent.name for p in RESULTS_DIR.glob("*/results.json"))


@pytest.mark.slow  # rebuilds each committed study's report (its answers re-scored), ~10-40 s each
@pytest.mark.usefixtures("neftune_cache")  # the SmolLM2 tokenizer infers old answers' truncation
@pytest.mark.parametrize("study", COMMITTED)
def test_committed_studies_rebuilt_have_no_contradictions(study, tmp_path):
    import shutil

    folder = tmp_path / study
    shutil.copytree(RESULTS_DIR / study, folder, ignore=shutil.ignore_patterns("report"))
    paths = build_report(folder)
    assert contradictions(paths["html"].parent) == []
    doc = json.loads(paths["summary"].read_text(encoding="utf-8"))
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    complete_seeds = {a["seed"] for a in results["arms"] if a["status"] == "complete"}
    if len(complete_seeds) >= 2:
        assert "could detect ±" in doc["verdict"]
    else:  # a pilot of one seed: no interval, so no verdict and no detectable effect either
        assert "fewer than 2 seeds" in doc["verdict"] and "could detect" not in doc["verdict"]
    if "instruction_following" in doc:
        # Truncation at the cap the experiment recorded (96 before the cap was recorded; those
        # studies predate the truncation flag, so it is inferred from the answers' token counts),
        # and the length signature is measured on the instruction answers, like the length sentences.
        cap = results["config"].get("eval", {}).get("ifeval_max_new_tokens", 96)
        truncation = doc["instruction_following"]["truncation"]["ifeval"]
        assert all(t["cap"] == cap and t["cut"] > 0 for t in truncation)
        sig = next(s for s in doc["signatures"] if s["name"] == "longer answers")
        assert sig["metric"] == "length_chars/ifeval"
    browser_check(paths["html"], tmp_path)


def _degenerate_run(folder: Path) -> Path:
    """What a tiny random model leaves after a few steps: every answer empty, nothing right."""
    arms = []
    for alpha in (0.0, 5.0):
        for seed in (0, 1):
            arm_id = f"a{alpha:g}-s{seed}"
            eval_dir = folder / "arms" / arm_id / "eval"
            eval_dir.mkdir(parents=True)
            splits = {
                "eval_heldout_templates": [{"length_chars": 0, "correct": False, "truncated": False}] * 3,
                "ifeval_seen_types": [
                    {"length_chars": 0, "kinds": ["no_commas", "postscript"], "strict": [False, False],
                     "loose": [False, False], "truncated": False}
                ] * 3,
            }  # fmt: skip
            (eval_dir / "per_prompt.json").write_text(json.dumps({"splits": splits}))
            arms.append(
                {"id": arm_id, "setting": {"alpha": alpha, "distribution": "uniform", "schedule": None},
                 "seed": seed, "status": "complete", "dir": f"arms/{arm_id}", "seconds": 30.0,
                 "train": {"train_loss": 10.8 + alpha / 100 + seed / 50},
                 "eval": {"accuracy/eval_heldout_templates": 0.0, "ifeval/prompt_strict": 0.0,
                          "length_chars": 0.0, "length_chars/ifeval": 0.0, "loss/train": 10.7 + seed / 40}}
            )  # fmt: skip
    results = {
        "schema": "neftune.results/1", "kind": "compare", "status": "complete", "arms": arms,
        "baseline": {"alpha": 0.0, "distribution": "uniform", "schedule": None},
        "config": {"model": "tiny", "data": "builtin:quick", "primary_metric": "ifeval/prompt_strict"},
    }  # fmt: skip
    return write_results(folder, results)


def test_a_degenerate_run_lists_no_length_differences_under_its_banner(tmp_path):
    paths = build_report(_degenerate_run(tmp_path / "tiny"))
    html = paths["html"].read_text(encoding="utf-8")
    assert "<b>Not informative:</b> every generated answer was empty" in html
    assert "characters longer" not in html and "characters shorter" not in html
    assert "Not shown: the experiment is not informative" in html
    assert contradictions(paths["html"].parent) == []
    # Every paired difference of an empty answer is zero: no verdict from a zero-width interval.
    doc = json.loads(paths["summary"].read_text(encoding="utf-8"))
    primary = next(m for m in doc["metrics"] if m["name"] == "ifeval/prompt_strict")
    assert {c["verdict"] for c in primary["cells"] if not c["is_baseline"]} == {"n/a (no variation)"}
    browser_check(paths["html"], tmp_path)


def test_the_contradiction_check_finds_contradictions(built, tmp_path):
    import shutil

    _, paths, _ = built
    report = tmp_path / "report"
    shutil.copytree(paths["html"].parent, report)
    doc = json.loads((report / "summary.json").read_text(encoding="utf-8"))
    sig = next(s for s in doc["signatures"] if s["name"] == "higher training loss with noise off")
    assert sig["status"] == "seen"
    sig["status"] = "not seen"  # while the data show it
    doc["headline"].append("No detectable difference in everything else.")  # without its detectable effect
    (report / "summary.json").write_text(json.dumps(doc), encoding="utf-8")
    found = contradictions(report)
    assert any("'not seen' but the data show it" in f for f in found)
    assert any("null result without its detectable effect" in f for f in found)
    html = (report / "report.html").read_text(encoding="utf-8")
    html = html.replace(
        "<main>", "<main><div><b>Not informative:</b> x</div><p>alpha 5: answers 3 characters longer</p>"
    )
    (report / "report.html").write_text(html, encoding="utf-8")
    assert any("not informative" in f for f in contradictions(report))
