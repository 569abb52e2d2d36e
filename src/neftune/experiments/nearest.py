"""Exact nearest vocabulary rows of noisy token embeddings, in chunks (for ``neftune analyze``).

A noisy query ``y = x_t + n`` can only be nearer (L2) to a row ``w`` than to ``x_t`` itself if
``||x_t - w|| < 2 ||n||`` (triangle inequality); for cosine, if the angle between ``x_t`` and
``w`` is below twice the angle between ``x_t`` and ``y``. :func:`search_neighbours` scores each
token's queries against those candidate rows only and sends tokens whose candidates are most
of the vocabulary to :func:`nearest_rows`, a chunked full scan that multiplies in bfloat16
where the CPU does that faster and rescores in float32 every row the rounding bound cannot
rule out. Results equal a plain float32 scan.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..progress import Progress


def unit_angle(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Angle in radians between rows of ``a`` and ``b`` (broadcast), accurate near 0 and pi.

    Uses ``2 atan2(|â - b̂|, |â + b̂|)`` on unit vectors in ``dtype`` (``acos`` of a cosine
    loses half the digits near 0), so the error is a few units of ``dtype``'s precision.
    A zero vector is at pi/2 from everything.
    """
    a = a.to(dtype)
    b = b.to(dtype)
    na = a.norm(dim=-1, keepdim=True)
    nb = b.norm(dim=-1, keepdim=True)
    ua = a / na.clamp_min(1e-300)
    ub = b / nb.clamp_min(1e-300)
    angle = 2 * torch.atan2((ua - ub).norm(dim=-1), (ua + ub).norm(dim=-1))
    zero = (na.squeeze(-1) == 0) | (nb.squeeze(-1) == 0)
    return torch.where(zero, torch.full_like(angle, math.pi / 2), angle)


# --------------------------------------------------------------------------- nearest rows


#: Unit roundoff of float32 and bfloat16 (8-bit significand): rounding moves x by at most u|x|.
_U32 = 2.0**-24
_U_BF16 = 2.0**-8


def dot_error_bound(dim: int, screen_dtype: torch.dtype = torch.float32) -> float:
    """kappa with ``|computed q.w - q.w| <= kappa ||q|| ||w||`` for a ``dim``-long product.

    Inputs rounded to ``screen_dtype`` (relative error u each: 2u + u^2 per product), summed
    in float32 (classical bound gamma_d = d u32 / (1 - d u32), Higham Thm 3.1), the result
    rounded to ``screen_dtype`` (u again, since |q.w| <= ||q|| ||w||). Doubled as a margin
    for kernels that add in another order.
    """
    u = {torch.float32: 0.0, torch.bfloat16: _U_BF16}[screen_dtype]
    gamma = dim * _U32 / (1 - dim * _U32)
    return 2 * (3 * u + u * u + gamma * (1 + u) ** 3 + 4 * _U32)


@functools.lru_cache(maxsize=4)
def bf16_speedup(dim: int) -> float:
    """How many times faster this CPU multiplies bfloat16 than float32 ((256 x dim) @ (dim x 4096))."""
    a = torch.randn(256, dim, generator=torch.Generator().manual_seed(0))
    b = torch.randn(4096, dim, generator=torch.Generator().manual_seed(1))
    timings = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        x @ y.T  # warm-up
        t0 = time.perf_counter()
        for _ in range(3):
            x @ y.T
        timings[dtype] = time.perf_counter() - t0
    return timings[torch.float32] / max(timings[torch.bfloat16], 1e-9)


def resolve_screen_dtype(screen: str, dim: int) -> torch.dtype:
    """ "float32", "bfloat16", or "auto" (bfloat16 where this CPU multiplies it 1.5x faster)."""
    if screen == "auto":
        return torch.bfloat16 if bf16_speedup(dim) > 1.5 else torch.float32
    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if screen not in choices:
        raise ValueError(f"screen must be 'auto', 'float32' or 'bfloat16', got {screen!r}")
    return choices[screen]


def nearest_rows(
    queries: torch.Tensor, table: torch.Tensor, *, chunk_size: int = 256, screen: str = "float32"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest row of ``table`` (V, d) for each query (N, d), by L2 and by cosine.

    Returns ``(l2_index, cos_index)``, each (N,) int64: the float32 argmin of
    ``||w||^2 - 2 q.w`` and argmax of ``q.w / ||w||`` (zero rows score 0). One matrix
    product per ``chunk_size`` queries serves both. With ``screen="bfloat16"`` (or "auto"),
    the product runs in bfloat16 and every row that the rounding bound
    (:func:`dot_error_bound`) cannot rule out is rescored in float32, so the answer is the
    same; only the speed differs (bfloat16 is ~4x faster on CPUs with AVX512-BF16).
    """
    table = table.float()
    sq = table.pow(2).sum(1)
    norms = sq.sqrt()
    inv_norms = 1.0 / norms.clamp_min(1e-30)
    dtype = resolve_screen_dtype(screen, table.shape[1])
    screened = table.to(dtype) if dtype != torch.float32 else table
    kappa = dot_error_bound(table.shape[1], dtype)
    max_norm = float(norms.max())
    l2_out = torch.empty(queries.shape[0], dtype=torch.long)
    cos_out = torch.empty(queries.shape[0], dtype=torch.long)
    for start in range(0, queries.shape[0], chunk_size):
        q = queries[start : start + chunk_size].float()
        stop = start + q.shape[0]
        dots = (q.to(dtype) @ screened.T).float()
        # ||q - w||^2 = ||q||^2 + ||w||^2 - 2 q.w; ||q||^2 is the same for every row.
        l2_score = torch.add(sq, dots, alpha=-2)
        neg_cos = dots.mul_(-inv_norms)  # lower is better, like l2_score
        if dtype == torch.float32:
            l2_out[start:stop] = l2_score.argmin(1)
            cos_out[start:stop] = neg_cos.argmin(1)
            continue
        # Each screened score is within err of its float32 value (err uses the largest row
        # norm), so only rows within 2 err of the best screened score can be the best.
        err = kappa * q.norm(dim=1, keepdim=True)
        l2_out[start:stop] = _best_within(q, table, l2_score, 4 * max_norm * err, lambda d, v: sq[v] - 2 * d)
        cos_out[start:stop] = _best_within(q, table, neg_cos, 2 * err, lambda d, v: -d * inv_norms[v])
    return l2_out, cos_out


def _best_within(
    q: torch.Tensor,
    table: torch.Tensor,
    score: torch.Tensor,
    window: torch.Tensor,
    exact_score,
    top: int = 16,
) -> torch.Tensor:
    """Lowest exact score per query among rows whose screened ``score`` (Q, V) is within
    ``window`` (Q, 1) of the row minimum; ties go to the lowest id, as with argmin.

    The candidates come from a top-``top`` selection; rows whose window holds more than
    that fall back to a full comparison.
    """
    vals, idx = torch.topk(score, min(top, score.shape[1]), dim=1, largest=False)
    within = vals <= vals[:, :1] + window
    qi, slot = within.nonzero(as_tuple=True)
    vi = idx[qi, slot]
    overflow = within[:, -1].nonzero().squeeze(1)
    if overflow.numel():
        extra_q, extra_v = (score[overflow] <= vals[overflow, :1] + window[overflow]).nonzero(as_tuple=True)
        keep = ~torch.isin(qi, overflow)
        qi = torch.cat([qi[keep], overflow[extra_q]])
        vi = torch.cat([vi[keep], extra_v])
    exact = exact_score((q[qi] * table[vi]).sum(1), vi)
    best = torch.full((q.shape[0],), math.inf).scatter_reduce_(0, qi, exact, reduce="amin")
    winner = exact == best[qi]
    return torch.full((q.shape[0],), table.shape[0]).scatter_reduce_(0, qi[winner], vi[winner], reduce="amin")


@dataclass
class CleanNeighbours:
    """Clean-token facts for each distinct token id of the data, all (U,).

    ``token_ids``: sorted distinct ids. ``nearest_l2`` / ``nearest_cos``: the row nearest
    to the clean embedding: the token itself, or the lowest id among rows at exactly zero
    distance (angle) from it, as an argmin would pick. ``gap_l2``: distance to the nearest
    *other* row; ``gap_angle``: angle (radians) to the nearest other row (both float64,
    exact). A noise vector shorter than ``gap_l2 / 2`` cannot change the L2 nearest row.
    """

    token_ids: torch.Tensor
    nearest_l2: torch.Tensor
    nearest_cos: torch.Tensor
    gap_l2: torch.Tensor
    gap_angle: torch.Tensor


def _refine_gaps(
    table: torch.Tensor, ids: torch.Tensor, near: torch.Tensor, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (float64) gap and clean nearest row for ``ids`` from candidate mask ``near`` (c, V).

    ``near`` must exclude each token itself and include every row that could be its
    nearest other row.
    """
    ri, vi = near.nonzero(as_tuple=True)
    x, w = table[ids[ri]].double(), table[vi].double()
    exact = (x - w).norm(dim=1) if metric == "l2" else unit_angle(x, w)
    gap = torch.full((ids.numel(),), math.inf, dtype=torch.float64)
    gap.scatter_reduce_(0, ri, exact, reduce="amin")
    # A row at exactly zero distance / angle with a lower id wins an argmin tie.
    tie = (exact == 0) & (vi < ids[ri])
    nearest = ids.clone()
    nearest.scatter_reduce_(0, ri[tie], vi[tie], reduce="amin")
    return gap, nearest


def search_neighbours(
    table: torch.Tensor,
    token_ids: torch.Tensor,
    queries: Sequence[torch.Tensor],
    *,
    chunk_tokens: int = 128,
    screen: str = "auto",
    progress: Progress | None = None,
) -> tuple[CleanNeighbours, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Exact nearest rows of ``table`` for noisy copies of clean token rows.

    ``token_ids`` (N,): the clean token of each query row; ``queries``: one (N, d) tensor
    per noise setting, row ``i`` a noisy version of ``table[token_ids[i]]``. Returns the
    clean facts and, per query tensor, ``(l2_index, cos_index)`` (N,) int64, equal to
    :func:`nearest_rows` on the same queries.

    Clean distances are computed ``chunk_tokens`` distinct tokens at a time, in float32
    with a rounding margin. Each token's queries are scored only against the rows the
    triangle inequality leaves possible (module docstring); when that is most of the
    vocabulary they join a chunked full scan (:func:`nearest_rows` with ``screen``),
    since gathering rows would then cost more than it saves. ``progress("nearest", tokens
    done, distinct tokens)`` after each chunk.
    """
    table = table.float()
    vocab, dim = table.shape
    sq = table.double().pow(2).sum(1)
    norms = sq.sqrt()
    sq32, inv_norms = sq.float(), (1.0 / norms.clamp_min(1e-30)).float()
    # Float32 rounding bounds: squared distances by the expansion, and cosines.
    gamma = dot_error_bound(dim)
    speedup = bf16_speedup(dim) if resolve_screen_dtype(screen, dim) == torch.bfloat16 else 1.0
    max_sq = float(sq.max())

    uniq, inverse = torch.unique(token_ids, return_inverse=True)
    n_uniq = uniq.numel()
    order = torch.argsort(inverse, stable=True)
    counts = torch.bincount(inverse, minlength=n_uniq)
    starts = torch.cumsum(counts, 0) - counts
    clean = table[token_ids]
    # Per query setting and distinct token: squared radius (2 max ||n||)^2 and cos(2 max angle).
    radius2, min_cos = [], []
    for q in queries:
        # float32 is accurate to ~1e-7 here, well inside the slack added below.
        rho = (q.float() - clean).norm(dim=1).double()
        theta = unit_angle(q, clean, torch.float32).double()
        r = torch.zeros(n_uniq, dtype=torch.float64).scatter_reduce_(0, inverse, rho, reduce="amax")
        t = torch.zeros(n_uniq, dtype=torch.float64).scatter_reduce_(0, inverse, theta, reduce="amax")
        # The small slack keeps the float32 comparisons below on the safe side.
        radius2.append((2 * r) ** 2 * (1 + 1e-5) + 1e-12)
        min_cos.append(
            torch.where(2 * t < math.pi, torch.cos(2 * t) - 1e-6, torch.tensor(-2.0, dtype=torch.float64))
        )

    fields = {k: [] for k in ("nearest_l2", "nearest_cos", "gap_l2", "gap_angle")}
    n_rows = token_ids.numel()
    out = [(torch.empty(n_rows, dtype=torch.long), torch.empty(n_rows, dtype=torch.long)) for _ in queries]
    full_scan: list[list[torch.Tensor]] = [[] for _ in queries]

    for c0 in range(0, n_uniq, chunk_tokens):
        ids = uniq[c0 : c0 + chunk_tokens]
        u_ids = torch.arange(c0, c0 + ids.numel())
        rows = torch.arange(ids.numel())
        dots = table[ids] @ table.T
        # Lower bounds on squared distances, upper bounds on cosines, from float32 rounding.
        err2 = (gamma * (sq[ids] + max_sq)).float()[:, None]
        dist2_low = (sq32[ids, None] + sq32[None, :] - 2 * dots).sub_(err2)
        cos_high = (dots * inv_norms[ids, None]).mul_(inv_norms[None, :]).add_(2 * gamma)

        dist2_low[rows, ids] = math.inf
        near = dist2_low <= dist2_low.min(1, keepdim=True).values + 2 * err2
        gap_l2, nearest_l2 = _refine_gaps(table, ids, near, "l2")
        dist2_low[rows, ids] = -math.inf
        cos_high[rows, ids] = -math.inf
        near = cos_high >= cos_high.max(1, keepdim=True).values - 4 * gamma
        gap_angle, nearest_cos = _refine_gaps(table, ids, near, "angle")
        cos_high[rows, ids] = math.inf
        for key, value in zip(fields, (nearest_l2, nearest_cos, gap_l2, gap_angle)):
            fields[key].append(value)

        k = counts[u_ids]
        for a, q in enumerate(queries):
            possible = dist2_low < radius2[a][u_ids, None].float()
            possible |= cos_high > min_cos[a][u_ids, None].float()
            n_cand = possible.sum(1)
            # Cost model, in float32 row products: gathering a candidate row ~ 20, scoring it
            # k; a full scan k * V, made `speedup` times cheaper by screening.
            pruned = n_cand * (20 + speedup * k) < k * vocab
            for j in (~pruned).nonzero().squeeze(1).tolist():
                u = c0 + j
                full_scan[a].append(order[starts[u] : starts[u] + counts[u]])
            kept = possible[pruned]
            pieces = torch.split(kept.nonzero()[:, 1], n_cand[pruned].tolist())
            for j, cand in zip(pruned.nonzero().squeeze(1).tolist(), pieces):
                u = c0 + j
                pos = order[starts[u] : starts[u] + counts[u]]
                dq = q[pos] @ table[cand].T
                out[a][0][pos] = cand[(sq32[cand] - 2 * dq).argmin(1)]
                out[a][1][pos] = cand[(dq * inv_norms[cand]).argmax(1)]
        if progress is not None:
            progress("nearest", c0 + ids.numel(), n_uniq)

    for a, q in enumerate(queries):
        if full_scan[a]:
            pos = torch.cat(full_scan[a])
            out[a][0][pos], out[a][1][pos] = nearest_rows(q[pos], table, screen=screen)
    neighbours = CleanNeighbours(uniq, *(torch.cat(fields[k]) for k in fields))
    return neighbours, out


def changed_vector(table: torch.Tensor, a: torch.Tensor, b: torch.Tensor, differs) -> torch.Tensor:
    """(N,) bool: row ``a[i]`` of ``table`` is a different vector from row ``b[i]``.

    Equal ids are the same vector; other pairs go to ``differs(rows_a, rows_b)`` (float64
    (M, d) rows -> (M,) bool), e.g. a distance above a duplicate tolerance.
    """
    out = a != b
    idx = out.nonzero().squeeze(1)
    if idx.numel():
        out[idx] = differs(table[a[idx]].double(), table[b[idx]].double())
    return out
