"""Whether the fused kernel can run: triton importable, CUDA data or Triton's CPU interpreter.

Nothing here imports triton at module import time.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@functools.cache
def triton_importable() -> bool:
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):
        return False


def interpret_mode() -> bool:
    """Whether TRITON_INTERPRET is on, read the way triton reads it."""
    try:
        import triton

        return bool(triton.knobs.runtime.interpret)
    except (ImportError, AttributeError):
        return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes", "y")


def triton_available(tensor: torch.Tensor | None = None) -> bool:
    """True when :func:`neftune.kernels.fused_add_noise` can run.

    That is: triton is importable and either ``TRITON_INTERPRET=1`` is set (CPU
    interpreter, slow, for tests) or the data is on a CUDA device — ``tensor``'s
    device when given, otherwise whether CUDA is available at all.
    """
    if not triton_importable():
        return False
    if interpret_mode():
        return True
    if tensor is not None:
        return tensor.is_cuda
    return torch.cuda.is_available()
