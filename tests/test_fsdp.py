"""Two CPU processes (gloo) under torch.distributed.run with FSDP: per-rank noise, reproducible
with a seed, per-sequence scale and no padding noise inside a sharded model, and clean removal.

FSDP2 (``torch.distributed.fsdp.fully_shard``) runs on CPU. FSDP1 (``FullyShardedDataParallel``)
refuses to start without an accelerator in torch 2.13; the test pins that exact error, so a torch
that lifts the restriction makes it fail and the FSDP1 checks can be switched on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import assert_sequence_norm

WORKER = Path(__file__).with_name("fsdp_worker.py")
FSDP1_CPU_ERROR = (
    "RuntimeError: FSDP needs a non-CPU accelerator device, but no accelerator device is detected."
)


def run_ranks(out: Path, seed: int, kinds: str) -> Path:
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(WORKER), str(out), str(seed), kinds], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def results(out: Path, kind: str) -> list[dict]:
    return [torch.load(out / f"{kind}.rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.slow
def test_fsdp_per_rank_reproducible_noise_and_clean_removal(tmp_path):
    first = run_ranks(tmp_path / "a", seed=123, kinds="fsdp1,fsdp2")
    again = run_ranks(tmp_path / "b", seed=123, kinds="fsdp2")

    # FSDP1 on CPU: refused by torch itself, before neftune is involved.
    for rank in range(2):
        error = json.loads((first / f"fsdp1.rank{rank}.error.json").read_text())
        assert error["error"] == FSDP1_CPU_ERROR, error
        assert not (first / f"fsdp1.rank{rank}.pt").exists()

    r0, r1 = results(first, "fsdp2")
    assert not torch.equal(r0["noise"], r1["noise"]), "ranks must draw different noise"
    for a, b in zip((r0, r1), results(again, "fsdp2")):
        assert torch.equal(a["noise"], b["noise"]), "same seed, same noise, rank by rank"
        assert a["losses"] == b["losses"]
    for r in (r0, r1):
        assert r["module"] == "model.embed_tokens"  # found inside the fully_shard-ed model
        assert r["active_during"] and not r["active_after"]
        assert r["neftune_hooks_after"] == 0 and r["hooks_unchanged"], "FSDP's own hooks kept, ours gone"
        noise = r["noise"]  # (steps, batch, seq, dim); row 1 has 4 real tokens then padding
        assert not torch.equal(noise[0], noise[1]), "a new draw every step"
        assert torch.count_nonzero(noise[:, 1, 4:]) == 0
        for step in range(2):
            assert_sequence_norm(noise[step, 0], 5.0, "uniform")
            assert_sequence_norm(noise[step, 1, :4], 5.0, "uniform")
