"""SIGKILL of a real `neftune compare` process in the middle of its second arm, then a rerun.

The many-trials version (random kill times) is scripts/fault_injection_compare.py; its figures are
in docs/reliability.md. Here one deterministic kill: once the first arm is finished and the second
is training, the process is killed; afterwards every JSON file parses, the finished arm is kept
byte for byte, and the rerun completes only what was missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

pytest.importorskip("trl")
pytestmark = pytest.mark.usefixtures("neftune_cache")
import fault_injection_compare as fi  # noqa: E402


def _wait_for(predicate, proc, timeout=600.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the compare run")


def test_sigkill_mid_arm_then_resume(tmp_path):
    folder = tmp_path / "cmp"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(fi._command(folder), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    arms = folder / "arms"

    def second_arm_training() -> bool:
        done = list(arms.glob("*/arm.json")) if arms.exists() else []
        started = [p for p in arms.glob("*/neftune_run.json")] if arms.exists() else []
        return len(done) == 1 and len(started) == 2

    reached = _wait_for(second_arm_training, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reached, f"compare ended before the kill: {proc.stderr.read().decode()[-2000:]}"

    finished = fi.check_folder(folder)  # every JSON parses; no arm complete without arm.json
    assert len(finished) == 1
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "running"
    assert [a["status"] for a in results["arms"]].count("complete") == 1

    rerun = subprocess.run(fi._command(folder), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = fi.check_folder(folder)
    assert len(after) == 4
    for arm_id, digest in finished.items():
        assert after[arm_id] == digest, "the finished arm was recomputed"
    assert json.loads((folder / "results.json").read_text())["status"] == "complete"
