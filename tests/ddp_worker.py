"""Run by tests/test_distributed.py under torch.distributed.run (2 CPU processes, gloo).

Trains one DDP step of a tiny Llama with neftune active and saves, per rank, the noise
the embedding received and whether any hook was left afterwards.
Usage: ddp_worker.py OUT_DIR SEED
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
import neftune

from conftest import NoiseRecorder, tiny_llama


def main() -> None:
    out, seed = Path(sys.argv[1]), int(sys.argv[2])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = torch.nn.parallel.DistributedDataParallel(tiny_llama())
    ids = torch.randint(1, 100, (2, 9), generator=torch.Generator().manual_seed(7))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    handle = neftune.activate(model, alpha=5.0, seed=seed)  # unwraps DDP; rank r: seed + r * stride
    recorder = NoiseRecorder(neftune.find_input_embedding(model).module)
    model.train()
    loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
    loss.backward()
    recorder.remove()
    handle.remove()
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    torch.save({"noise": recorder.noise[0], "hooks": hooks, "module": handle.path}, out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
