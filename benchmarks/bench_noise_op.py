#!/usr/bin/env python
"""Benchmark the NEFTune noise op: transformers' hook vs our torch path vs the fused Triton kernels.

For each shape (B x T x d) it times, side by side on the same input (per-token scales
alpha / sqrt(L * d), right padding, lengths spread over [(1 - pad_frac) T, T]):

  copy                   y.copy_(x): one read + one write of the tensor, the bandwidth floor
  hf_hook                transformers' neftune_post_forward_hook (x + zeros_like(x).uniform_(-m, m),
                         one magnitude for the whole padded batch); inlined if transformers is missing
  torch_path             the torch backend's op with per-token scales given (draw eps, one addcmul)
  torch_path_one_scale   the torch backend with no mask: one scale, drawn already scaled, one add
                         (the same work as the hook, less its zero fill)
  torch_path_with_mask   the torch backend from the mask, as the hook runs it per batch:
                         token_scales (small kernels) + the op
  triton                 the fused kernel, per-token scales given, out of place
  triton_inplace         the same, in place
  triton_with_mask       the fused path from the mask: the scan kernel + the noise kernel
  triton_v1              the first fused kernel (one Philox call per element; benchmarks/_kernel_v1.py)
  triton_no_rng          control: the current kernel's loads, stores and scale math without random
                         numbers (the floor for this kernel's structure)

Timing: each measurement is ``--calls`` (20) back-to-back calls between two CUDA events (or
time.perf_counter on the CPU), divided by the number of calls; every round times each method once,
in an order rotated by one each round, for ``--rounds`` rounds (default 15 on GPU), so drift hits
all methods alike. Reported per method: the median over rounds with a distribution-free 95%
interval (order statistics), and its ratio to transformers' hook as the median of the per-round
ratios (same round: paired) with its 95% interval. "GB/s" is 2 * numel * itemsize / time (one read
and one write), whatever extra traffic a method really does. On CUDA the extra peak memory of one
call is reported too.

The Triton rows need a CUDA device (or TRITON_INTERPRET=1 on the CPU: the interpreter is orders
of magnitude slower and its timings say nothing about the kernel).

    python benchmarks/bench_noise_op.py                        # GPU, default shapes
    python benchmarks/bench_noise_op.py --device cpu --shapes 4x512x1024 --dtype fp32 --threads 1
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import DTYPES, machine_info, median_ci  # also puts this checkout's src/ on the path

from neftune.finetune.io import write_json_atomic
from neftune.kernels import fused_add_noise, kernel_scales, reference_add_noise, triton_available
from neftune.kernels.reference import torch_add_noise
from neftune.kernels.scales import scale_value
from neftune.noise import noised

GPU_SHAPES = "8x2048x4096,4x4096x8192,1x8192x16384,16x512x2048"
CPU_SHAPES = "4x512x1024"
M2 = {"uniform": 1 / 3, "gaussian": 1.0, "symmetric": 1.0}
TRITON_ROWS = ("triton", "triton_inplace", "triton_with_mask", "triton_v1", "triton_no_rng")


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    shapes = []
    for item in text.split(","):
        parts = [int(p) for p in item.lower().strip().split("x")]
        if len(parts) != 3 or min(parts) <= 0:
            raise argparse.ArgumentTypeError(f"shape {item!r} is not BxTxd with positive sizes")
        shapes.append((parts[0], parts[1], parts[2]))
    return shapes


def padded_mask(b: int, t: int, pad_frac: float, device) -> torch.Tensor:
    """(B, T) 0/1 right-padding mask, lengths spread over [(1 - pad_frac) T, T], row 0 full."""
    gen = torch.Generator().manual_seed(0)
    low = max(1, math.ceil((1 - pad_frac) * t))
    lengths = torch.randint(low, t + 1, (b,), generator=gen)
    lengths[0] = t  # at least one full row, so T is the padded length
    return (torch.arange(t)[None, :] < lengths[:, None]).long().to(device)


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
    """Milliseconds per call of ``calls`` back-to-back calls: CUDA events, or perf_counter on the CPU."""

    def __init__(self, device: torch.device, calls: int):
        self.cuda = device.type == "cuda"
        self.calls = calls
        self.label = (
            f"{'cuda events' if self.cuda else 'time.perf_counter (CPU)'} around {calls} back-to-back calls"
        )

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(self.calls):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / self.calls
        t0 = time.perf_counter()
        for _ in range(self.calls):
            fn()
        return (time.perf_counter() - t0) * 1e3 / self.calls


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


def methods_for(x: torch.Tensor, mask: torch.Tensor, args) -> dict[str, Callable[[], object] | str]:
    """Every timed method on this input (a string: why it is skipped here)."""
    from neftune.noise import token_scales

    dist, alpha = args.distribution, args.alpha
    scales = token_scales(x, alpha, attention_mask=mask)
    one_scale = scale_value(x.shape[1], x.shape[2], alpha)  # what the torch path uses with no mask
    y = torch.empty_like(x)
    x_inplace = x.clone()
    hf_name, hf = hf_hook_fn(alpha)
    seed = iter(range(1, 1 << 62))
    methods: dict[str, Callable[[], object] | str] = {
        "copy": lambda: y.copy_(x),
        hf_name: lambda: hf(x),
        "torch_path": lambda: reference_add_noise(x, scales, distribution=dist),
        "torch_path_one_scale": lambda: torch_add_noise(x, one_scale, distribution=dist, need_noise=False),
        "torch_path_with_mask": lambda: noised(
            x, alpha, backend="torch", distribution=dist, attention_mask=mask, need_noise=False
        ),
    }
    if not triton_available(x):
        reason = "skipped: triton needs a CUDA tensor (or TRITON_INTERPRET=1)"
        return methods | dict.fromkeys(TRITON_ROWS, reason)
    import _kernel_v1

    from neftune.kernels import _triton

    n_cols = x.shape[-1]
    x2, y2 = x.view(-1, n_cols), y.view(-1, n_cols)
    scales1 = scales.reshape(-1).contiguous()
    plan = kernel_scales(x, alpha, attention_mask=mask)

    def no_rng():
        _triton.launch(x2, y2, plan, "none", next(seed))

    methods |= {
        "triton": lambda: fused_add_noise(x, scales, distribution=dist, seed=next(seed)),
        "triton_inplace": lambda: fused_add_noise(
            x_inplace, scales, distribution=dist, seed=next(seed), inplace=True
        ),
        "triton_with_mask": lambda: fused_add_noise(
            x, kernel_scales(x, alpha, attention_mask=mask), distribution=dist, seed=next(seed)
        ),
        "triton_v1": lambda: _kernel_v1.launch(x2, y2, scales1, dist, next(seed)),
        "triton_no_rng": no_rng,
    }
    return methods


def bench_shape(shape, args, device, dtype, timer) -> dict:
    b, t, d = shape
    x = torch.randn(b, t, d, device=device, dtype=dtype)
    mask = padded_mask(b, t, args.pad_frac, device)
    methods = methods_for(x, mask, args)
    runnable = {k: v for k, v in methods.items() if not isinstance(v, str)}
    hf_name = next(k for k in methods if k.startswith("hf_hook"))
    for fn in runnable.values():  # warm up: JIT, allocator, RNG state
        for _ in range(args.warmup):
            fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    names = list(runnable)
    per_round: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            per_round[k].append(timer(runnable[k]))

    nbytes = 2 * x.numel() * x.element_size()
    copy_ms = statistics.median(per_round["copy"])
    rows = []
    for name, fn in methods.items():
        if isinstance(fn, str):
            rows.append({"method": name, "skipped": fn})
            continue
        times = per_round[name]
        ms = statistics.median(times)
        ratios = [h / m for h, m in zip(per_round[hf_name], times)]  # > 1: faster than the hook
        extra = peak_extra_bytes(fn, device)
        rows.append(
            {
                "method": name,
                "ms": ms,
                "ms_ci95": median_ci(times),
                "rounds": len(times),
                "gb_per_s": nbytes / (ms * 1e-3) / 1e9,
                "x_copy_time": ms / copy_ms,
                "speedup_vs_hf": statistics.median(ratios),
                "speedup_vs_hf_ci95": median_ci(ratios),
                "peak_extra_mib": None if extra is None else extra / 2**20,
                "peak_extra_x_tensor": None if extra is None else extra / (x.numel() * x.element_size()),
            }
        )
    result = {
        "shape": [b, t, d],
        "numel": x.numel(),
        "tensor_mib": x.numel() * x.element_size() / 2**20,
        "real_tokens": int(mask.sum()),
    }
    if "triton" in runnable:
        from neftune.noise import token_scales

        result["fused_check"] = check_fused(
            x, token_scales(x, args.alpha, attention_mask=mask), args.distribution
        )
    result["rows"] = rows
    return result


def _ci(ci) -> str:
    return "-" if ci is None else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def print_table(result: dict, dtype_name: str, timer_label: str) -> None:
    b, t, d = result["shape"]
    print(f"\nshape {b}x{t}x{d} {dtype_name} ({result['tensor_mib']:.1f} MiB), timer: {timer_label}")
    if "fused_check" in result:
        print(f"  fused kernel sanity check: {result['fused_check']}")
    print(
        f"  {'method':<24}{'ms (median)':>12} {'95% CI':<22}{'GB/s':>9}{'x copy':>10}"
        f"{'x faster than hook':>20} {'95% CI':<18}{'peak MiB':>9}"
    )
    for r in result["rows"]:
        if "skipped" in r:
            print(f"  {r['method']:<24}{r['skipped']}")
            continue
        mem = "-" if r["peak_extra_mib"] is None else f"{r['peak_extra_mib']:.1f}"
        print(
            f"  {r['method']:<24}{r['ms']:>12.4f} {_ci(r['ms_ci95']):<22}{r['gb_per_s']:>9.1f}{r['x_copy_time']:>10.2f}"
            f"{r['speedup_vs_hf']:>20.3f} {_ci(r['speedup_vs_hf_ci95']):<18}{mem:>9}"
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
    p.add_argument("--calls", type=int, default=20, help="back-to-back calls per timed measurement")
    p.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds (default 15 on GPU, 10 on CPU)"
    )
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed calls per method (default 5 on GPU, 1 on CPU)"
    )
    p.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1: steadier on a busy box)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available")
    gpu = device.type == "cuda"
    if args.shapes is None:
        args.shapes = parse_shapes(GPU_SHAPES if gpu else CPU_SHAPES)
    args.rounds = args.rounds if args.rounds is not None else (15 if gpu else 10)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    if args.rounds < 1 or args.calls < 1:
        p.error("--rounds and --calls must be at least 1")
    dtype = DTYPES[args.dtype]
    timer = Timer(device, args.calls)

    info = machine_info(device)
    print(f"torch {info['torch']}, triton {info['triton']}, transformers {info['transformers']}")
    print(
        f"device {device}{' (' + info['gpu'] + ')' if info['gpu'] else ''}; {args.rounds} rounds x "
        f"{args.calls} calls per method, methods interleaved; warmup {args.warmup}"
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
            "benchmark": "noise_op",
            "machine": info,
            "timer": timer.label,
            "settings": {
                "dtype": args.dtype,
                "distribution": args.distribution,
                "alpha": args.alpha,
                "pad_frac": args.pad_frac,
                "calls_per_measurement": args.calls,
                "rounds": args.rounds,
                "warmup": args.warmup,
                "intervals": "distribution-free 95% CI of the median over rounds (order statistics); "
                "speedup_vs_hf: median of per-round paired ratios hook_ms / method_ms",
            },
            "results": results,
        }
        write_json_atomic(args.out, payload)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
