"""Plain-torch reference for the fused noise kernel.

This is the ground truth the Triton kernel is tested against. It is deliberately
the most obvious implementation: draw ``eps`` in float32 for every element,
multiply by the per-token scale, add to the embeddings in float32 and cast back.
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
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw unit noise ``eps`` in float32: U(-1, 1), N(0, 1) or uniform random signs."""
    check_distribution(distribution)
    if distribution == "uniform":
        return torch.empty(shape, dtype=torch.float32, device=device).uniform_(-1.0, 1.0, generator=generator)
    if distribution == "gaussian":
        return torch.randn(shape, dtype=torch.float32, device=device, generator=generator)
    bits = torch.randint(0, 2, shape, device=device, generator=generator)
    return bits.to(torch.float32).mul_(2.0).sub_(1.0)


def reference_add_noise(
    embeds: torch.Tensor,
    scales: torch.Tensor,
    *,
    distribution: str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``embeds + scales[..., None] * eps`` (out of place, computed in float32).

    ``embeds`` has shape (..., d); ``scales`` has shape ``embeds.shape[:-1]`` and holds
    ``alpha / sqrt(L * d)`` for each token (0 on padding). Differentiable w.r.t.
    ``embeds`` with an identity Jacobian, since ``eps`` is a constant.
    """
    check_distribution(distribution)
    check_scales(embeds, scales)
    eps = sample_eps(embeds.shape, distribution, device=embeds.device, generator=generator)
    noise = scales.to(torch.float32).unsqueeze(-1) * eps
    return (embeds.to(torch.float32) + noise).to(embeds.dtype)
