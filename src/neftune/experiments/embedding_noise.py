"""What NEFTune's noise does to a model's real token embeddings at realistic sequence lengths.

Everything works on a vocabulary *table* ``(V, d)``: the input-embedding module's forward
output for every token id. That is where NEFTune adds its noise, and it is not always the
weight: Gemma-style models multiply the looked-up rows by ``sqrt(d)`` inside the module, so
the weight alone would understate every norm. :func:`embedding_table` builds it.

Per alpha, tokens of real sequences get the noise of :func:`neftune.add_noise` (padded
batches with an attention mask, so each sequence is scaled by its own length ``L``) and we
measure, per token ``t`` with clean row ``x_t`` and noise ``n_t``:

- noise L2 ``||n_t||`` and the value the math predicts, ``E||n_t||^2 = alpha^2 Var(eps) / L``;
- cosine similarity of ``x_t`` and ``x_t + n_t``;
- signal-to-noise ratio ``||x_t|| / ||n_t||`` (also in dB: ``20 log10``);
- the nearest-token flip rate: how often the vocabulary row nearest to ``x_t + n_t`` (L2,
  and separately cosine) is a different vector from the row nearest to the clean ``x_t``.

Duplicate rows are handled explicitly: rows closer than ``dup_rtol`` times the median row
norm (or ``dup_rtol`` radians apart, for cosine) count as the same vector, so landing on a
duplicate is not a flip; the tokens of the data that have such a twin are reported as
*ambiguous when clean*, along with how many clean tokens' nearest row is not themselves.

The nearest-row search is exact and chunked. A noisy query ``y = x_t + n`` can only be
nearer (L2) to a row ``w`` than to ``x_t`` itself if ``||x_t - w|| < 2 ||n||`` (triangle
inequality); for cosine, if the angle between ``x_t`` and ``w`` is below twice the angle
between ``x_t`` and ``y``. So each token's queries are scored against those candidate rows
only, and tokens whose candidates are most of the vocabulary (large alphas) go to a
chunked float32 full scan (:mod:`.nearest`). Memory:
``n_tokens x d`` floats per alpha plus a few ``chunk x V`` score blocks.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..finetune.io import write_bytes_atomic, write_json_atomic
from ..finetune.progress import Progress
from ..finetune.provenance import environment
from ..noise import DISTRIBUTIONS, EPS_VARIANCE, add_noise, check_alpha, check_choice
from .nearest import changed_vector, search_neighbours, unit_angle

DEFAULT_ALPHAS = (0.0, 1.0, 5.0, 10.0, 15.0, 20.0, 30.0)
ANALYZE_JSON = "analyze.json"
ANALYZE_PNG = "analyze.png"


class AnalyzeError(ValueError):
    """Bad analyze/viz settings or inputs; the message names the argument and what to do."""


# --------------------------------------------------------------------------- sequences -> batches


def pad_batches(
    sequences: Sequence[Sequence[int]], batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Right-padded ``(ids, mask)`` batches, each ``(B, T)`` int64, ``T`` the longest in the batch.

    Padding ids are 0 and carry mask 0; sequences keep their order.
    """
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, : len(seq)] = 1
        yield ids, mask


@dataclass
class NoisyTokens:
    """The real (unpadded) tokens of a set of sequences, flattened in order.

    ``token_ids`` (N,) int64; ``lengths`` (N,) int64: the length ``L`` of each token's
    sequence; ``noisy`` (N, d) float32: ``table[token_ids]`` plus NEFTune noise.
    """

    token_ids: torch.Tensor
    lengths: torch.Tensor
    noisy: torch.Tensor


def noisy_tokens(
    table: torch.Tensor,
    sequences: Sequence[Sequence[int]],
    alpha: float,
    *,
    distribution: str = "uniform",
    generator: torch.Generator | None = None,
    batch_size: int = 32,
) -> NoisyTokens:
    """Embed ``sequences`` by looking up ``table`` and add noise with :func:`neftune.add_noise`.

    Batches are padded and passed with their attention mask, so the per-sequence scale
    ``alpha / sqrt(L * d)`` is the library's own and padding gets none (padding rows are
    then dropped). The same ``generator`` state gives the same ``eps`` draws for any alpha.
    """
    ids_out, len_out, noisy_out = [], [], []
    for ids, mask in pad_batches(sequences, batch_size):
        clean = table[ids]
        noisy = add_noise(clean, alpha, attention_mask=mask, distribution=distribution, generator=generator)
        keep = mask.bool()
        ids_out.append(ids[keep])
        len_out.append(mask.sum(1, keepdim=True).expand_as(mask)[keep])
        noisy_out.append(noisy[keep].float())
    return NoisyTokens(torch.cat(ids_out), torch.cat(len_out), torch.cat(noisy_out))


# --------------------------------------------------------------------------- per-token geometry


def token_geometry(clean: torch.Tensor, noisy: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-token ``noise_l2``, ``cosine`` (clean vs noisy) and ``snr`` = ||clean|| / ||noise||.

    ``clean``, ``noisy``: (N, d), computed in their dtype (at least float32); results are
    (N,) float64. ``snr`` is ``inf`` where the noise is exactly zero; ``cosine`` is 0 where
    either vector is zero.
    """
    dtype = torch.promote_types(clean.dtype, torch.float32)
    clean, noisy = clean.to(dtype), noisy.to(dtype)
    noise_l2 = (noisy - clean).norm(dim=1).double()
    clean_l2 = clean.norm(dim=1).double()
    # 1 - |u - v|^2 / 2 on unit vectors: exact 1 for identical rows, accurate close to 1.
    noisy_l2 = noisy.norm(dim=1, keepdim=True)
    unit_gap = (clean / clean.norm(dim=1, keepdim=True) - noisy / noisy_l2).norm(dim=1).double()
    cosine = torch.where((clean_l2 > 0) & (noisy_l2.squeeze(1) > 0), 1 - unit_gap**2 / 2, 0.0)
    snr = torch.where(
        noise_l2 > 0, clean_l2 / noise_l2.clamp_min(1e-300), torch.full_like(noise_l2, math.inf)
    )
    return {"noise_l2": noise_l2, "cosine": cosine, "snr": snr}


def expected_noise_sq(alpha: float, distribution: str, lengths: torch.Tensor) -> torch.Tensor:
    """``E||n_t||^2 = alpha^2 Var(eps) / L`` per token (float64, same shape as ``lengths``)."""
    return alpha**2 * EPS_VARIANCE[distribution] / lengths.double()


# --------------------------------------------------------------------------- the analysis


def _quantile(x: torch.Tensor, q: float) -> float:
    return float(torch.quantile(x.double(), q)) if x.numel() else math.nan


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _snr_db(ratio: float) -> float | None:
    return _finite_or_none(20 * math.log10(ratio)) if ratio > 0 else None


def flip_examples(clean_ids: torch.Tensor, new_ids: torch.Tensor, top: int = 5) -> list[list[int]]:
    """The ``top`` most frequent ``[clean token, new nearest token, count]`` flips, most common first."""
    if clean_ids.numel() == 0:
        return []
    pairs, counts = torch.unique(torch.stack([clean_ids, new_ids], 1), dim=0, return_counts=True)
    order = torch.argsort(counts, descending=True, stable=True)[:top]
    return [[int(pairs[i, 0]), int(pairs[i, 1]), int(counts[i])] for i in order]


def lengths_summary(sequences: Sequence[Sequence[int]]) -> dict[str, float]:
    """n, tokens, min / p5 / median / mean / p95 / max of the sequence lengths."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.float64)
    return {
        "n_sequences": len(sequences),
        "n_tokens": int(lengths.sum()),
        "min": int(lengths.min()),
        "p5": _quantile(lengths, 0.05),
        "median": _quantile(lengths, 0.5),
        "mean": float(lengths.mean()),
        "p95": _quantile(lengths, 0.95),
        "max": int(lengths.max()),
    }


def analyze_embeddings(
    table: torch.Tensor,
    sequences: Sequence[Sequence[int]],
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    *,
    distribution: str = "uniform",
    seed: int = 0,
    batch_size: int = 32,
    dup_rtol: float = 1e-3,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Noise statistics of real token embeddings, one entry per alpha.

    ``table`` (V, d): the embedding output for every token id. ``sequences``: token-id
    lists (each one sequence, its length is ``L``). Every alpha uses the same ``eps`` draws
    (one generator seeded with ``seed``, restarted per alpha), so curves across alphas
    differ only by the scale. Rows within ``dup_rtol * median row norm`` (L2) or
    ``dup_rtol`` radians (cosine) count as the same vector.

    Returns ``{"metrics": [per-alpha dict], "vocabulary": {...}, "lengths": {...}}``;
    per-alpha keys: ``alpha``, ``n_tokens``, ``noise_l2_mean``, ``noise_l2_rms``,
    ``noise_l2_expected_rms`` (sqrt of the mean of alpha^2 Var(eps)/L), ``cosine_mean``,
    ``cosine_p5``, ``snr_mean``, ``snr_median``, ``snr_db_median`` (None at alpha 0),
    ``flip_rate_l2``, ``flip_rate_cos``, ``n_flips_l2``, ``n_flips_cos``, and
    ``flip_possible_rate`` (share of tokens whose noise reaches half the distance to their
    nearest other row: only those can flip by L2) and ``flip_examples_l2`` (see
    :func:`flip_examples`).
    """
    if table.dim() != 2 or not table.is_floating_point():
        raise AnalyzeError(
            f"table must be a floating (vocab, dim) tensor, got {tuple(table.shape)} {table.dtype}"
        )
    check_choice(distribution, DISTRIBUTIONS, "distribution")
    alphas = [check_alpha(a, "alphas") for a in alphas]
    if not alphas:
        raise AnalyzeError("alphas is empty: give at least one, e.g. 0,5,10,15")
    sequences = [list(s) for s in sequences if len(s) > 0]
    if not sequences:
        raise AnalyzeError("sequences is empty: need at least one non-empty token-id sequence")
    vocab = table.shape[0]
    flat = [t for s in sequences for t in s]
    if min(flat) < 0 or max(flat) >= vocab:
        raise AnalyzeError(f"token ids must be in [0, {vocab}) for a table of {vocab} rows")
    if not dup_rtol >= 0:
        raise AnalyzeError(f"dup_rtol must be >= 0, got {dup_rtol}")
    table = table.detach().float().cpu()

    draws: list[NoisyTokens] = []
    for i, alpha in enumerate(alphas):
        gen = torch.Generator().manual_seed(seed)
        draws.append(
            noisy_tokens(
                table, sequences, alpha, distribution=distribution, generator=gen, batch_size=batch_size
            )
        )
        if progress is not None:
            progress("noise", i + 1, len(alphas))
    token_ids = draws[0].token_ids
    lengths = draws[0].lengths
    clean = table[token_ids]

    neighbours, nearest = search_neighbours(table, token_ids, [d.noisy for d in draws], progress=progress)
    row_norms = table.double().norm(dim=1)
    tol_l2 = dup_rtol * float(row_norms.median())
    tol_angle = dup_rtol
    slot = torch.searchsorted(neighbours.token_ids, token_ids)  # distinct-token index of each token
    clean_l2 = neighbours.nearest_l2[slot]
    clean_cos = neighbours.nearest_cos[slot]
    half_gap = neighbours.gap_l2[slot] / 2

    metrics = []
    for alpha, draw, (nn_l2, nn_cos) in zip(alphas, draws, nearest):
        geo = token_geometry(clean, draw.noisy)
        flips_l2 = changed_vector(table, nn_l2, clean_l2, lambda x, y: (x - y).norm(dim=1) > tol_l2)
        flips_cos = changed_vector(table, nn_cos, clean_cos, lambda x, y: unit_angle(x, y) > tol_angle)
        expected_rms = math.sqrt(float(expected_noise_sq(alpha, distribution, lengths).mean()))
        finite_snr = geo["snr"][torch.isfinite(geo["snr"])]
        snr_median = _quantile(finite_snr, 0.5) if finite_snr.numel() == geo["snr"].numel() else math.nan
        metrics.append(
            {
                "alpha": alpha,
                "n_tokens": int(token_ids.numel()),
                "noise_l2_mean": float(geo["noise_l2"].mean()),
                "noise_l2_rms": float(geo["noise_l2"].pow(2).mean().sqrt()),
                "noise_l2_expected_rms": expected_rms,
                "cosine_mean": float(geo["cosine"].mean()),
                "cosine_p5": _quantile(geo["cosine"], 0.05),
                "snr_mean": _finite_or_none(float(geo["snr"].mean())),
                "snr_median": _finite_or_none(snr_median),
                "snr_db_median": _snr_db(snr_median),  # None for 0, NaN or inf
                "flip_rate_l2": float(flips_l2.double().mean()),
                "flip_rate_cos": float(flips_cos.double().mean()),
                "n_flips_l2": int(flips_l2.sum()),
                "n_flips_cos": int(flips_cos.sum()),
                "flip_possible_rate": float((geo["noise_l2"] >= half_gap).double().mean()),
                "flip_examples_l2": flip_examples(token_ids[flips_l2], nn_l2[flips_l2]),
            }
        )

    ambiguous_l2 = neighbours.gap_l2 <= tol_l2
    ambiguous_cos = neighbours.gap_angle <= tol_angle
    vocabulary = {
        "vocab_size": vocab,
        "dim": table.shape[1],
        "row_norm_median": float(row_norms.median()),
        "clean_token_norm_median": _quantile(clean.double().norm(dim=1), 0.5),
        "dup_rtol": dup_rtol,
        "dup_tol_l2": tol_l2,
        "dup_tol_angle": tol_angle,
        "n_distinct_tokens": int(neighbours.token_ids.numel()),
        "n_ambiguous_distinct_l2": int(ambiguous_l2.sum()),
        "n_ambiguous_distinct_cos": int(ambiguous_cos.sum()),
        "n_ambiguous_tokens_l2": int(ambiguous_l2[slot].sum()),
        "n_ambiguous_tokens_cos": int(ambiguous_cos[slot].sum()),
        "n_clean_nearest_not_self_l2": int((neighbours.nearest_l2 != neighbours.token_ids).sum()),
        "n_clean_nearest_not_self_cos": int((neighbours.nearest_cos != neighbours.token_ids).sum()),
        "ambiguous_token_ids": neighbours.token_ids[ambiguous_l2 | ambiguous_cos][:20].tolist(),
        "half_gap_l2_p5": _quantile(half_gap, 0.05),
        "half_gap_l2_median": _quantile(half_gap, 0.5),
    }
    return {"metrics": metrics, "vocabulary": vocabulary, "lengths": lengths_summary(sequences)}


# --------------------------------------------------------------------------- model + data (I/O)


def embedding_table(model: torch.nn.Module, *, chunk_size: int = 8192) -> tuple[torch.Tensor, dict[str, Any]]:
    """The input embedding's forward output for every token id, (V, d) float32, and facts about it.

    Calls the embedding module found by :func:`neftune.find_input_embedding` (not just its
    weight: Gemma-style embeddings scale their output by sqrt(d)) in eval mode without
    autograd, so no noise hook fires. ``info``: module path, class, and the median ratio of
    output to weight row norms (1.0 when the output is the weight).
    """
    from ..activation.discovery import find_input_embedding

    loc = find_input_embedding(model)
    module = loc.module
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise AnalyzeError(f"the input embedding {loc.path or type(module).__name__} has no 2-D weight")
    vocab = weight.shape[0]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            parts = [
                module(torch.arange(s, min(s + chunk_size, vocab), device=weight.device)).float().cpu()
                for s in range(0, vocab, chunk_size)
            ]
    finally:
        module.train(was_training)
    table = torch.cat(parts)
    w_norm = weight.detach().float().cpu().norm(dim=1)
    ratio = table.norm(dim=1)[w_norm > 0] / w_norm[w_norm > 0]
    info = {
        "path": loc.path,
        "module": type(module).__name__,
        "output_to_weight_norm_ratio": float(ratio.median()) if ratio.numel() else None,
    }
    return table, info


def load_embedding_table(model_spec: str) -> tuple[torch.Tensor, dict[str, Any], Any]:
    """``(table, info, tokenizer)`` of a model spec: :func:`embedding_table` of the model loaded
    in float32; the model itself is not kept."""
    from ..finetune.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_spec, dtype=torch.float32)
    table, info = embedding_table(model)
    return table, info, tokenizer


def load_sequences(
    tokenizer: Any, data: str, *, n_sequences: int, seed: int = 0, max_length: int = 512
) -> tuple[list[list[int]], dict[str, Any]]:
    """Token ids of up to ``n_sequences`` training records of ``data``, sampled with ``seed``.

    Each record is rendered whole with the tokenizer's chat template (what training sees)
    and cut at ``max_length``. Returns the sequences and ``{"available", "used", "truncated"}``.
    """
    from ..finetune.data.bundle import resolve_data
    from ..finetune.models import chat_token_ids

    records = resolve_data(data, seed=seed).train
    picked = list(records)
    if len(picked) > n_sequences:
        picked = random.Random(seed).sample(picked, n_sequences)
    sequences, truncated = [], 0
    for record in picked:
        ids = chat_token_ids(tokenizer, record.messages)
        truncated += len(ids) > max_length
        sequences.append(ids[:max_length])
    return sequences, {"available": len(records), "used": len(sequences), "truncated": truncated}


@dataclass
class AnalyzeConfig:
    """Settings of ``neftune analyze``; saved in ``analyze.json``.

    ``model``: a preset, local folder or hub id. ``alphas``: noise strengths (0 is the clean
    reference). ``data``: a ``--data`` spec whose training records supply real token ids
    and lengths: ``n_sequences`` of them, sampled with ``seed`` (which also seeds the noise),
    cut at ``max_length`` tokens. ``batch_size``: sequences per padded noise batch (it
    changes the random draws, not their distribution). ``dup_rtol``: rows closer than this
    times the median row norm (or this many radians, for cosine) count as one vector.
    """

    model: str = "smollm2-135m"
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    distribution: str = "uniform"
    data: str = "builtin:quick"
    n_sequences: int = 300
    seed: int = 0
    out: str = "runs/analyze"
    max_length: int = 512
    batch_size: int = 32
    dup_rtol: float = 1e-3

    def validate(self) -> None:
        if not self.alphas:
            raise AnalyzeError("alphas is empty: give at least one, e.g. --alphas 0,5,10,15")
        self.alphas = tuple(check_alpha(a, "alphas") for a in self.alphas)
        check_choice(self.distribution, DISTRIBUTIONS, "distribution")
        for name in ("n_sequences", "max_length", "batch_size"):
            if getattr(self, name) < 1:
                raise AnalyzeError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.dup_rtol >= 0:
            raise AnalyzeError(f"dup_rtol must be >= 0, got {self.dup_rtol}")


def run_analyze(cfg: AnalyzeConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Load the model's input embedding and data, measure every alpha, write JSON + PNG.

    Writes ``<out>/analyze.json`` (model, config, embedding facts, lengths, vocabulary
    facts, per-alpha metrics, versions, wall time) and ``<out>/analyze.png``, both
    atomically. Returns the JSON's content; ``result["metrics"]`` is the per-alpha table.
    """
    from .plots import analyze_figure, figure_png  # matplotlib only when a figure is written

    cfg.validate()
    started = time.perf_counter()
    table, emb_info, tokenizer = load_embedding_table(cfg.model)
    sequences, data_info = load_sequences(
        tokenizer, cfg.data, n_sequences=cfg.n_sequences, seed=cfg.seed, max_length=cfg.max_length
    )
    analysis = analyze_embeddings(
        table,
        sequences,
        cfg.alphas,
        distribution=cfg.distribution,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        dup_rtol=cfg.dup_rtol,
        progress=progress,
    )
    for row in analysis["metrics"]:
        row["flip_examples_l2_text"] = [
            [tokenizer.decode([a]), tokenizer.decode([b]), n] for a, b, n in row["flip_examples_l2"]
        ]
    result = {
        "model": cfg.model,
        "config": asdict(cfg),
        "embedding": emb_info,
        "data": data_info,
        "lengths": analysis["lengths"],
        "vocabulary": analysis["vocabulary"],
        "metrics": analysis["metrics"],
        "versions": environment(),
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    out = Path(cfg.out)
    write_json_atomic(out / ANALYZE_JSON, result)
    write_bytes_atomic(out / ANALYZE_PNG, figure_png(analyze_figure(result), dpi=120))
    return result


__all__ = [
    "ANALYZE_JSON",
    "ANALYZE_PNG",
    "DEFAULT_ALPHAS",
    "AnalyzeConfig",
    "AnalyzeError",
    "NoisyTokens",
    "analyze_embeddings",
    "embedding_table",
    "expected_noise_sq",
    "flip_examples",
    "lengths_summary",
    "load_embedding_table",
    "load_sequences",
    "noisy_tokens",
    "pad_batches",
    "run_analyze",
    "token_geometry",
]
