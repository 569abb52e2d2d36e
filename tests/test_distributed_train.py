"""`neftune train` under torchrun: 2 CPU ranks (gloo), DDP through the Trainer.

Rank 0 alone checks and writes the run folder and prints the summary; the loss it reports is the
mean over ranks. The Trainer's own ``training_loss`` is per rank for steps that were not logged
(it gathers the loss across ranks only at logging steps), so a run that logs every step and one
that logs none must report the same loss; before the fix the second reported rank 0's own loss
(here 11.76 against 10.81; the other rank had 9.86).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

SRC = Path(__file__).resolve().parents[1] / "src"


def torchrun_train(out: Path, cache: Path, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "NEFTUNE_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "neftune.cli", "train", "--model", "tiny", "--max-steps", "3", "--batch-size", "2"]
    cmd += ["--max-length", "256", "--alpha", "5", "--out", str(out), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_two_ranks_one_summary_one_run_folder_loss_averaged_over_ranks(tmp_path, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp().parent / "neftune-cache"  # as conftest's neftune_cache
    runs = {}
    for logging_steps in ("1", "100"):
        out = tmp_path / f"log{logging_steps}"
        code, output = torchrun_train(out, cache, "--logging-steps", logging_steps)
        assert code == 0, output[-4000:]
        assert output.count("Done in") == 1 and output.count("Next: neftune eval") == 1, output[-4000:]
        run = json.loads((out / "neftune_run.json").read_text())
        assert run["status"] == "complete"
        assert run["metrics"]["world_size"] == 2 and run["metrics"]["global_step"] == 3
        assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
        assert not (out / "training_args.bin").exists(), "no pickle in the run folder"
        assert not (out / "checkpoints").exists()
        runs[logging_steps] = run["metrics"]["train_loss"]

    # Logged every step: the Trainer gathered each step's loss over the ranks; the logs are float32.
    log = json.loads((tmp_path / "log1" / "train_log.json").read_text())
    logged = [row["loss"] for row in log if "loss" in row]
    assert len(logged) == 3
    assert runs["1"] == pytest.approx(sum(logged) / 3, rel=1e-6)
    # Logged never: the same training, so the same mean over ranks (not rank 0's own loss).
    assert runs["100"] == pytest.approx(runs["1"], rel=1e-6)

    # A refusal on rank 0 reaches rank 1 too: both exit with the message instead of rank 1 hanging.
    code, output = torchrun_train(tmp_path / "log1", cache, "--logging-steps", "1")
    assert code != 0 and "already holds a finished run" in output, output[-4000:]
