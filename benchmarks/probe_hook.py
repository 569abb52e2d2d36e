#!/usr/bin/env python
"""Probe what NEFTune's hook costs per noised forward: host syncs, kernels, host latency, GPU time.

For a Llama-shaped model (random weights) and each noise backend (``torch``, ``triton``) it runs
the model's forward only up to the noised embedding (a forward hook registered after NEFTune's
stops the forward there), on a right-padded batch (``attention_mask``) and on a padding-free
packed batch (``position_ids``), and reports:

  no_host_sync     the region run under ``torch.cuda.set_sync_debug_mode("error")``: any
                   device-to-host synchronisation (``.item()``, ``.tolist()``, a CPU copy,
                   ``nonzero``...) raises, and the error is recorded. Also, for one full
                   forward in "warn" mode, every synchronising call site, split into
                   neftune's own and the rest (transformers' mask code, ...).
  kernels_added    device kernels launched in that region (torch.profiler), noise on minus
                   noise off, with their names, and gpu_ms_added: the sum of their durations
                   (GPU-only time, from the profiler): what one noised forward adds.
  noise_call       the noise step alone as the hook runs it, ``neftune.noise.noised`` with the
                   batch's mask or positions (scales + noise), per backend: host_latency_ms (wall
                   time of the call: the device is synchronised before it, not after, so this is
                   the time the host spends issuing its work) and gpu_ms / kernels (profiler).
  token_scales     the same two figures for ``neftune.noise.token_scales`` alone (the torch
                   path's per-token ``alpha / sqrt(L * d)``: many small kernels, host-bound).

On the CPU (``--device cpu``) the sync check does not apply, the profiler counts CPU operators
instead of kernels, GPU times are absent and host latencies include the work itself: a plumbing
check only (the ``--dry`` mode of benchmarks/gpu_suite.py runs it so).

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
from neftune.finetune.io import write_json_atomic
from neftune.kernels import triton_available
from neftune.noise import noised, token_scales

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


def profile_kernels(fn, device: torch.device) -> tuple[int, Counter, float | None]:
    """(kernels, their names, their total GPU time in ms) of one call of ``fn``.

    On the CPU: top-level aten operators instead of kernels, and no GPU time.
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        fn()
        synchronize(device)
    if device.type == "cuda":
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        gpu_us = sum(getattr(e, "device_time", None) or e.cuda_time for e in kernels)
        return len(kernels), Counter(e.name for e in kernels), gpu_us / 1e3
    names = [e.name for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None]
    return len(names), Counter(names), None


def count_kernels(model, inputs: dict, device: torch.device) -> tuple[int, Counter, float | None]:
    """Device kernels (CPU operators on the CPU) launched by one forward_to_embedding, and their GPU time."""
    return profile_kernels(lambda: forward_to_embedding(model, inputs), device)


def host_latency(fn, device: torch.device, iters: int) -> dict:
    """Wall time of ``fn()`` with the device synchronised before each call but not after (median ms)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    synchronize(device)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "n": iters}


def call_costs(fn, device: torch.device, iters: int) -> dict:
    """Host latency, kernel count and GPU-only time of one call of ``fn``."""
    n, names, gpu_ms = profile_kernels(fn, device)
    return {
        "host_latency_ms": host_latency(fn, device, iters),
        "kernels": n,
        "kernel_names": dict(names),
        "gpu_ms": gpu_ms,
    }


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
                n_on, names_on, gpu_on = count_kernels(model, inputs, device)
                n_off, names_off, gpu_off = baseline[kind]
                per_kind[kind] = {
                    "noised": handle.noised_calls > before,
                    "backend": handle.last_backend,
                    "inplace": handle.last_inplace,
                    "sync": sync,
                    "kernels_noise_on": n_on,
                    "kernels_noise_off": n_off,
                    "kernels_added": n_on - n_off,
                    "kernels_added_by_name": dict(names_on - names_off),
                    "gpu_ms_added": None if gpu_on is None else gpu_on - gpu_off,
                }
            per_kind["full_forward_sync_sites"] = full_forward_sync_sites(model, batches["padded"], device)
            results[backend] = per_kind
        finally:
            handle.remove()

    embeds = torch.zeros(args.batch, args.seq, d, device=device, dtype=dtype)
    packed_embeds = torch.zeros(1, args.batch * args.seq, d, device=device, dtype=dtype)
    shaped = {"padded": embeds, "packed": packed_embeds}
    lengths = {
        kind: {k: v for k, v in inputs.items() if k != "input_ids"} for kind, inputs in batches.items()
    }
    scales = {
        kind: call_costs(
            lambda kind=kind: token_scales(shaped[kind], 5.0, **lengths[kind]), device, args.iters
        )
        for kind in batches
    }
    noise_call: dict[str, dict] = {}
    for backend in backends:
        gen = torch.Generator(device="cpu" if backend == "triton" else device).manual_seed(0)
        noise_call[backend] = {
            kind: call_costs(
                lambda kind=kind, backend=backend, gen=gen: noised(
                    shaped[kind], 5.0, backend=backend, generator=gen, need_noise=False, **lengths[kind]
                ),
                device,
                args.iters,
            )
            for kind in batches
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
        "noise_call": noise_call,
        "timer": "host latency: time.perf_counter around one call, the device synchronised before it "
        "(not after); GPU time: the sum of the call's kernel durations in torch.profiler",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", choices=sorted(MODEL_CONFIGS), default="135m")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default bf16 on GPU, fp32 on CPU")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--iters", type=int, default=50, help="timed calls for each host latency")
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

    def costs(name: str, c: dict) -> str:
        gpu = "" if c["gpu_ms"] is None else f", GPU {c['gpu_ms']:.4f} ms"
        unit = "kernels" if device.type == "cuda" else "CPU ops"
        return f"{name}: host latency {c['host_latency_ms']['median_ms']:.4f} ms, {c['kernels']} {unit}{gpu}"

    for kind, c in res["token_scales"].items():
        print(costs(f"token_scales ({kind})", c))
    for backend, per_kind in res["noise_call"].items():
        for kind, c in per_kind.items():
            print(costs(f"noised, {backend} ({kind})", c))
    if args.out is not None:
        write_json_atomic(args.out, {"benchmark": "hook_probe", "machine": info, "results": res})
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
