"""The torch implementation of the noise op: the path users run, and the fused kernel's reference.

``reference_add_noise(embeds, scales, ...)`` is exactly what :func:`neftune.add_noise`,
the activation hook and ``NEFTuneEmbedding`` compute on the torch backend
(:func:`torch_add_noise`): ``eps`` drawn with torch's RNG in the embeddings' dtype on their
device, then one fused multiply-add, ``torch.addcmul(embeds, eps, scales[..., None])``, which
rounds ``embeds + s * eps`` once. That is two passes over the embeddings: one write (the draw),
then two reads and a write; transformers' hook makes three (a zero fill, the draw, the add).
With one scale for every token (no mask, positions or ``cu_seqlens``) uniform and Gaussian
noise is drawn already scaled (``uniform_(-s, s)``, ``normal_(0, s)``) and added. The fused
kernel draws with its own counter-based RNG, so the two agree in distribution (tested), not
in values.
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
    scale: float = 1.0,
) -> torch.Tensor:
    """I.i.d. noise of ``dtype``: ``scale`` times U(-1, 1), N(0, 1) or random signs +-1."""
    out = torch.empty(shape, dtype=dtype, device=device)
    if distribution == "uniform":
        return out.uniform_(-scale, scale, generator=generator)
    if distribution == "gaussian":
        return out.normal_(0.0, scale, generator=generator)
    if distribution == "symmetric":
        out = out.bernoulli_(0.5, generator=generator).mul_(2).sub_(1)
        return out if scale == 1.0 else out.mul_(scale)
    raise ValueError(f"unknown distribution {distribution!r}; choose one of {DISTRIBUTIONS}")


def torch_add_noise(
    embeds: torch.Tensor,
    scales: torch.Tensor | float,
    *,
    distribution: str,
    generator: torch.Generator | None = None,
    need_noise: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The torch backend: ``(embeds + scales[..., None] * eps, noise)``; ``embeds`` is not modified.

    ``scales``: ``embeds.shape[:-1]`` per-token scales, or one float for every token. The result
    keeps ``embeds``' autograd graph (identity gradient); ``eps`` has none. ``noise`` (the added
    noise, in ``embeds``' dtype) is None when ``need_noise`` is False and making it would cost an
    extra pass (per-token scales, or +-1 noise).
    """
    one_scale = not isinstance(scales, torch.Tensor)
    shape, dtype, device = embeds.shape, embeds.dtype, embeds.device
    with torch.no_grad():
        if one_scale and distribution != "symmetric":  # drawn already scaled: the noise is free
            noise = sample_eps(
                shape, distribution, dtype=dtype, device=device, generator=generator, scale=scales
            )
        else:
            noise = None
            eps = sample_eps(shape, distribution, dtype=dtype, device=device, generator=generator)
            factor = float(scales) if one_scale else scales.to(dtype).unsqueeze(-1)
    if noise is not None:
        return embeds + noise, noise
    # One fused multiply-add; autograd keeps neither eps nor the scales.
    out = torch.add(embeds, eps, alpha=factor) if one_scale else torch.addcmul(embeds, eps, factor)
    with torch.no_grad():
        return out, (eps.mul_(factor) if need_noise else None)


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
    out, _ = torch_add_noise(embeds, scales, distribution=distribution, generator=generator, need_noise=False)
    return out
