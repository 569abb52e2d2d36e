"""Fused NEFTune noise kernels.

``fused_add_noise(embeds, scales, distribution=..., seed=...)`` returns
``embeds + scales[..., None] * eps`` in a single read/write pass: ``eps`` is drawn
inside a Triton kernel from a counter-based RNG keyed on ``seed`` and each
element's logical index (one Philox call per 4 or 8 values; the definition is in
:mod:`neftune.kernels._triton`), so no noise tensor is materialised. ``scales`` is a
per-token tensor, one float for every token, or :class:`ScaleArgs` from
:func:`kernel_scales`, which computes ``alpha / sqrt(L * d)`` from a batch's mask,
positions or ``cu_seqlens`` in at most one extra launch. Its reference is
:func:`reference_add_noise`: the torch path users run (``backend="torch"``).

Triton is optional: nothing here imports it until a kernel is launched, and
:func:`triton_available` says whether a launch can work (triton importable, and a
CUDA tensor or ``TRITON_INTERPRET=1`` for the CPU interpreter).

Part of the library: imports torch (and triton, lazily) and nothing else of neftune.
"""

from __future__ import annotations

import torch

from ._probe import SUPPORTED_DTYPES, triton_available
from .backend import BACKENDS, BackendUnavailableError, check_backend, resolve_backend
from .reference import DISTRIBUTIONS, check_distribution, check_scales, reference_add_noise
from .scales import SCALE_CONST, SCALE_TOKEN, ScaleArgs, kernel_scales

__all__ = [
    "BACKENDS",
    "DISTRIBUTIONS",
    "SUPPORTED_DTYPES",
    "BackendUnavailableError",
    "ScaleArgs",
    "check_backend",
    "fused_add_noise",
    "kernel_scales",
    "reference_add_noise",
    "resolve_backend",
    "triton_available",
]

_SEED_MOD = 2**63


def _as_rows(t: torch.Tensor, n_rows: int, n_cols: int) -> torch.Tensor | None:
    """A 2-D ``(n_rows, n_cols)`` view of ``t`` with unit stride on the last dim, or None."""
    if t.stride(-1) != 1 and n_cols > 1:
        return None
    try:
        v = t.view(n_rows, n_cols)
    except RuntimeError:
        return None
    if v.stride(-1) != 1 and n_cols > 1:
        return None
    return v


def _forward(
    embeds: torch.Tensor, scales: ScaleArgs, distribution: str, seed: int, inplace: bool
) -> torch.Tensor:
    from . import _triton

    n_cols = embeds.shape[-1]
    n_rows = embeds.numel() // n_cols if n_cols else 0
    if embeds.numel() == 0:
        return embeds if inplace else embeds.clone()

    x2 = _as_rows(embeds, n_rows, n_cols)
    is_view = x2 is not None
    if not is_view:  # e.g. hidden dim not contiguous: work on a contiguous copy
        x2 = embeds.contiguous().view(n_rows, n_cols)
    if not inplace:
        out2 = torch.empty((n_rows, n_cols), dtype=embeds.dtype, device=embeds.device)
        _triton.launch(x2, out2, scales, distribution, seed)
        return out2.view(embeds.shape)
    # In place: write straight through the 2-D view of embeds when there is one,
    # else into the contiguous copy and copy that back.
    _triton.launch(x2, x2, scales, distribution, seed)
    if not is_view:
        embeds.copy_(x2.view(embeds.shape))
    return embeds


def _scale_args(embeds: torch.Tensor, scales: torch.Tensor | float | ScaleArgs) -> ScaleArgs:
    if isinstance(scales, ScaleArgs):
        return scales
    if isinstance(scales, torch.Tensor):
        check_scales(embeds, scales)
        return ScaleArgs(SCALE_TOKEN, scales=scales.reshape(-1).to(torch.float32).contiguous())
    if isinstance(scales, bool) or not isinstance(scales, int | float):
        raise TypeError(f"scales must be a tensor, a float or ScaleArgs, got {type(scales).__name__}")
    return ScaleArgs(SCALE_CONST, value=float(scales))


class _FusedAddNoise(torch.autograd.Function):
    """``out = embeds + scale * eps`` with ``d out / d embeds = I`` (the noise is a constant)."""

    @staticmethod
    def forward(ctx, embeds, scales, distribution, seed, inplace):
        out = _forward(embeds, scales, distribution, seed, inplace)
        if inplace:
            ctx.mark_dirty(embeds)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out, None, None, None, None


def fused_add_noise(
    embeds: torch.Tensor,
    scales: torch.Tensor | float | ScaleArgs,
    *,
    distribution: str,
    seed: int,
    inplace: bool = False,
) -> torch.Tensor:
    """Return ``embeds + scales[..., None] * eps`` computed by one Triton kernel.

    Args:
        embeds: ``(B, T, d)`` or ``(N, d)`` (any leading shape) float32/bf16/fp16.
        scales: ``embeds.shape[:-1]`` per-token scales (``alpha / sqrt(L * d)``, 0 on
            padding), cast to float32; or one float for every token; or :class:`ScaleArgs`
            from :func:`kernel_scales`. Tokens with scale exactly 0 are left bit-identical.
        distribution: ``"uniform"`` (eps ~ U(-1, 1), 2^22 or 2^16 evenly spaced values
            symmetric around 0), ``"gaussian"`` (N(0, 1) by Box-Muller, |eps| <= 5.65) or
            ``"symmetric"`` (eps = +-1 with p = 1/2).
        seed: RNG seed (any int; reduced mod 2**63). Same seed + shape + distribution
            gives bit-identical noise, independent of memory layout and ``inplace``.
        inplace: write into ``embeds`` and return it. Under autograd this is only
            legal where torch allows in-place ops (not on a leaf that requires grad).

    Math is float32, the result has ``embeds``' dtype. Differentiable w.r.t.
    ``embeds`` with an identity backward; no graph is recorded for the noise.
    """
    check_distribution(distribution)
    if embeds.dim() < 1:
        raise ValueError("embeds must have at least one dimension (the hidden size)")
    scales = _scale_args(embeds, scales)
    if embeds.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"fused_add_noise supports {SUPPORTED_DTYPES}, got {embeds.dtype}")
    if not triton_available(embeds):
        raise RuntimeError(
            "fused_add_noise needs triton and a CUDA tensor (or TRITON_INTERPRET=1); "
            "use neftune.kernels.reference_add_noise otherwise"
        )
    seed = int(seed) % _SEED_MOD
    return _FusedAddNoise.apply(embeds, scales, distribution, seed, bool(inplace))
