"""How the fused kernel gets each token's scale ``alpha / sqrt(L * d)``: in at most two launches.

:func:`kernel_scales` turns a batch's length source into :class:`ScaleArgs` for the noise kernel:

* no mask, positions or ``cu_seqlens``: one value for every token (``L`` = the row length), the
  noise kernel is the only launch;
* ``cu_seqlens`` (no mask): the noise kernel searches it for each token's sequence (one launch);
* a 2-D ``attention_mask`` (0/1 or segment ids), ``position_ids``, a ``pad_mask`` (pad-token
  ids; a sequence made only of them is padding) and/or ``ignore`` (tokens that get no noise and do
  not count, e.g. a VLM's image placeholders): one scan kernel writes a float32 scale per token,
  then the noise kernel reads it (two launches).

Anything else (a 4-D block mask, ``cu_seqlens`` together with a mask, pad or ignore flags, alpha given as
a tensor while torch.compile traces, inputs that do not fit the embeddings) returns None: the caller then passes
:func:`neftune.noise.token_scales` (the torch reference, ~20 small kernels), which also raises
the errors for bad input. The scales equal ``token_scales`` bit for bit (tested).

Nothing here imports triton until a scan kernel is launched.
"""

from __future__ import annotations

import math
import struct
from numbers import Real

import torch

from .scale_args import SCALE_CONST, SCALE_CU, SCALE_TOKEN, SCALE_TOKEN2, ScaleArgs, float64_bits

__all__ = [
    "SCALE_CONST",
    "SCALE_CU",
    "SCALE_TOKEN",
    "SCALE_TOKEN2",
    "SCAN_CHUNK",
    "ScaleArgs",
    "float64_bits",
    "kernel_scales",
    "scale_value",
]

#: Tokens per step of the scan kernel's loop over a row (a constant: the row length is never a
#: specialisation key).
SCAN_CHUNK = 1024


def _f32(x: float) -> float:
    """``x`` rounded to float32 (round to nearest even)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def scale_value(length: int, d: int, alpha: float) -> float:
    """``alpha / sqrt(L * d)`` as :func:`neftune.noise.token_scales` and the kernels compute it.

    In float64, ``fl(fl(1 / fl(sqrt(L * d))) * alpha)`` with IEEE division and square root
    (Python's floats), then rounded once to float32. (Not in float32: torch's CPU ``sqrt`` for
    float32 is not always correctly rounded, so float32 scales would differ between devices.)
    """
    return _f32((1.0 / math.sqrt(float(length) * float(d))) * float(alpha))


def _rows_cols_dim(embeds: torch.Tensor) -> tuple[int, int, int] | None:
    if embeds.dim() == 3:
        return embeds.shape[0], embeds.shape[1], embeds.shape[2]
    if embeds.dim() == 2:
        return 1, embeds.shape[0], embeds.shape[1]
    return None


def _as_rows(t: object, rows: int, cols: int, device: torch.device) -> torch.Tensor | None:
    """``t`` as a contiguous (rows, cols) tensor on ``device``, or None when it is anything else."""
    if not isinstance(t, torch.Tensor) or t.device != device or t.is_complex():
        return None
    if t.dim() == 1 and rows == 1:
        t = t.unsqueeze(0)
    if tuple(t.shape) != (rows, cols):
        return None
    return t.contiguous()


def _cu_seqlens_ok(cu: object, n_tokens: int, device: torch.device) -> bool:
    if not isinstance(cu, torch.Tensor) or cu.dim() != 1 or cu.numel() < 1 or cu.device != device:
        return False
    if cu.dtype not in (torch.int32, torch.int64):
        return False
    if cu.device.type == "cpu":  # cheap here; on a GPU it would be a sync (token_scales skips it too)
        return cu[0].item() == 0 and not bool((cu.diff() < 0).any()) and cu[-1].item() <= n_tokens
    return True


def kernel_scales(
    embeds: torch.Tensor,
    alpha: object,
    *,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    pad_mask: torch.Tensor | None = None,
    ignore: torch.Tensor | None = None,
    chunk: int | None = None,
) -> ScaleArgs | None:
    """Per-token scales for the fused kernel, or None where only ``token_scales`` can make them.

    ``embeds``: ``(B, T, d)`` or ``(T, d)``. Same length sources and meaning as
    :func:`neftune.noise.segment_lengths`. May launch one scan kernel (masks, positions); never
    synchronises with the device. ``chunk``: the scan's tokens per loop step (tests vary it: the
    scales must not change); default :data:`SCAN_CHUNK`, or the row length's next power of two if
    smaller under Triton's interpreter (whose scans run element by element in Python).
    """
    if isinstance(alpha, bool) or not isinstance(alpha, Real):
        return None  # e.g. a 0-d tensor while torch.compile traces
    shape = _rows_cols_dim(embeds)
    if shape is None:
        return None
    rows, cols, d = shape
    alpha = float(alpha)
    if cu_seqlens is not None:
        if attention_mask is not None or pad_mask is not None or ignore is not None:
            return None
        if not _cu_seqlens_ok(cu_seqlens, rows * cols, embeds.device):
            return None
        return ScaleArgs(SCALE_CU, value=alpha, aux=cu_seqlens.contiguous())
    if attention_mask is None and position_ids is None and pad_mask is None and ignore is None:
        return ScaleArgs(SCALE_CONST, value=scale_value(cols, d, alpha))
    mask = pos = pad = ign = None
    if pad_mask is not None:
        pad = _as_rows(pad_mask, rows, cols, embeds.device)
        if pad is None or pad.dtype != torch.bool:
            return None
    if ignore is not None:
        ign = _as_rows(ignore, rows, cols, embeds.device)
        if ign is None or ign.dtype != torch.bool:
            return None
    if attention_mask is not None:
        mask = _as_rows(attention_mask, rows, cols, embeds.device)
        if mask is None:
            return None
    if position_ids is not None:
        pos = _as_rows(position_ids, rows, cols, embeds.device)
        if pos is None or pos.is_floating_point():
            return None
    from . import _triton

    if chunk is None:
        chunk = SCAN_CHUNK
        if _triton.triton.knobs.runtime.interpret:
            chunk = min(chunk, 1 << max(cols - 1, 1).bit_length())
    return _triton.segment_scales(mask, pos, rows, cols, d, alpha, chunk=chunk, pad=pad, ignore=ign)
