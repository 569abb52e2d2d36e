"""The torch implementation of the noise op: the path users run, and the fused kernel's reference.

``reference_add_noise(embeds, scales, ...)`` is exactly what :func:`neftune.add_noise`,
the activation hook and ``NEFTuneEmbedding`` compute on the torch backend: ``eps`` drawn
in the embeddings' dtype on their device, multiplied by the per-token scale (cast to that
dtype) and added. The fused kernel draws in float32 and rounds once at the end, so the two
agree in distribution (tested), not in values.
"""

from __future__ import annotations

import torch

DISTRIBUTIONS = ("uniform", "gaussian", "symmetric")


def check_distribution(distribution: str) -> str:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown noise distribution {distribution!r}; expected one of {DISTRIBUTIONS}")
    return distribution


def check_scales(embeds: torch.Tensor, scales: torch.Tensor) -> None:
    if embeds.dim() < 1:
        raise ValueError("embeds must have at least one dimension (the hidden size)")
    if tuple(scales.shape) != tuple(embeds.shape[:-1]):
        raise ValueError(
            f"scales must have shape embeds.shape[:-1] = {tuple(embeds.shape[:-1])}, got {tuple(scales.shape)}"
        )
    if scales.device != embeds.device:
        raise ValueError(f"scales is on {scales.device} but embeds is on {embeds.device}")


def sample_eps(
    shape: torch.Size | tuple[int, ...],
    distribution: str,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Unscaled i.i.d. noise of ``dtype``: U(-1, 1), N(0, 1) or random signs ±1."""
    out = torch.empty(shape, dtype=dtype, device=device)
    if distribution == "uniform":
        return out.uniform_(-1.0, 1.0, generator=generator)
    if distribution == "gaussian":
        return out.normal_(0.0, 1.0, generator=generator)
    if distribution == "symmetric":
        return out.bernoulli_(0.5, generator=generator).mul_(2).sub_(1)
    raise ValueError(f"unknown distribution {distribution!r}; choose one of {DISTRIBUTIONS}")


def scaled_noise(
    embeds: torch.Tensor,
    scales: torch.Tensor,
    *,
    distribution: str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``scales[..., None] * eps`` in ``embeds``' dtype and device, shape of ``embeds``; no autograd graph."""
    with torch.no_grad():
        eps = sample_eps(
            embeds.shape, distribution, dtype=embeds.dtype, device=embeds.device, generator=generator
        )
        return eps.mul_(scales.to(embeds.dtype).unsqueeze(-1))


def reference_add_noise(
    embeds: torch.Tensor,
    scales: torch.Tensor,
    *,
    distribution: str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``embeds + scales[..., None] * eps`` (out of place), as the torch backend computes it.

    ``embeds`` has shape (..., d); ``scales`` has shape ``embeds.shape[:-1]`` and holds
    ``alpha / sqrt(L * d)`` for each token (0 on padding). Differentiable w.r.t.
    ``embeds`` with an identity Jacobian, since ``eps`` is a constant.
    """
    check_distribution(distribution)
    check_scales(embeds, scales)
    return embeds + scaled_noise(embeds, scales, distribution=distribution, generator=generator)
