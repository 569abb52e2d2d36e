#!/usr/bin/env python
"""Benchmark the NEFTune noise op: transformers' hook vs torch reference vs fused Triton kernel.

For each shape (B x T x d) it times, side by side on the same input:

  copy            y.copy_(x): one read + one write of the tensor, the bandwidth floor
  hf_hook         transformers' neftune_post_forward_hook (x + zeros_like(x).uniform_(-m, m),
                  one magnitude for the whole padded batch); inlined if transformers is missing
  torch_reference neftune.kernels.reference_add_noise with per-token scales (the torch path users run:
                  eps in the embeddings' dtype, multiply, add)
  triton          neftune.kernels.fused_add_noise, out of place
  triton_inplace  neftune.kernels.fused_add_noise(..., inplace=True)

Per-token scales alpha / sqrt(L * d) (0 on padding) are computed once, outside the
timed region: this measures the noise op itself. Time is the median over --iters
calls after --warmup calls, from CUDA events on a GPU and time.perf_counter on the
CPU. "GB/s" is the effective bandwidth 2 * numel * itemsize / time (the tensor read
once and written once), whatever extra traffic a method really does. On CUDA the
extra peak memory of one call (torch.cuda.max_memory_allocated minus what was
allocated before it, so an out-of-place result counts) is reported too.

The Triton rows need a CUDA device (or TRITON_INTERPRET=1 on the CPU: the interpreter
is orders of magnitude slower and its timings say nothing about the kernel).

    python benchmarks/bench_noise_op.py                       # GPU, default shapes
    python benchmarks/bench_noise_op.py --device cpu --shapes 2x128x256 --iters 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import DTYPES, machine_info  # also puts this checkout's src/ on the path

from neftune.io import write_json_atomic
from neftune.kernels import fused_add_noise, reference_add_noise, triton_available

GPU_SHAPES = "8x2048x4096,4x4096x8192,1x8192x16384,16x512x2048"
CPU_SHAPES = "2x256x512"
M2 = {"uniform": 1 / 3, "gaussian": 1.0, "symmetric": 1.0}


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    shapes = []
    for item in text.split(","):
        parts = [int(p) for p in item.lower().strip().split("x")]
        if len(parts) != 3 or min(parts) <= 0:
            raise argparse.ArgumentTypeError(f"shape {item!r} is not BxTxd with positive sizes")
        shapes.append((parts[0], parts[1], parts[2]))
    return shapes


def per_token_scales(b: int, t: int, d: int, alpha: float, pad_frac: float, device) -> torch.Tensor:
    """alpha / sqrt(L * d) per token, 0 on right padding; lengths spread over [(1 - pad_frac) T, T]."""
    gen = torch.Generator().manual_seed(0)
    low = max(1, math.ceil((1 - pad_frac) * t))
    lengths = torch.randint(low, t + 1, (b,), generator=gen)
    lengths[0] = t  # at least one full row, so T is the padded length
    pos = torch.arange(t)
    mask = pos[None, :] < lengths[:, None]
    scales = torch.where(mask, alpha / torch.sqrt(lengths[:, None].double() * d), 0.0)
    return scales.to(torch.float32).to(device)


def hf_hook_fn(alpha: float) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    module = torch.nn.Module()
    module.neftune_noise_alpha = alpha
    module.train()
    try:
        from transformers.integrations.neftune import neftune_post_forward_hook
    except ImportError:

        def inline(x: torch.Tensor) -> torch.Tensor:
            mag = alpha / math.sqrt(x.size(1) * x.size(2))
            return x + torch.zeros_like(x).uniform_(-mag, mag)

        return "hf_hook (inlined: transformers not importable)", inline
    return "hf_hook", lambda x: neftune_post_forward_hook(module, (None,), x)


class Timer:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.label = "cuda events" if self.cuda else "time.perf_counter (CPU)"

    def __call__(self, fn: Callable[[], object], warmup: int, iters: int) -> float:
        """Median milliseconds of one call."""
        for _ in range(warmup):
            fn()
        times = []
        if self.cuda:
            torch.cuda.synchronize()
            for _ in range(iters):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
        else:
            for _ in range(iters):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)


def peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated(device) - base
    del out
    return int(peak)


def check_fused(x: torch.Tensor, scales: torch.Tensor, distribution: str) -> str:
    """One cheap sanity check that the timed kernel produces noise of the right energy."""
    # On zeros the output is the noise itself: added to x ~ N(0, 1) in bf16, noise of scale ~1e-3 is
    # mostly rounded away (ulp 2^-7 near 1), which made this check report a mismatch that is not there.
    out = fused_add_noise(torch.zeros_like(x), scales, distribution=distribution, seed=1)
    keep = scales > 0
    eps2 = (out.float()[keep] / scales[keep][:, None].float()).pow(2).mean().item()
    ok = abs(eps2 / M2[distribution] - 1) < 0.05
    return f"{'ok' if ok else 'MISMATCH'} (E[eps^2] = {eps2:.4f}, expected {M2[distribution]:.4f})"


def bench_shape(shape, args, device, dtype, timer) -> dict:
    b, t, d = shape
    x = torch.randn(b, t, d, device=device, dtype=dtype)
    scales = per_token_scales(b, t, d, args.alpha, args.pad_frac, device)
    y = torch.empty_like(x)
    x_inplace = x.clone()
    hf_name, hf = hf_hook_fn(args.alpha)
    seed = iter(range(1, 1 << 62))

    methods: dict[str, Callable[[], object] | str] = {
        "copy": lambda: y.copy_(x),
        hf_name: lambda: hf(x),
        "torch_reference": lambda: reference_add_noise(x, scales, distribution=args.distribution),
    }
    if triton_available(x):
        methods["triton"] = lambda: fused_add_noise(
            x, scales, distribution=args.distribution, seed=next(seed)
        )
        methods["triton_inplace"] = lambda: fused_add_noise(
            x_inplace, scales, distribution=args.distribution, seed=next(seed), inplace=True
        )
    else:
        reason = "skipped: triton needs a CUDA tensor (or TRITON_INTERPRET=1)"
        methods["triton"] = methods["triton_inplace"] = reason

    nbytes = 2 * x.numel() * x.element_size()
    rows = []
    for name, fn in methods.items():
        if isinstance(fn, str):
            rows.append({"method": name, "skipped": fn})
            continue
        ms = timer(fn, args.warmup, args.iters)
        extra = peak_extra_bytes(fn, device)
        rows.append(
            {
                "method": name,
                "ms": ms,
                "gb_per_s": nbytes / (ms * 1e-3) / 1e9,
                "peak_extra_mib": None if extra is None else extra / 2**20,
                "peak_extra_x_tensor": None if extra is None else extra / (x.numel() * x.element_size()),
            }
        )
    by_name = {r["method"]: r for r in rows if "ms" in r}
    t_copy, t_hf = by_name["copy"]["ms"], by_name[hf_name]["ms"]
    for r in rows:
        if "ms" in r:
            r["speedup_vs_hf"] = t_hf / r["ms"]
            r["x_copy_time"] = r["ms"] / t_copy
    result = {"shape": [b, t, d], "numel": x.numel(), "tensor_mib": x.numel() * x.element_size() / 2**20}
    if "triton" in by_name:
        result["fused_check"] = check_fused(x, scales, args.distribution)
    result["rows"] = rows
    return result


def print_table(result: dict, dtype_name: str, timer_label: str) -> None:
    b, t, d = result["shape"]
    print(f"\nshape {b}x{t}x{d} {dtype_name} ({result['tensor_mib']:.1f} MiB), timer: {timer_label}")
    if "fused_check" in result:
        print(f"  fused kernel sanity check: {result['fused_check']}")
    header = f"  {'method':<34}{'ms':>10}{'GB/s':>9}{'vs hf (x faster)':>18}{'x copy time':>13}{'peak extra MiB':>16}"
    print(header)
    for r in result["rows"]:
        if "skipped" in r:
            print(f"  {r['method']:<34}{r['skipped']}")
            continue
        mem = "-" if r["peak_extra_mib"] is None else f"{r['peak_extra_mib']:.1f}"
        print(
            f"  {r['method']:<34}{r['ms']:>10.4f}{r['gb_per_s']:>9.2f}"
            f"{r['speedup_vs_hf']:>18.2f}{r['x_copy_time']:>13.2f}{mem:>16}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shapes", type=parse_shapes, default=None, help=f"e.g. {GPU_SHAPES}")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--distribution", choices=sorted(M2), default="uniform")
    p.add_argument("--alpha", type=float, default=5.0)
    p.add_argument(
        "--pad-frac", type=float, default=0.25, help="max fraction of each sequence that is padding"
    )
    p.add_argument("--warmup", type=int, default=None, help="default 10 on GPU, 1 on CPU")
    p.add_argument("--iters", type=int, default=None, help="default 100 on GPU, 5 on CPU")
    p.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 gives steadier CPU timings on a busy box)",
    )
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available")
    gpu = device.type == "cuda"
    if args.shapes is None:
        args.shapes = parse_shapes(GPU_SHAPES if gpu else CPU_SHAPES)
    args.warmup = args.warmup if args.warmup is not None else (10 if gpu else 1)
    args.iters = args.iters if args.iters is not None else (100 if gpu else 5)
    dtype = DTYPES[args.dtype]
    timer = Timer(device)

    info = machine_info(device)
    print(f"torch {info['torch']}, triton {info['triton']}, transformers {info['transformers']}")
    print(
        f"device {device}{' (' + info['gpu'] + ')' if info['gpu'] else ''}; warmup {args.warmup}, iters {args.iters}"
    )
    if not gpu and info["triton_interpret"] == "1":
        print(
            "NOTE: TRITON_INTERPRET=1: Triton rows run in the Python interpreter; their timings are meaningless"
        )

    results = []
    for shape in args.shapes:
        res = bench_shape(shape, args, device, dtype, timer)
        print_table(res, args.dtype, timer.label)
        results.append(res)

    if args.out is not None:
        payload = {
            "machine": info,
            "timer": timer.label,
            "settings": {
                "dtype": args.dtype,
                "distribution": args.distribution,
                "alpha": args.alpha,
                "pad_frac": args.pad_frac,
                "warmup": args.warmup,
                "iters": args.iters,
            },
            "results": results,
        }
        write_json_atomic(args.out, payload)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
