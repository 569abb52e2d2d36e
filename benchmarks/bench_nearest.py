#!/usr/bin/env python
"""Time `neftune analyze`'s nearest-token search against a plain chunked float32 scan.

On one set of noisy token embeddings (a model's real input embedding and real token ids when
the model loads, else a random table of the same shape) it runs, alternately, ``--repeats``
times each:

  current   neftune.experiments.nearest.search_neighbours: triangle-inequality pruning, the
            tokens it cannot prune sent to a full scan
  plain     the clean facts (search_neighbours with no queries) plus, per alpha, a chunked
            float32 scan of every query against every row (nearest_rows: one matmul per chunk,
            argmin of ||w||^2 - 2 q.w and argmax of q.w / ||w||)

and checks that both give the same indices (rows that are exact copies may swap). Times
are CPU seconds of this process (``time.process_time``, minimum over repeats), which a busy
machine inflates less than wall time; wall seconds are reported too.

    OMP_NUM_THREADS=1 python benchmarks/bench_nearest.py                  # SmolLM2-135M, 40 sequences
    python benchmarks/bench_nearest.py --random --sequences 4 --repeats 1  # no model needed
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import machine_info  # also puts this checkout's src/ on the path

from neftune.experiments import nearest
from neftune.experiments.embedding_noise import load_embedding_table, load_sequences, noisy_tokens


def load_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, list[list[int]], str]:
    """The embedding table, token-id sequences, and a line saying where they came from."""
    if not args.random:
        try:
            table, _, tokenizer = load_embedding_table(args.model)
            sequences, _ = load_sequences(
                tokenizer, args.data, n_sequences=args.sequences, seed=0, max_length=args.max_length
            )
            return table, sequences, f"{args.model} input embedding, {args.data} token ids"
        except Exception as exc:  # no cached model and no network: fall back, and say so
            print(f"could not load {args.model} ({type(exc).__name__}: {exc}); using a random table")
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(49152, 576, generator=gen) * 0.05
    lengths = torch.randint(args.max_length // 4, args.max_length + 1, (args.sequences,), generator=gen)
    # Zipf-like token ids: text reuses frequent tokens, which the pruned search groups.
    weights = 1.0 / torch.arange(1, table.shape[0] + 1, dtype=torch.float64)
    sequences = [torch.multinomial(weights, int(n), True, generator=gen).tolist() for n in lengths]
    return table, sequences, "random N(0, 0.05^2) table of SmolLM2-135M's shape, Zipf token ids"


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def plain_search(table: torch.Tensor, token_ids: torch.Tensor, queries: list[torch.Tensor]):
    clean, _ = nearest.search_neighbours(table, token_ids, [])
    return clean, [nearest.nearest_rows(q, table) for q in queries]


def mismatches(table: torch.Tensor, got, ref) -> int:
    """Query rows whose (L2 or cosine) nearest row differs from ``ref``'s, exact row copies aside."""
    bad = 0
    for (g_l2, g_cos), (r_l2, r_cos) in zip(got, ref):
        for g, r in ((g_l2, r_l2), (g_cos, r_cos)):
            bad += int((~((g == r) | (table[g] == table[r]).all(1))).sum())
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", default="builtin:quick")
    p.add_argument("--random", action="store_true", help="a random table instead of the model's")
    p.add_argument("--sequences", type=int, default=40)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--alphas", default="5,15")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    table, sequences, source = load_inputs(args)
    table = table.detach().float().cpu()
    alphas = [float(a) for a in args.alphas.split(",")]
    draws = [noisy_tokens(table, sequences, a, generator=torch.Generator().manual_seed(0)) for a in alphas]
    token_ids, queries = draws[0].token_ids, [d.noisy for d in draws]
    print(
        f"{source}: table {tuple(table.shape)}, {token_ids.numel()} query rows x {len(alphas)} alphas "
        f"({torch.unique(token_ids).numel()} distinct tokens); torch threads {torch.get_num_threads()}"
    )
    variants = {
        "current": lambda: nearest.search_neighbours(table, token_ids, queries),
        "plain": lambda: plain_search(table, token_ids, queries),
    }
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    found = {}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            found[name], c, w = timed(fn)
            cpu[name].append(c)
            wall[name].append(w)
            print(f"  {name:8s} {c:8.2f} s CPU  {w:8.2f} s wall")
    ref = found["plain"][1]
    result = {
        "benchmark": "nearest",
        "machine": machine_info("cpu"),
        "settings": {
            "source": source,
            "table": list(table.shape),
            "query_rows": token_ids.numel(),
            "alphas": alphas,
        },
        "cpu_s": {k: min(v) for k, v in cpu.items()},
        "wall_s": {k: min(v) for k, v in wall.items()},
        "mismatches_vs_plain": mismatches(table, found["current"][1], ref),
    }
    best = result["cpu_s"]
    print(
        f"plain / current: {best['plain'] / best['current']:.2f}x CPU time; "
        f"index mismatches: {result['mismatches_vs_plain']}"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
