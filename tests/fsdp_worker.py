"""Run by tests/test_fsdp.py under torch.distributed.run (2 CPU processes, gloo).

Wraps a tiny Llama with FSDP (``fsdp2``: ``torch.distributed.fsdp.fully_shard`` on every decoder
layer and the root; ``fsdp1``: ``FullyShardedDataParallel``), activates neftune with a seed, trains
two steps and saves per rank: the noise the embedding added in each step (its output after our
hook minus its output before it, both captured by hooks around ours), the loss, and the hooks
left afterwards. If the wrapper cannot be built or run on CPU, the exact error is saved instead.

Usage: fsdp_worker.py OUT_DIR SEED KIND[,KIND...]   (kinds: fsdp1, fsdp2)
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
import neftune

from conftest import neftune_hooks, tiny_llama


def wrap(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    if kind == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        return model
    from torch.distributed.fsdp import FullyShardedDataParallel

    return FullyShardedDataParallel(model, use_orig_params=True)


def all_hook_counts(model: torch.nn.Module) -> list[int]:
    return [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]


def run(kind: str, seed: int) -> dict:
    model = wrap(tiny_llama(), kind)
    embedding = neftune.find_input_embedding(model).module
    hooks_before = all_hook_counts(model)
    captured: dict[str, list[torch.Tensor]] = {"clean": [], "noisy": []}
    before = embedding.register_forward_hook(lambda m, a, out: captured["clean"].append(out.detach().clone()))
    handle = neftune.activate(model, alpha=5.0, seed=seed)  # rank r draws from seed + r * stride
    after = embedding.register_forward_hook(lambda m, a, out: captured["noisy"].append(out.detach().clone()))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(7)  # same batch on both ranks: only the noise may differ
    ids = torch.randint(1, 100, (2, 9), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    model.train()
    losses = []
    for _ in range(2):
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    active_during = neftune.is_active(model)
    handle.remove()
    before.remove()
    after.remove()
    noise = [n - c for n, c in zip(captured["noisy"], captured["clean"])]
    return {
        "kind": kind,
        "noise": torch.stack(noise),
        "losses": losses,
        "module": handle.path,
        "active_during": active_during,
        "active_after": neftune.is_active(model),
        "neftune_hooks_after": len(neftune_hooks(model)),
        "hooks_unchanged": all_hook_counts(model) == hooks_before,
    }


def main() -> None:
    out, seed, kinds = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for kind in kinds:
        try:
            result = run(kind, seed)
            torch.save(result, out / f"{kind}.rank{rank}.pt")
        except Exception as exc:  # documented by the test: which FSDP flavour does not run on CPU, and why
            error = {
                "kind": kind,
                "error": f"{type(exc).__name__}: {exc}",
                "where": traceback.format_exc(limit=-3),
            }
            (out / f"{kind}.rank{rank}.error.json").write_text(json.dumps(error, indent=2))
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
