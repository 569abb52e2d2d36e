"""`neftune train --resume` after SIGKILL and after a kill in the middle of a checkpoint save.

The many-trials version (random kill times) is scripts/fault_injection_train.py; its figures are
in docs/reliability.md. Here: one deterministic in-process case (half-written checkpoints must be
skipped), the resume-settings check, and a real SIGKILL of a `neftune train` subprocess in the
middle of a checkpoint save.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest

from neftune.finetune.training import (
    RUN_FILE,
    RunError,
    TrainConfig,
    check_resume_config,
    last_complete_checkpoint,
    run_status,
    train,
)

from conftest import InterruptAtSave

pytest.importorskip("trl")
pytestmark = pytest.mark.usefixtures("neftune_cache")
import fault_injection_train as fi  # noqa: E402


def logged_steps(out: Path) -> list[int]:
    return [row["step"] for row in json.loads((out / "train_log.json").read_text()) if "loss" in row]


def test_resume_skips_half_written_checkpoints(tmp_path):
    from transformers.trainer_utils import get_last_checkpoint

    out = tmp_path / "run"
    cfg = TrainConfig(
        model="tiny", out=str(out), batch_size=2, max_steps=4, save_steps=2, max_length=256, logging_steps=1
    )
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[InterruptAtSave()])
    assert run_status(out) == "interrupted", "an interrupted run must not look complete"
    ckpts = out / "checkpoints"
    assert (ckpts / "checkpoint-2").exists()
    # What a SIGKILL during the saves of steps 3 and 4 leaves: the Trainer writes trainer_state.json
    # last, so one folder lacks it and the other has it cut short.
    shutil.copytree(ckpts / "checkpoint-2", ckpts / "checkpoint-3")
    (ckpts / "checkpoint-3" / "trainer_state.json").unlink()
    shutil.copytree(ckpts / "checkpoint-2", ckpts / "checkpoint-4")
    state = (ckpts / "checkpoint-4" / "trainer_state.json").read_text()
    (ckpts / "checkpoint-4" / "trainer_state.json").write_text(state[: len(state) // 2])
    assert get_last_checkpoint(str(ckpts)).endswith("checkpoint-4"), "what transformers would resume from"
    assert last_complete_checkpoint(ckpts) == ckpts / "checkpoint-2"
    assert not (ckpts / "checkpoint-3").exists() and not (ckpts / "checkpoint-4").exists()

    shutil.copytree(ckpts / "checkpoint-2", ckpts / "checkpoint-4")  # broken again, for train() itself
    (ckpts / "checkpoint-4" / "trainer_state.json").write_text("{")
    metrics = train(cfg, resume=True)
    assert metrics["global_step"] == 4 and metrics["resumed_from_step"] == 2
    assert run_status(out) == "complete"
    assert logged_steps(out) == [1, 2, 3, 4]
    assert metrics["train_loss"] > 0, "the whole run's mean loss, not 0 from an empty resumed segment"


def test_resume_config_check(tmp_path):
    """--resume needs the interrupted run's settings; fields it predates count as their defaults."""
    cfg = TrainConfig(model="tiny", out=str(tmp_path), alpha=5.0)
    saved = {k: v for k, v in asdict(cfg).items() if k != "trust_remote_code"}  # an older run file
    (tmp_path / RUN_FILE).write_text(json.dumps({"status": "running", "config": saved}))
    check_resume_config(tmp_path, cfg)
    with pytest.raises(RunError, match=r"lora: False -> True; .*lr: None -> 0.001"):
        check_resume_config(
            tmp_path, TrainConfig(model="tiny", out="elsewhere", alpha=5.0, lora=True, lr=1e-3)
        )


@pytest.mark.slow
def test_sigkill_then_resume_finishes_once(tmp_path):
    """SIGKILL in the middle of the second checkpoint save (checkpoint-2 complete, checkpoint-4 being
    written), then `--resume` to the end."""
    out, max_steps = tmp_path / "run", 6
    cmd = fi.command(out, max_steps, save_steps=2)
    env = fi.environment()
    ckpts = out / "checkpoints"

    def mid_second_save(_elapsed: float) -> bool:
        newer = [p for p in ckpts.glob("checkpoint-*") if p.name != "checkpoint-2"]
        return (ckpts / "checkpoint-2" / "trainer_state.json").exists() and any(
            not (p / "trainer_state.json").exists() for p in newer
        )

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = fi.watch(proc, out, max_steps, mid_second_save)  # asserts valid JSON at every read
    assert killed["killed"], "the run ended before the kill point"
    assert run_status(out) == "running", "a killed run must never look complete"
    assert fi.checkpoint_states(out) == {"checkpoint-2": "complete", "checkpoint-4": "half-written"}

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    resumed = fi.watch(proc, out, max_steps, None)
    stderr = proc.stderr.read().decode(errors="replace")
    assert resumed["rc"] == 0 and "Traceback" not in stderr, stderr[-3000:]
    assert resumed["statuses"] == ["running", "complete"]
    final = json.loads((out / RUN_FILE).read_text())
    assert final["status"] == "complete" and final["metrics"]["global_step"] == max_steps
    assert final["metrics"]["resumed_from_step"] == 2
    assert logged_steps(out) == list(range(1, max_steps + 1)), "each step trained and logged exactly once"
    assert not ckpts.exists()
