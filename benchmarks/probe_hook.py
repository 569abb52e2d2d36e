#!/usr/bin/env python
"""Probe what NEFTune's hook costs the device per noised forward: host syncs, kernels, scale time.

For a Llama-shaped model (random weights) and each noise backend (``torch``, ``triton``) it runs
the model's forward only up to the noised embedding (a forward hook registered after NEFTune's
stops the forward there), on a right-padded batch (``attention_mask``) and on a padding-free
packed batch (``position_ids``), and reports:

  no_host_sync     the region run under ``torch.cuda.set_sync_debug_mode("error")``: any
                   device-to-host synchronisation (``.item()``, ``.tolist()``, a CPU copy,
                   ``nonzero``...) raises, and the error is recorded. Also, for one full
                   forward in "warn" mode, every synchronising call site, split into
                   neftune's own and the rest (transformers' mask code, ...).
  kernels          device kernels launched in that region (torch.profiler), noise on minus
                   noise off, with their names: what one noised forward adds.
  token_scales_ms  GPU time (CUDA events, median) of ``neftune.noise.token_scales`` alone,
                   the per-token ``alpha / sqrt(L * d)`` computation the hook runs each step.

On the CPU (``--device cpu``) the sync check does not apply, the profiler counts CPU operators
instead of kernels and times are wall-clock: a plumbing check only (the ``--dry`` mode of
benchmarks/gpu_suite.py runs it so).

    python benchmarks/probe_hook.py --model 135m --out results/hook_probe.json
    TRITON_INTERPRET=1 python benchmarks/probe_hook.py --device cpu --model tiny --batch 2 --seq 32
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections import Counter
from pathlib import Path

import torch
from _common import DTYPES, MODEL_CONFIGS, build_llama, machine_info, synchronize

import neftune
from neftune.io import write_json_atomic
from neftune.kernels import triton_available
from neftune.noise import token_scales

NEFTUNE_SRC = str(Path(neftune.__file__).resolve().parent)


class _Stop(Exception):
    """Raised by the hook registered after NEFTune's, to end the forward at the embedding."""


def make_batches(vocab: int, batch: int, seq: int, device: torch.device) -> dict[str, dict]:
    """A right-padded batch (rows of length seq, 3/4, 1/2, ... of seq) and a packed one (one row)."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (batch, seq), generator=gen)
    lengths = torch.tensor([max(1, seq - i * seq // (2 * batch)) for i in range(batch)])
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    # Packed: the same total number of tokens as one row of batch * seq, sequences of seq / 2.
    seg = max(1, seq // 2)
    pos = (torch.arange(batch * seq) % seg).unsqueeze(0)
    packed_ids = torch.randint(3, vocab, (1, batch * seq), generator=gen)
    return {
        "padded": {"input_ids": (ids * mask).to(device), "attention_mask": mask.to(device)},
        "packed": {"input_ids": packed_ids.to(device), "position_ids": pos.to(device)},
    }


def forward_to_embedding(model, inputs: dict) -> None:
    """Run ``model(**inputs)`` until the input embedding (and NEFTune's hook on it) has run."""
    emb = model.get_input_embeddings()

    def stop(module, args, output):
        raise _Stop

    handle = emb.register_forward_hook(stop)  # registered last: runs after NEFTune's hook
    try:
        model(**inputs)
    except _Stop:
        pass
    finally:
        handle.remove()


def sync_check(model, inputs: dict, device: torch.device) -> dict:
    """Run the region under set_sync_debug_mode("error"); return whether it passed and any error."""
    if device.type != "cuda":
        forward_to_embedding(model, inputs)
        return {"checked": False, "note": "not a CUDA device: host syncs cannot be detected"}
    synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        forward_to_embedding(model, inputs)
        return {"checked": True, "no_host_sync": True}
    except RuntimeError as exc:
        return {"checked": True, "no_host_sync": False, "error": str(exc).splitlines()[0][:400]}
    finally:
        torch.cuda.set_sync_debug_mode("default")


def full_forward_sync_sites(model, inputs: dict, device: torch.device) -> dict:
    """Every synchronising call site of one full forward ("warn" mode), neftune's apart."""
    if device.type != "cuda":
        return {"checked": False}
    synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            model(**inputs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    sites = Counter(f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message).lower())
    ours = {k: v for k, v in sites.items() if k.startswith(NEFTUNE_SRC)}
    return {"checked": True, "neftune_sites": ours, "other_sites": dict(sites - Counter(ours))}


def count_kernels(model, inputs: dict, device: torch.device) -> tuple[int, Counter]:
    """Device kernels (CPU operators on the CPU) launched by one forward_to_embedding."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        forward_to_embedding(model, inputs)
        synchronize(device)
    if device.type == "cuda":
        names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    else:
        names = [e.name for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None]
    return len(names), Counter(names)


def time_token_scales(embeds: torch.Tensor, inputs: dict, device: torch.device, iters: int) -> dict:
    """Median time of token_scales(embeds, 5.0, **mask or positions) over ``iters`` calls."""
    batch = {k: v for k, v in inputs.items() if k != "input_ids"}
    for _ in range(3):
        token_scales(embeds, 5.0, **batch)
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            token_scales(embeds, 5.0, **batch)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            token_scales(embeds, 5.0, **batch)
            times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "n": iters}


def probe(args) -> dict:
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    model = build_llama(args.model, dtype, device)
    model.config.use_cache = False
    model.train()
    batches = make_batches(model.config.vocab_size, args.batch, args.seq, device)
    d = model.config.hidden_size

    baseline = {}
    for kind, inputs in batches.items():  # noise off: what the embedding region launches anyway
        forward_to_embedding(model, inputs)  # warm-up
        baseline[kind] = count_kernels(model, inputs, device)

    backends = ["torch"]
    skipped = {}
    if triton_available(torch.empty(0, device=device)):
        backends.append("triton")
    else:
        skipped["triton"] = "the fused kernel needs triton and a CUDA device (or TRITON_INTERPRET=1)"

    results: dict[str, dict] = {}
    for backend in backends:
        handle = neftune.activate(model, 5.0, backend=backend, seed=0)  # seeded, as neftune train does
        try:
            per_kind = {}
            for kind, inputs in batches.items():
                forward_to_embedding(model, inputs)  # warm-up: Triton JIT, generator creation
                before = handle.noised_calls
                sync = sync_check(model, inputs, device)
                n_on, names_on = count_kernels(model, inputs, device)
                n_off, names_off = baseline[kind]
                per_kind[kind] = {
                    "noised": handle.noised_calls > before,
                    "backend": handle.last_backend,
                    "inplace": handle.last_inplace,
                    "sync": sync,
                    "kernels_noise_on": n_on,
                    "kernels_noise_off": n_off,
                    "kernels_added": n_on - n_off,
                    "kernels_added_by_name": dict(names_on - names_off),
                }
            per_kind["full_forward_sync_sites"] = full_forward_sync_sites(model, batches["padded"], device)
            results[backend] = per_kind
        finally:
            handle.remove()

    embeds = torch.zeros(args.batch, args.seq, d, device=device, dtype=dtype)
    packed_embeds = torch.zeros(1, args.batch * args.seq, d, device=device, dtype=dtype)
    scales = {
        "padded": time_token_scales(embeds, batches["padded"], device, args.iters),
        "packed": time_token_scales(packed_embeds, batches["packed"], device, args.iters),
    }
    return {
        "model": args.model,
        "dtype": args.dtype,
        "batch": args.batch,
        "seq": args.seq,
        "hidden": d,
        "backends": results,
        "skipped": skipped,
        "token_scales": scales,
        "timer": "cuda events" if device.type == "cuda" else "time.perf_counter (CPU)",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", choices=sorted(MODEL_CONFIGS), default="135m")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default bf16 on GPU, fp32 on CPU")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--iters", type=int, default=50, help="timed token_scales calls")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available")
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")

    info = machine_info(device)
    res = probe(args)
    for backend, per_kind in res["backends"].items():
        for kind in ("padded", "packed"):
            r = per_kind[kind]
            sync = r["sync"]
            verdict = "n/a (CPU)" if not sync["checked"] else ("none" if sync["no_host_sync"] else "SYNC")
            print(
                f"{backend:<7}{kind:<8} noised {r['noised']}, in place {r['inplace']}, host sync: {verdict}, "
                f"{'kernels' if device.type == 'cuda' else 'CPU ops'} added {r['kernels_added']}"
            )
    for kind, t in res["token_scales"].items():
        print(f"token_scales ({kind}): {t['median_ms']:.4f} ms median ({res['timer']})")
    if args.out is not None:
        write_json_atomic(args.out, {"benchmark": "hook_probe", "machine": info, "results": res})
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
