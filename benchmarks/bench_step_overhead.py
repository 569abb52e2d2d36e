#!/usr/bin/env python
"""Training-step overhead of NEFTune: step time with noise off vs on, variants interleaved.

For each model (random weights, Llama-shaped, sdpa attention) one training step is
forward + backward + AdamW step on a (batch x seq) batch of random token ids. Variants:

  off          no noise (the baseline)
  hf_hook      transformers' neftune_post_forward_hook on the input embedding, registered the
               way transformers' Trainer does (module.neftune_noise_alpha + register_forward_hook)
  ours_torch   neftune.activate(model, alpha, backend="torch")   (the reference path)
  ours_fused   neftune.activate(model, alpha, backend="triton")  (fused kernel; needs CUDA, or
               TRITON_INTERPRET=1 on the CPU, where it runs interpreted and its time means nothing)

The variants are interleaved: every round runs ``--steps-per-round`` (default 3) consecutive
steps of each, in an order rotated by one each round (ABCD, BCDA, ...), so drift (clocks,
temperature, other load) hits them all alike. The first step of each variant in a round is
discarded (it pays for the switch: hooks attached, caches and allocator warm for the previous
variant); the round's value is the mean of the others. Each step is bracketed by device
synchronisations and timed with time.perf_counter. Reported per variant: median / mean /
quartiles / min of the per-round values and peak memory (CUDA), and for each noisy variant the
ratio of medians to "off", the overhead in percent, and the median of the per-round paired
differences with a distribution-free 95% confidence interval.

    # GPU (bf16): the ~1B model and the 135M model (SmolLM2 shape), batch 4 x 2048
    python benchmarks/bench_step_overhead.py --out results/step_overhead.json
    # CPU smoke check (tiny model, a few steps): tests the plumbing, not performance
    python benchmarks/bench_step_overhead.py --smoke --out /tmp/step_overhead.json
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from _common import DTYPES, MODEL_CONFIGS, build_llama, machine_info, median_ci, summarize, synchronize

import neftune
from neftune.finetune.io import write_json_atomic
from neftune.kernels import triton_available

VARIANTS = ("off", "hf_hook", "ours_torch", "ours_fused")


# ------------------------------------------------------------------------------------------ variants
@contextlib.contextmanager
def _off(model, alpha) -> Iterator[dict]:
    yield {}


@contextlib.contextmanager
def _hf_hook(model, alpha) -> Iterator[dict]:
    from transformers.integrations.neftune import neftune_post_forward_hook

    emb = model.get_input_embeddings()
    emb.neftune_noise_alpha = alpha
    handle = emb.register_forward_hook(neftune_post_forward_hook)
    try:
        yield {}
    finally:
        handle.remove()
        del emb.neftune_noise_alpha


def _ours(backend: str):
    @contextlib.contextmanager
    def attach(model, alpha) -> Iterator[dict]:
        handle = neftune.activate(model, alpha, backend=backend)
        info: dict = {}
        try:
            yield info
        finally:
            info["backend"] = handle.last_backend
            info["inplace"] = handle.last_inplace
            handle.remove()

    return attach


ATTACH: dict[str, Callable] = {
    "off": _off,
    "hf_hook": _hf_hook,
    "ours_torch": _ours("torch"),
    "ours_fused": _ours("triton"),
}


def variant_unavailable(name: str, device: torch.device) -> str | None:
    if name == "ours_fused" and not triton_available(torch.empty(0, device=device)):
        return "skipped: the fused kernel needs triton and a CUDA device (or TRITON_INTERPRET=1)"
    return None


# ------------------------------------------------------------------------------------------ one step
def make_batch(vocab: int, batch: int, seq: int, pad_frac: float, device: torch.device, seed: int = 0):
    """Random ids; rows right-padded to lengths spread over [(1 - pad_frac) seq, seq] (row 0 full)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, seq), generator=gen)
    low = max(1, round((1 - pad_frac) * seq))
    lengths = torch.randint(low, seq + 1, (batch,), generator=gen)
    lengths[0] = seq
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    ids = ids * mask
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def train_step(model, optimizer, batch) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()


def timed_step(model, optimizer, batch, device) -> tuple[float, int | None]:
    """(milliseconds, peak allocated bytes during the step on CUDA else None)."""
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    train_step(model, optimizer, batch)
    synchronize(device)
    ms = (time.perf_counter() - t0) * 1e3
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return ms, peak


def noise_is_on(model, batch) -> bool:
    """Whether the embedding output differs from the plain lookup in training mode (grad on)."""
    emb = model.get_input_embeddings()
    out = emb(batch["input_ids"])
    clean = torch.nn.functional.embedding(batch["input_ids"], emb.weight)
    return not torch.equal(out.detach(), clean.detach())


# ------------------------------------------------------------------------------------------ one model
def bench_model(name: str, args, device: torch.device, dtype: torch.dtype) -> dict:
    model = build_llama(name, dtype, device)
    model.config.use_cache = False
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused)
    batch = make_batch(model.config.vocab_size, args.batch, args.seq, args.pad_frac, device)
    real_tokens = int(batch["attention_mask"].sum())

    variants = list(args.variants)
    skipped = {v: r for v in variants if (r := variant_unavailable(v, device))}
    variants = [v for v in variants if v not in skipped]
    checks: dict[str, bool] = {}
    for v in variants:  # warm up each variant (Triton JIT, allocator, cuBLAS heuristics)
        with ATTACH[v](model, args.alpha):
            checks[v] = noise_is_on(model, batch)
            for _ in range(args.warmup):
                train_step(model, optimizer, batch)
    for v, on in checks.items():
        if on != (v != "off"):
            raise RuntimeError(f"variant {v}: noise is {'on' if on else 'off'}, expected the opposite")

    times: dict[str, list[float]] = {v: [] for v in variants}  # one value per round
    steps: dict[str, list[float]] = {v: [] for v in variants}  # every kept step
    peaks: dict[str, list[int]] = {v: [] for v in variants}
    infos: dict[str, dict] = {v: {} for v in variants}
    for r in range(args.rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for v in order:
            kept = []
            with ATTACH[v](model, args.alpha) as info:
                for i in range(args.steps_per_round):
                    ms, peak = timed_step(model, optimizer, batch, device)
                    if i == 0:
                        continue  # the first step after switching variants is discarded
                    kept.append(ms)
                    if peak is not None:
                        peaks[v].append(peak)
            times[v].append(statistics.fmean(kept))
            steps[v].extend(kept)
            infos[v].update(info)

    result_variants: dict[str, dict] = {}
    for v in variants:
        entry = summarize(times[v])
        entry["steps_kept"] = len(steps[v])
        entry["peak_mem_mib"] = max(peaks[v]) / 2**20 if peaks[v] else None
        entry.update(infos[v])
        if v == "ours_fused" and device.type == "cpu":
            entry["note"] = "Triton interpreter on CPU: this time says nothing about the kernel"
        result_variants[v] = entry
    for v, reason in skipped.items():
        result_variants[v] = {"skipped": reason}

    overhead: dict[str, dict] = {}
    if "off" in times:
        base = result_variants["off"]["median_ms"]
        for v in variants:
            if v == "off":
                continue
            diffs = [a - b for a, b in zip(times[v], times["off"])]  # same round: paired
            ci = median_ci(diffs)
            paired = statistics.median(diffs)
            overhead[v] = {
                "ratio_of_medians": result_variants[v]["median_ms"] / base,
                "overhead_pct": (result_variants[v]["median_ms"] / base - 1) * 100,
                "paired_median_diff_ms": paired,
                "paired_overhead_pct": paired / base * 100,
                "paired_ci95_pct": None if ci is None else [c / base * 100 for c in ci],
                "pairs": len(diffs),
                "steps_per_round": args.steps_per_round,
            }
    return {
        "model": name,
        "config": MODEL_CONFIGS[name],
        "n_params": n_params,
        "batch": args.batch,
        "seq": args.seq,
        "tokens_per_step": args.batch * args.seq,
        "real_tokens_per_step": real_tokens,
        "variants": result_variants,
        "overhead": overhead,
    }


def print_result(res: dict) -> None:
    print(
        f"\n{res['model']}: {res['n_params'] / 1e6:.1f}M params, batch {res['batch']} x {res['seq']} "
        f"({res['real_tokens_per_step']} real tokens)"
    )
    print(f"  {'variant':<12}{'median ms':>11}{'p25':>9}{'p75':>9}{'n':>5}{'peak MiB':>10}  {'vs off':>18}")
    for v, e in res["variants"].items():
        if "skipped" in e:
            print(f"  {v:<12}{e['skipped']}")
            continue
        o = res["overhead"].get(v)
        rel = f"{o['overhead_pct']:+.2f}% (paired {o['paired_overhead_pct']:+.2f}%)" if o else ""
        mem = "-" if e["peak_mem_mib"] is None else f"{e['peak_mem_mib']:.0f}"
        extra = f"  [{e['backend']}{', in place' if e.get('inplace') else ''}]" if e.get("backend") else ""
        print(
            f"  {v:<12}{e['median_ms']:>11.2f}{e['p25_ms']:>9.2f}{e['p75_ms']:>9.2f}{e['n']:>5}{mem:>10}  {rel}{extra}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help=f"comma list of {sorted(MODEL_CONFIGS)} (default 1b,135m)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {VARIANTS}")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default bf16 on GPU, fp32 on CPU")
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default 4)")
    p.add_argument("--seq", type=int, default=None, help="tokens per sequence (default 2048)")
    p.add_argument("--pad-frac", type=float, default=0.0, help="max right-padding fraction per row")
    p.add_argument("--alpha", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 30)")
    p.add_argument(
        "--steps-per-round",
        type=int,
        default=3,
        help="consecutive steps of a variant per round, the first discarded (at least 2)",
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per variant (default 3)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--smoke", action="store_true", help="CPU plumbing check: tiny model, few steps")
    p.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    args = p.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    smoke = args.smoke
    device = torch.device(args.device or ("cpu" if smoke or not torch.cuda.is_available() else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available")
    args.models = (args.models or ("tiny" if smoke else "1b,135m")).split(",")
    for m in args.models:
        if m not in MODEL_CONFIGS:
            p.error(f"unknown model {m!r}; choose from {sorted(MODEL_CONFIGS)}")
    args.variants = args.variants.split(",")
    for v in args.variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}; choose from {VARIANTS}")
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    args.batch = args.batch or (2 if smoke else 4)
    args.seq = args.seq or (32 if smoke else 2048)
    args.rounds = args.rounds or (3 if smoke else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if smoke else 3)
    if args.steps_per_round < 2:
        p.error("--steps-per-round must be at least 2: the first step of each round is discarded")

    info = machine_info(device)
    print(
        f"torch {info['torch']}, transformers {info['transformers']}, triton {info['triton']}; device {device}"
    )
    if device.type == "cpu":
        print("NOTE: CPU run: a plumbing check, not a performance measurement")
    results = []
    for name in args.models:
        res = bench_model(name, args, device, DTYPES[args.dtype])
        print_result(res)
        results.append(res)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    if args.out is not None:
        payload = {
            "benchmark": "step_overhead",
            "smoke": smoke,
            "machine": info,
            "settings": {
                "dtype": args.dtype,
                "batch": args.batch,
                "seq": args.seq,
                "pad_frac": args.pad_frac,
                "alpha": args.alpha,
                "rounds": args.rounds,
                "steps_per_round": args.steps_per_round,
                "warmup": args.warmup,
                "variants": args.variants,
                "optimizer": "torch.optim.AdamW(lr=1e-5, fused on CUDA)",
                "timer": "time.perf_counter around one step, device synchronised before and after; per round "
                "and variant the mean of steps 2..steps_per_round (the first discarded)",
            },
            "results": results,
        }
        write_json_atomic(args.out, payload)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
