"""Two CPU processes (gloo) under torch.distributed.run: per-rank noise, reproducible with a seed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


def run_ranks(out: Path, seed: int) -> list[dict]:
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(WORKER), str(out), str(seed)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


@pytest.mark.slow
def test_ddp_ranks_differ_and_seed_reproduces(tmp_path):
    first = run_ranks(tmp_path / "a", seed=123)
    again = run_ranks(tmp_path / "b", seed=123)
    r0, r1 = (r["noise"] for r in first)
    assert r0.abs().max() > 0 and r1.abs().max() > 0
    assert not torch.equal(r0, r1)  # ranks draw different noise
    for a, b in zip(first, again):
        assert torch.equal(a["noise"], b["noise"])  # same seed, same noise, rank by rank
        assert a["hooks"] == 0  # nothing left after remove()
        assert a["module"] == "model.embed_tokens"  # found behind the DDP wrapper
    assert (r0[1, 4:] == 0).all() and (r1[1, 4:] == 0).all()  # padding untouched
