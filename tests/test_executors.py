"""`--executor local|ray`: the same arms, the same metrics, run one after the other or as Ray tasks.

The Ray tests share one local Ray (2 CPUs, no dashboard) started once for the module: Ray takes
several seconds to start. Each arm is a tiny model trained for a few steps on the CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from neftune.experiments.executors import ArmsFailed, LocalExecutor, RayExecutor, make_executor
from neftune.experiments.run import ARM_FILE, RESULTS_FILE, NullProgress, run_experiment
from neftune.finetune.training import RunError

from conftest import cli, interruptible_process, tiny_experiment

pytest.importorskip("trl")
pytestmark = pytest.mark.usefixtures("neftune_cache")
import fault_injection_compare as fault_injection  # noqa: E402


class Recorder(NullProgress):
    """Arm events in the order the driver reported them (thread-safe enough for list appends)."""

    def __init__(self):
        self.started, self.retried, self.finished = [], [], []

    def arm_started(self, index, total, arm):
        self.started.append(arm.id)

    def arm_retried(self, index, total, arm, attempt, where):
        self.retried.append((arm.id, attempt))

    def arm_finished(self, index, total, arm, seconds):
        self.finished.append(arm.id)


def _cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp().parent / "neftune-cache"  # as conftest's neftune_cache


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """One local Ray for the module. Its workers inherit this environment as it is at start-up."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEFTUNE_CACHE", str(_cache_dir(tmp_path_factory)))
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()


def _arms(folder: Path) -> dict[str, dict]:
    return {a["id"]: a for a in json.loads((folder / RESULTS_FILE).read_text())["arms"]}


def _same_metrics(a: dict, b: dict) -> None:
    assert a["status"] == b["status"] == "complete"
    assert a["eval"] == b["eval"]
    assert a["curves"] == b["curves"]
    for key in ("train_loss", "global_step", "train_records"):
        assert a["train"][key] == b["train"][key], key


def _time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").timestamp()


# --------------------------------------------------------------------------- options (no Ray)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "dask"}, "--executor must be one of local, ray, got 'dask'"),
        ({"name": "local", "address": "ray://head:10001"}, "--ray-address needs --executor ray"),
        ({"name": "ray", "cpus_per_arm": 0}, "--cpus-per-arm must be > 0, got 0"),
        ({"name": "ray", "gpus_per_arm": -1}, "--gpus-per-arm must be >= 0, got -1"),
        ({"name": "ray", "max_retries": -1}, "--max-retries must be >= 0, got -1"),
    ],
)
def test_bad_executor_options_are_refused(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(RunError, match=message):
        make_executor(name, **kwargs)


def test_executor_choice():
    assert isinstance(make_executor("local"), LocalExecutor)
    ray = make_executor("ray", address="auto", cpus_per_arm=2, gpus_per_arm=1, max_retries=0)
    assert (ray.address, ray.cpus_per_arm, ray.gpus_per_arm, ray.max_retries) == ("auto", 2, 1, 0)


def test_cli_refuses_bad_executor_options(tmp_path):
    code, out = cli("compare", "--model", "tiny", "--executor", "dask", "--out", tmp_path / "x")
    assert code == 2 and "--executor must be one of local, ray, got 'dask'" in out
    code, out = cli("sweep", "--model", "tiny", "--cpus-per-arm", "0", "--executor", "ray", "--out", tmp_path)
    assert code == 2 and "--cpus-per-arm must be > 0" in out
    assert not (tmp_path / "x").exists()


def test_arms_failed_names_the_arms():
    err = ArmsFailed({f"a{i}": "boom" for i in range(5)})
    assert str(err) == "5 arm(s) failed: a0: boom; a1: boom; a2: boom (and 2 more)"


# --------------------------------------------------------------------------- on a local Ray


@pytest.mark.slow
def test_ray_arms_overlap_and_match_local_and_resume_across_executors(tmp_path, ray_cluster):
    cfg = tiny_experiment()
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    run_experiment(cfg, local_dir, report=False)
    rec = Recorder()
    results = run_experiment(cfg, ray_dir, report=False, progress=rec, executor=RayExecutor(max_retries=0))
    assert results["status"] == "complete"
    assert sorted(rec.started) == sorted(rec.finished) == sorted(a.id for a in cfg.arms())
    local, remote = _arms(local_dir), _arms(ray_dir)
    for arm_id in local:
        _same_metrics(local[arm_id], remote[arm_id])  # same (alpha, seed): same numbers, bit for bit
    # Both arms ran at the same time: the later start is well before the earlier finish (timestamps
    # have 1 s resolution; each arm takes several seconds, so sequential runs could not pass).
    spans = [(_time(a["started"]), _time(a["finished"])) for a in remote.values()]
    overlap = min(end for _, end in spans) - max(start for start, _ in spans)
    assert overlap >= 2, f"arms did not overlap: {spans}"

    # Started with ray, resumed with local: only the missing arm is trained, to the same numbers.
    noised = "a5-uniform-constant-s0"
    shutil.rmtree(ray_dir / "arms" / noised)
    rec = Recorder()
    run_experiment(cfg, ray_dir, report=False, progress=rec)
    assert rec.started == [noised]
    _same_metrics(local[noised], _arms(ray_dir)[noised])

    # Started with local, resumed with ray: an arm whose evaluation was lost is re-evaluated there.
    baseline = "a0-uniform-constant-s0"
    (local_dir / "arms" / baseline / ARM_FILE).unlink()
    (local_dir / "arms" / baseline / "eval" / "eval.json").unlink()
    rec = Recorder()
    again = run_experiment(cfg, local_dir, report=False, progress=rec, executor=RayExecutor())
    assert rec.started == [baseline] and again["status"] == "complete"
    _same_metrics(local[baseline], _arms(local_dir)[baseline])


def _worker_pids(arm_id: str) -> list[int]:
    """Live Ray workers running `arm_id` (a killed worker not yet reaped is a zombie: left out)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if f"ray::neftune-arm:{arm_id}" in " ".join(proc.info["cmdline"] or []):
            found.append(proc.info["pid"])
    return found


def _kill_worker(arm_id: str, deadline: float, killed: set[int]) -> None:
    """SIGKILL the workers of `arm_id` that are not in `killed` (the earlier attempts), once found."""
    while time.monotonic() < deadline:
        pids = [pid for pid in _worker_pids(arm_id) if pid not in killed]
        if pids:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed.update(pids)
            return
        time.sleep(0.05)
    raise AssertionError(f"no Ray worker of {arm_id} found")


@pytest.mark.slow
def test_ray_killed_worker_is_retried_and_spent_retries_are_reported(tmp_path, ray_cluster):
    """SIGKILL of real Ray workers: one arm dies once after its first checkpoint and resumes from it;
    the other dies on every attempt, is reported failed, and the first still finishes."""
    cfg = tiny_experiment(curve_every=0)
    cfg.train = replace(cfg.train, max_steps=8)
    folder = tmp_path / "exp"
    survivor, doomed = "a0-uniform-constant-s0", "a5-uniform-constant-s0"
    rec = Recorder()
    errors: list[BaseException] = []

    deadline = time.monotonic() + 300

    # One killer per arm, so that the survivor is killed right after its first checkpoint however
    # long the doomed arm's retry takes to start (one thread for both could miss it under load).
    def kill_doomed() -> None:
        killed: set[int] = set()
        for attempt in (1, 2):  # max_retries=1: two attempts, both killed once they started
            while rec.started.count(doomed) + sum(a == doomed for a, _ in rec.retried) < attempt:
                assert time.monotonic() < deadline, "the doomed arm did not start"
                time.sleep(0.05)
            _kill_worker(doomed, deadline, killed)

    def kill_survivor() -> None:
        checkpoint = folder / "arms" / survivor / "checkpoints" / "checkpoint-1" / "trainer_state.json"
        while not checkpoint.exists():
            assert time.monotonic() < deadline, "no first checkpoint"
            time.sleep(0.02)
        _kill_worker(survivor, deadline, set())

    def reported(job) -> None:
        try:
            job()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [
        threading.Thread(target=reported, args=(job,), daemon=True) for job in (kill_doomed, kill_survivor)
    ]
    for thread in threads:
        thread.start()
    with pytest.raises(ArmsFailed) as failed:
        run_experiment(cfg, folder, report=False, progress=rec, executor=RayExecutor(max_retries=1))
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert list(failed.value.failures) == [doomed]
    assert "died 2 time(s) (--max-retries 1)" in failed.value.failures[doomed]
    assert sorted(rec.retried) == [(survivor, 2), (doomed, 2)]

    arms = _arms(folder)
    assert arms[doomed]["status"] == "failed" and "died 2 time(s)" in arms[doomed]["error"]
    assert arms[survivor]["status"] == "complete"
    assert arms[survivor]["train"]["global_step"] == 8
    assert arms[survivor]["train"]["resumed_from_step"] >= 1, "the retry resumed from the checkpoint"


@pytest.mark.slow
def test_ctrl_c_stops_a_ray_compare_cleanly(tmp_path, tmp_path_factory):
    """A real `neftune compare --executor ray` (its own local Ray) gets SIGINT while training: it exits
    130 and takes its Ray down with it; the folder stays resumable (resuming is the same protocol as
    after a SIGKILL, tested in test_compare_kill and above across executors)."""
    pytest.importorskip("ray")
    import psutil

    folder = tmp_path / "cmp"
    args = ["--model", "tiny", "--alphas", "0,5", "--seeds", "1", "--max-steps", "2", "--batch-size", "2"]
    args += ["--max-length", "256", "--n-generate", "1", "--max-new-tokens", "2", "--curve-every", "0"]
    args += ["--no-report", "--out", str(folder)]
    env = {**os.environ, "NEFTUNE_CACHE": str(_cache_dir(tmp_path_factory)), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "neftune.cli", "compare", *args]
    runs, pipes = folder / "arms", {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with interruptible_process([*cmd, "--executor", "ray"], env=env, **pipes) as proc:
        deadline = time.monotonic() + 300
        while not (runs.exists() and list(runs.glob("*/neftune_run.json"))):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    text = " ".join((out + err).decode().split())
    assert proc.returncode == 130, text[-3000:]
    assert "Traceback" not in text  # (typer turns Ctrl-C into exit code 130 itself)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"Ray processes left running: {[p.cmdline() for p in alive]}"
    assert json.loads((folder / RESULTS_FILE).read_text())["status"] == "running"
    fault_injection.check_folder(folder)  # every JSON parses; no arm counted complete without arm.json


def test_eta_counts_arms_that_ran_at_the_same_time(monkeypatch):
    """Two arms of 10 s finished together after 10 s of wall time: the 2 left need 10 s more, not 20."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    from neftune.cli import grid as climod
    from neftune.experiments.plan import Arm
    from neftune.experiments.setting import Setting

    now = [100.0]
    monkeypatch.setattr(climod.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(climod, "console", Console(file=io.StringIO()))
    with Progress(console=Console(file=io.StringIO())) as bar:
        bars = climod.ExperimentBars(bar, total=4)
        arms = [Arm(Setting(a), 0) for a in (0.0, 5.0)]
        for i, arm in enumerate(arms):
            bars.arm_started(i, 4, arm)
        now[0] += 10.0
        for i, arm in enumerate(arms):
            bars.arm_finished(i, 4, arm, 10.0)
        assert bars._eta() == "ETA 0:00:10"
