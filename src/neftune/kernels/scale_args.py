"""What the noise kernel is told about each token's scale: the mode constants and :class:`ScaleArgs`.

Shared by :mod:`.scales` (which computes them) and :mod:`._triton` (which reads them); imports
no triton.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import torch

SCALE_CONST, SCALE_TOKEN, SCALE_TOKEN2, SCALE_CU = 0, 1, 2, 3


@dataclass(frozen=True)
class ScaleArgs:
    """How the noise kernel gets each token's scale (``SCALE_MODE`` of :mod:`._triton`).

    ``value``: the one scale (``SCALE_CONST``) or alpha (``SCALE_CU``); ``scales``/``scales2``:
    float32 per-token arrays (``SCALE_TOKEN``, ``SCALE_TOKEN2``); ``aux``: per-row segment-id
    flags (``SCALE_TOKEN2``) or ``cu_seqlens`` (``SCALE_CU``).
    """

    mode: int
    value: float = 0.0
    scales: torch.Tensor | None = None
    scales2: torch.Tensor | None = None
    aux: torch.Tensor | None = None

    def aux_steps(self) -> int:
        """Halvings of the binary search over ``cu_seqlens`` (0 for the other modes)."""
        return (self.aux.numel() - 1).bit_length() if self.mode == SCALE_CU else 0


def float64_bits(x: float) -> int:
    """The bit pattern of ``x`` as a float64, as a signed int64 (how alpha reaches the kernels)."""
    return struct.unpack("<q", struct.pack("<d", float(x)))[0]
