"""benchmarks/gpu_compare.py, the GPU comparison (issue 26): its sizing, its plan for the H200, and a
dry run of the whole thing on the CPU with the tiny model (stopped, then resumed from its state)."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def cmp(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("gpu_compare", None)
    return importlib.import_module("gpu_compare")


#: The standard preset as the probe reads it (4 generation splits of tasks and training prompts
#: at 64 new tokens, 2 instruction splits at the instruction cap, batches of 256).
INFO = {"gen_splits": 4, "ifeval_splits": 2, "gen_batch": 256, "max_new_tokens": 64,
        "ifeval_max_new_tokens": 320, "eval_records": 400}  # fmt: skip


def test_instruction_answers_are_sized_at_their_own_cap(cmp):
    cost = {"once_s": 0.0, "arm_s": 10.0, "step_s": 0.1, "gen_batch_token_s": 0.02}
    pred = cmp.predicted_seconds(15, 100, 200, INFO, cost)
    # per arm: 10 + 100 x 0.1 + (4 x 1 x 64 + 2 x 1 x 320) x 0.02 = 20 + 17.92 s
    assert pred["decode_steps_per_arm"] == 4 * 64 + 2 * 320
    assert pred["per_arm_s"] == pytest.approx(37.92) and pred["total_s"] == pytest.approx(15 * 37.92)


def test_seeds_are_the_most_that_fit(cmp):
    cost = {"once_s": 0.0, "arm_s": 12.0, "step_s": 0.1, "gen_batch_token_s": 0.02}
    # 5 settings. A large budget takes 5 seeds; less, fewer; never below 3.
    big = cmp.plan_grid(5, INFO, 5000.0, cost)
    assert big["seeds"] == 5 and big["arms"] == 25 and big["total_s"] <= cmp.SAFETY * 5000
    mid = cmp.plan_grid(5, INFO, 1000.0, cost)
    assert mid["seeds"] in (3, 4) and mid["max_steps"] >= cmp.MIN_STEPS
    assert mid["total_s"] <= cmp.SAFETY * 1000
    tight = cmp.plan_grid(5, INFO, 100.0, cost)
    assert tight["seeds"] == 3 and tight["arms"] == 15  # at least 3, whatever the budget
    assert cmp.plan_grid(5, INFO, 5000.0, cost, seeds=3)["seeds"] == 3  # a resumed experiment keeps its seeds


def test_the_h200_plan_from_its_measured_costs(cmp):
    """The planned GPU run with the prior costs (the calibration replaces them on the machine):
    5 settings, at least 3 seeds, fitting call 2 plus its continuation."""
    info = dict(INFO, ifeval_max_new_tokens=_instruction_cap(), eval_records=400)
    budget = 640.0  # 500 s of call 2 less ~60 s setup, plus ~200 s of call 3 (docs/performance.md)
    plan = cmp.plan_grid(5, info, budget, dict(cmp.COST, once_s=0.0))
    assert plan["seeds"] >= 3 and plan["arms"] >= 15
    assert plan["total_s"] <= cmp.SAFETY * budget


def _instruction_cap() -> int:
    from neftune.finetune.evaluation import EvalConfig

    return EvalConfig(model="").ifeval_max_new_tokens


@pytest.mark.slow  # three tiny compare arms in child processes: ~1-3 minutes on 2 busy cores
@pytest.mark.usefixtures("neftune_cache")
def test_gpu_compare_dry_run_stops_and_resumes_from_its_state(cmp, tmp_path, monkeypatch):
    """The whole GPU procedure on the CPU with the tiny model: call 2 planned from a calibration,
    the scaling arms in the grid (alpha 10 per-sequence and batch-scaled), stopped after one arm
    (out of time), packed; a fresh machine resumes from the packed state, trains only the rest,
    and builds the report with the new intervals and detectable effects."""
    pytest.importorskip("trl")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    grid = ["--dry", "--model", "tiny", "--alphas", "0,10", "--seeds", "1"]
    first, second = tmp_path / "out1", tmp_path / "out2"
    rc = cmp.main([*grid, "--stop-after-arms", "1", "--out", str(first), "--workdir", str(tmp_path / "w1")])
    assert rc == 1
    s1 = json.loads((first / "gpu_compare.json").read_text())
    assert s1["status"].startswith("partial") and s1["arms_done"] == 1
    assert (
        "--preset quick --model tiny --alphas 0,10 --scalings per_sequence,batch@10 --seeds 1"
        in s1["compare_command"]
    )
    assert len(s1["plan"]["settings"]) == 3 and s1["plan"]["arms"] == 3
    assert s1["plan"]["preset"]["ifeval_splits"] == 2
    assert s1["plan"]["preset"]["ifeval_max_new_tokens"] == _instruction_cap()
    assert s1["plan"]["preset"]["gen_batch"] == 4 and "--eval-batch-size 4" in s1["compare_command"]
    cal = s1["calibration"]
    assert cal["steps"] == 3 and cal["step_s"] > 0 and cal["decode_step_s"] > 0
    assert s1["plan"]["cost"]["step_s"] == cal["step_s"]
    with tarfile.open(first / "compare_state.tar.gz") as tar:
        names = tar.getnames()
    assert "arms/a0-uniform-constant-s0/arm.json" in names and "experiment.json" in names
    assert not any(n.endswith(".safetensors") or "checkpoints" in n for n in names)
    state = tmp_path / "carried.tar.gz"
    shutil.copy(first / "compare_state.tar.gz", state)
    rc = cmp.main(
        [*grid, "--resume-state", str(state), "--out", str(second), "--workdir", str(tmp_path / "w2")]
    )
    assert rc == 0
    s2 = json.loads((second / "gpu_compare.json").read_text())
    assert s2["status"] == "complete" and s2["resumed_arms"] == ["a0-uniform-constant-s0"]
    assert s2["plan"]["arms_to_run"] == 2 and s2["arms_done"] == 3
    assert s2["arm_seconds"]["a0-uniform-constant-s0"] == s1["arm_seconds"]["a0-uniform-constant-s0"]
    log = (second / "compare.log").read_text()
    assert "finished a10-uniform-constant-batch-s0" in log and "finished a0-uniform-constant-s0" not in log
    with tarfile.open(second / "compare_state.tar.gz") as tar:
        tar.extractall(tmp_path / "state", filter="data")
    results = json.loads((tmp_path / "state" / "results.json").read_text())
    assert {a["id"] for a in results["arms"]} == {
        "a0-uniform-constant-s0",
        "a10-uniform-constant-s0",
        "a10-uniform-constant-batch-s0",
    }
    assert results["config"]["data_seeds"] == "per_seed"
    generations = json.loads(
        (
            tmp_path / "state" / "arms" / "a10-uniform-constant-batch-s0" / "eval" / "generations.json"
        ).read_text()
    )
    assert all("truncated" in g and "new_tokens" in g for rows in generations.values() for g in rows)
    doc = json.loads((tmp_path / "state" / "report" / "summary.json").read_text())
    assert doc["interval_method"] and "batch scaling" in json.dumps(doc["settings"])
