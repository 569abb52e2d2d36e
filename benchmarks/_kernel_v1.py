"""The first fused kernel (one Philox4x32-10 call per element, int64 counters), kept for comparison only.

``benchmarks/bench_noise_op.py`` times it as the ``triton_v1`` row and
``benchmarks/kernel_sass_report.py`` compiles it beside the current kernel, so the gain of
``neftune.kernels._triton`` is measured against what it replaced (commit 6c4009d, measured on
an H200 in ``benchmarks/results/h200-noise_op.json``). Not part of the library.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

DIST_CODES = {"uniform": 0, "gaussian": 1, "symmetric": 2}

# Upper bounds on the tile. 1024 columns x 4 rows = 4096 elements per program
# keeps ~16 fp32 values per thread at 8 warps: enough bytes in flight per thread
# for a bandwidth-bound op, few enough registers to leave the Philox rounds room.
_MAX_BLOCK_COLS = 1024
_MAX_TILE = 4096


def _add_noise_kernel(
    x_ptr,
    out_ptr,
    scale_ptr,
    n_rows,
    n_cols,
    x_row_stride,
    out_row_stride,
    seed,
    DIST: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    rows = pid_r.to(tl.int64) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    cols = pid_c * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    row_ok = rows < n_rows
    col_ok = cols < n_cols
    mask = row_ok[:, None] & col_ok[None, :]

    scale = tl.load(scale_ptr + rows, mask=row_ok, other=0.0)[:, None]
    x = tl.load(x_ptr + rows[:, None] * x_row_stride + cols[None, :], mask=mask, other=0.0)
    xf = x.to(tl.float32)

    counter = rows[:, None] * n_cols + cols[None, :]
    if DIST == 0:
        eps = tl.rand(seed, counter) * 2.0 - 1.0  # U[0, 1) -> U[-1, 1)
    elif DIST == 1:
        eps = tl.randn(seed, counter)
    else:
        bits = tl.randint(seed, counter)
        eps = tl.where((bits & 1) == 0, 1.0, -1.0)  # one fair Philox bit -> exactly +-1

    y = tl.where(scale != 0.0, xf + scale * eps, xf)
    tl.store(
        out_ptr + rows[:, None] * out_row_stride + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=mask
    )


_JITTED: dict[bool, object] = {}


def _kernel():
    """JIT the kernel on first use.

    ``triton.jit`` decides at decoration time whether to build an interpreted or
    a compiled kernel (from TRITON_INTERPRET), so decorate lazily and keep one per
    mode: setting TRITON_INTERPRET after importing neftune still works.
    """
    interpret = bool(triton.knobs.runtime.interpret)
    k = _JITTED.get(interpret)
    if k is None:
        k = triton.jit(do_not_specialize=["seed"])(_add_noise_kernel)
        _JITTED[interpret] = k
    return k


def pick_blocks(n_rows: int, n_cols: int) -> tuple[int, int, int]:
    """Return ``(BLOCK_ROWS, BLOCK_COLS, num_warps)`` for an ``(n_rows, n_cols)`` problem."""
    block_cols = min(triton.next_power_of_2(max(n_cols, 1)), _MAX_BLOCK_COLS)
    block_rows = max(1, min(_MAX_TILE // block_cols, triton.next_power_of_2(max(n_rows, 1))))
    tile = block_rows * block_cols
    num_warps = 8 if tile >= 4096 else 4 if tile >= 1024 else 2 if tile >= 256 else 1
    return block_rows, block_cols, num_warps


def launch(x2: torch.Tensor, out2: torch.Tensor, scales1: torch.Tensor, distribution: str, seed: int) -> None:
    """Write ``x2 + scales1[:, None] * eps`` into ``out2``.

    ``x2``/``out2``: 2-D ``(n_rows, d)`` with unit stride on the last dim (rows may be
    strided, ``out2`` may alias ``x2``); ``scales1``: contiguous float32 ``(n_rows,)``.
    """
    n_rows, n_cols = x2.shape
    if n_rows == 0 or n_cols == 0:
        return
    block_rows, block_cols, num_warps = pick_blocks(n_rows, n_cols)
    grid = (triton.cdiv(n_rows, block_rows), triton.cdiv(n_cols, block_cols))
    args = (x2, out2, scales1, n_rows, n_cols, x2.stride(0), out2.stride(0), seed)
    meta = {"DIST": DIST_CODES[distribution], "BLOCK_ROWS": block_rows, "BLOCK_COLS": block_cols}
    kernel = _kernel()
    if x2.is_cuda and not triton.knobs.runtime.interpret:
        with torch.cuda.device(x2.device):
            kernel[grid](*args, **meta, num_warps=num_warps, enable_fp_fusion=False)
    else:
        kernel[grid](*args, **meta)
