"""Triton kernels of the fused NEFTune noise op (imported lazily: everything here assumes triton).

The noise, whatever the block sizes, memory layout or in-place flag
----------------------------------------------------------------------
View the embeddings as ``(n_rows, d)``, one row per token, and number the elements row-major by
their *logical* index ``i = row * d + col`` (never their address). Elements come in groups of
``G`` consecutive indices: group ``g = i // G``, lane ``k = i % G``. One Philox4x32-10 call per
group, key ``(seed mod 2^32, seed >> 32)``, counter ``(g mod 2^32, g >> 32, 0, 0)`` (Triton's
``tl.randint4x(seed, g)``), gives four 32-bit words ``w0..w3``:

* ``G = 4`` (float32 uniform and symmetric; Gaussian for every dtype): lane ``k`` uses ``w_k``.
  (A 16-bit kernel handles Gaussian noise 8 lanes at a time: two Philox calls, same values.)
* ``G = 8`` (bfloat16 / float16 uniform and symmetric, 16 random bits per value): lane ``k``
  uses half ``k % 2`` (0 = low 16 bits) of word ``w_{k // 2}``.

With ``f(b)`` the float32 whose bit pattern is ``b`` (a bitcast: no int-to-float conversion):

* uniform: ``h = f((w >> 9) | 0x3F800001) - 1.5`` for a 32-bit word (its top 22 bits), or
  ``h = f((c << 7) | 0x3F800040) - 1.5`` for a 16-bit half ``c``. ``h`` is exact, on a grid
  symmetric around 0 inside ``(-1/2, 1/2)``; ``eps = 2h`` and the noise is ``(2 s) * h``.
* symmetric: the top bit of the lane's word or half is the sign of ``+-s`` (exact).
* gaussian: Box-Muller on ``(w0, w1)`` and ``(w2, w3)``, both halves used:
  ``u1 = 2 - f((w0 >> 9) | 0x3F800000)`` in ``(0, 1]``, ``u2 = f((w1 >> 9) | 0x3F800000) - 1.5``
  in ``[-1/2, 1/2)``, ``r = sqrt(-2 ln u1)``, lanes 0 and 1 get ``r cos(2 pi u2)`` and
  ``r sin(2 pi u2)``; ``|z| <= sqrt(-2 ln 2^-23) = 5.65``. Compiled for CUDA, log, sin and cos
  are the hardware approximations (``lg2/sin/cos.approx.f32``), so Gaussian values differ from
  the interpreter's in the last bits.

The output is ``x + noise`` in float32 (multiply and add each rounded: FMA contraction is off,
as in the interpreter), stored in ``x``'s dtype; where a token's scale is exactly 0 the input is
stored unchanged, bit for bit (``x + 0`` would turn ``-0.0`` into ``+0.0``).

Kernels
-------
* ``_noise_rows_kernel``: 2-D tiles ``(BLOCK_ROWS, BLOCK_COLS)`` when ``d % G == 0`` (groups never
  straddle rows); one ``randint4x`` per group, the lanes placed with ``tl.interleave``.
* ``_noise_flat_kernel``: the fallback for ``d % G != 0``: 1-D blocks of the flat index, the
  row and column of each element found by one integer division. Same noise.
* Per-token scales (``SCALE_MODE``): 0 one value for every token (no length source); 1 a float32
  per token; 2 two per-token arrays and per-row flags from :mod:`._triton_scales` (segment-id
  masks: the first array where any row holds an id above 1); 3 ``cu_seqlens`` searched in the
  kernel. The row count is never a specialisation key (packed batches change it every step).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch
import triton

from .scale_args import SCALE_TOKEN, SCALE_TOKEN2, ScaleArgs, float64_bits

DIST_CODES = {"uniform": 0, "gaussian": 1, "symmetric": 2, "none": 3}

#: 128-bit vectors per thread in one tile (8 bf16 or 4 fp32 values each).
VECTORS_PER_THREAD = 2
NUM_WARPS = 4
#: Elements per program of the flat fallback: 8 per thread. Its per-element division and scalar
#: loads need registers; at 8 per thread it compiles to 64 registers for sm_90 (16 per thread: 119).
FLAT_BLOCK = NUM_WARPS * 32 * 8
_INT32_LIMIT = 2**31 - 1


def group_size(dtype: torch.dtype) -> int:
    """Lanes per layout group: one 128-bit vector, 8 values of a 16-bit dtype or 4 of float32.

    For uniform and symmetric noise that is also the Philox group; Gaussian noise takes one
    Philox call per 4 values in every dtype (two per 8-lane group), so its values do not depend
    on the dtype.
    """
    return 8 if torch.empty((), dtype=dtype).element_size() == 2 else 4


_DEVICE: dict[bool, ModuleType] = {}


def device_code() -> ModuleType:
    """The module of Triton kernels for the current mode (compiled, or TRITON_INTERPRET=1).

    ``triton.jit`` decides at decoration time whether a function is interpreted or compiled, so
    ``_device.py`` is loaded once per mode (a second copy under another module name): setting
    TRITON_INTERPRET after importing neftune still works.
    """
    interpret = bool(triton.knobs.runtime.interpret)
    mod = _DEVICE.get(interpret)
    if mod is None:
        name = f"{__package__}._device_{'interpreted' if interpret else 'compiled'}"
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_device.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        _DEVICE[interpret] = mod
    return mod


# --------------------------------------------------------------------------------------- host side
def pick_blocks(n_cols: int, itemsize: int, group: int) -> tuple[int, int, int]:
    """``(BLOCK_ROWS, BLOCK_COLS, num_warps)`` of the 2-D kernel; independent of the row count.

    One tile is ``NUM_WARPS * 32`` threads holding ``VECTORS_PER_THREAD`` 128-bit vectors each.
    """
    tile = NUM_WARPS * 32 * VECTORS_PER_THREAD * (16 // itemsize)
    block_cols = max(group, min(triton.next_power_of_2(max(n_cols, 1)), tile))
    return max(1, tile // block_cols), block_cols, NUM_WARPS


def _needs_int64(n_rows: int, n_cols: int, *strides: int) -> bool:
    reach = max([n_cols, *strides]) * max(n_rows, 1) + n_cols
    return reach > _INT32_LIMIT or n_rows * n_cols > _INT32_LIMIT


def launch(
    x2: torch.Tensor,
    out2: torch.Tensor,
    scale: ScaleArgs,
    distribution: str,
    seed: int,
    *,
    blocks: tuple[int, int] | None = None,
    flat: bool | None = None,
    group: int | None = None,
) -> None:
    """Write ``x2 + scale * eps`` into ``out2`` (one kernel launch).

    ``x2``/``out2``: 2-D ``(n_rows, d)`` with unit stride on the last dim (rows may be strided,
    ``out2`` may alias ``x2``). ``blocks`` (``(BLOCK_ROWS, BLOCK_COLS)``, or ``(1, BLOCK)`` for the
    flat kernel) and ``flat`` override the choices, for tests: the output must not change.
    ``group`` (tests) runs a float32 tensor with the 16-bit lane layout (8), so that those values
    can be checked at full precision.
    """
    n_rows, n_cols = x2.shape
    if n_rows == 0 or n_cols == 0:
        return
    group = group or group_size(x2.dtype)
    placeholder = x2
    args = (
        x2,
        out2,
        n_rows,
        n_cols,
        x2.stride(0),
        out2.stride(0),
        seed,
        float(scale.value),
        float64_bits(scale.value),
        scale.scales if scale.scales is not None else placeholder,
        scale.scales2 if scale.scales2 is not None else placeholder,
        scale.aux if scale.aux is not None else placeholder,
        scale.aux.numel() if scale.aux is not None else 0,
        scale.aux_steps(),
    )
    int64 = _needs_int64(n_rows, n_cols, x2.stride(0), out2.stride(0))
    meta = {"DIST": DIST_CODES[distribution], "GROUP": group, "SCALE_MODE": scale.mode, "INT64": int64}
    use_flat = n_cols % group != 0 if flat is None else flat
    if use_flat:
        block = blocks[1] if blocks is not None else FLAT_BLOCK
        grid = (triton.cdiv(n_rows * n_cols, block),)
        kernel, meta = device_code().noise_flat_kernel, {**meta, "BLOCK": block}
    else:
        block_rows, block_cols, _ = pick_blocks(n_cols, x2.element_size(), group)
        if blocks is not None:
            block_rows, block_cols = blocks
        grid = (triton.cdiv(n_rows, block_rows), triton.cdiv(n_cols, block_cols))
        kernel, meta = (
            device_code().noise_rows_kernel,
            {**meta, "BLOCK_ROWS": block_rows, "BLOCK_COLS": block_cols},
        )
    if x2.is_cuda and not triton.knobs.runtime.interpret:
        with torch.cuda.device(x2.device):
            kernel[grid](*args, **meta, num_warps=NUM_WARPS, enable_fp_fusion=False)
    else:
        kernel[grid](*args, **meta)


def segment_scales(
    mask: torch.Tensor | None,
    pos: torch.Tensor | None,
    rows: int,
    cols: int,
    d: int,
    alpha: float,
    *,
    chunk: int,
    pad: torch.Tensor | None = None,
    ignore: torch.Tensor | None = None,
) -> ScaleArgs:
    """Launch the scan kernel (one program per row) for a (rows, cols) mask, position ids,
    pad-token flags (``pad``: nonzero on pad-token ids; a sequence made only of them is padding)
    and/or ignored tokens (``ignore``: nonzero where a token gets no noise and does not count).

    A mask that may hold segment ids (any dtype but bool) gets two scale arrays and per-row flags
    (``SCALE_TOKEN2``), so that the noise kernel can apply the batch-wide rule without a sync.
    """
    given = next(t for t in (mask, pos, pad, ignore) if t is not None)
    device = given.device
    out = torch.empty(rows * cols, dtype=torch.float32, device=device)
    c0 = torch.empty(rows * cols, dtype=torch.int32, device=device)
    p0 = torch.empty_like(c0) if pad is not None else c0
    seg_ids = mask is not None and mask.dtype != torch.bool
    out2 = torch.empty_like(out) if seg_ids else out
    flags = torch.empty(rows, dtype=torch.int32, device=device) if seg_ids else c0
    meta = {
        "HAS_MASK": mask is not None,
        "SEG_IDS": seg_ids,
        "HAS_POS": pos is not None,
        "HAS_PAD": pad is not None,
        "HAS_IGNORE": ignore is not None,
        "CHUNK": chunk,
    }
    args = (
        mask if mask is not None else given,
        pos if pos is not None else given,
        out,
        out2,
        flags,
        c0,
        pad if pad is not None else given,
        p0,
        ignore if ignore is not None else given,
        cols,
        d,
        float64_bits(alpha),
    )
    if rows and cols:
        kernel = device_code().segment_scales_kernel
        if device.type == "cuda" and not triton.knobs.runtime.interpret:
            with torch.cuda.device(device):
                kernel[(rows,)](*args, **meta, num_warps=4, enable_fp_fusion=False)
        else:
            kernel[(rows,)](*args, **meta)
    if seg_ids:
        return ScaleArgs(SCALE_TOKEN2, scales=out, scales2=out2, aux=flags)
    return ScaleArgs(SCALE_TOKEN, scales=out)
