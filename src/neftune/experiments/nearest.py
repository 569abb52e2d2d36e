"""Exact nearest vocabulary rows of noisy token embeddings, in chunks (for ``neftune analyze``).

A noisy query ``y = x_t + n`` can only be nearer (L2) to a row ``w`` than to ``x_t`` itself if
``||x_t - w|| < 2 ||n||`` (triangle inequality); for cosine, if the angle between ``x_t`` and
``w`` is below twice the angle between ``x_t`` and ``y``. :func:`search_neighbours` scores each
token's queries against those candidate rows only and sends tokens whose candidates are most
of the vocabulary to :func:`nearest_rows`, a plain chunked float32 scan. The tests and the
benchmark below check that its indices equal that scan's.

Why not the plain scan alone: ``benchmarks/bench_nearest.py`` (SmolLM2-135M's input
embedding, 49152 x 576, and ``builtin:quick`` token ids; one CPU thread) measured the pruned
search 4.1x faster than the scan in CPU time on 3262 rows at alphas 5 and 15, and 2.1x on
8918 rows at alphas 5, 15 and 40 (large alphas leave more rows possible), with the same
indices. A full scan multiplying in bfloat16 (rescoring in float32 every row the rounding
bound could not rule out) was measured and dropped: on that CPU (AVX512-BF16, no AMX)
bfloat16 products ran at 0.55-0.67x the float32 speed, the screened scan took 1.4x as long,
and inside the pruned search it changed nothing (1.48 s vs 1.51 s), as few tokens reach the
full scan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..finetune.progress import Progress


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


#: Unit roundoff of float32: rounding moves x by at most u|x|.
_U32 = 2.0**-24


def dot_error_bound(dim: int) -> float:
    """kappa with ``|computed q.w - q.w| <= kappa ||q|| ||w||`` for a ``dim``-long float32 product.

    The classical bound gamma_d = d u / (1 - d u) of a float32 sum (Higham Thm 3.1) plus
    4u, doubled as a margin for kernels that add in another order.
    """
    gamma = dim * _U32 / (1 - dim * _U32)
    return 2 * (gamma + 4 * _U32)


def nearest_rows(
    queries: torch.Tensor, table: torch.Tensor, *, chunk_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest row of ``table`` (V, d) for each query (N, d), by L2 and by cosine.

    Returns ``(l2_index, cos_index)``, each (N,) int64: the float32 argmin of
    ``||w||^2 - 2 q.w`` and argmax of ``q.w / ||w||`` (zero rows score 0). One matrix
    product per ``chunk_size`` queries serves both.
    """
    table = table.float()
    sq = table.pow(2).sum(1)
    inv_norms = 1.0 / sq.sqrt().clamp_min(1e-30)
    l2_out = torch.empty(queries.shape[0], dtype=torch.long)
    cos_out = torch.empty(queries.shape[0], dtype=torch.long)
    for start in range(0, queries.shape[0], chunk_size):
        q = queries[start : start + chunk_size].float()
        stop = start + q.shape[0]
        dots = q @ table.T
        # ||q - w||^2 = ||q||^2 + ||w||^2 - 2 q.w; ||q||^2 is the same for every row.
        l2_out[start:stop] = torch.add(sq, dots, alpha=-2).argmin(1)
        cos_out[start:stop] = dots.mul_(-inv_norms).argmin(1)
    return l2_out, cos_out


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
    vocabulary they join a chunked full scan (:func:`nearest_rows`), since gathering rows
    would then cost more than it saves. ``progress("nearest", tokens
    done, distinct tokens)`` after each chunk.
    """
    table = table.float()
    vocab, dim = table.shape
    sq = table.double().pow(2).sum(1)
    norms = sq.sqrt()
    sq32, inv_norms = sq.float(), (1.0 / norms.clamp_min(1e-30)).float()
    # Float32 rounding bounds: squared distances by the expansion, and cosines.
    gamma = dot_error_bound(dim)
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
            # Cost model, in row products: gathering a candidate row ~ 20, scoring it k; a
            # full scan k * V.
            pruned = n_cand * (20 + k) < k * vocab
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
            out[a][0][pos], out[a][1][pos] = nearest_rows(q[pos], table)
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
