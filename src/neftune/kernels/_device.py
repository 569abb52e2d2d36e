"""Device code of the fused noise op (Triton), decorated when this module is loaded.

Loaded by :func:`neftune.kernels._triton.device_code` once per Triton mode (compiled, or
``TRITON_INTERPRET=1``): ``triton.jit`` fixes the mode at decoration time and an interpreted
kernel cannot call helpers decorated in compiled mode. The noise definition is in
:mod:`neftune.kernels._triton`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

#: PTX approximations for the Gaussian's log, sin and cos in compiled CUDA code (one MUFU
#: instruction each; abs. error < 2^-20.9 for sin/cos on [-pi, pi], rel. error < 2^-22 for lg2);
#: the interpreter, and ROCm, use the precise functions.
_PTX_APPROX = not triton.knobs.runtime.interpret and torch.version.hip is None
_LN2 = tl.constexpr(0.6931471805599453)

#: Runtime arguments that are never specialisation keys: the row count changes with every packed
#: batch, the seed and scale every call, the cu_seqlens length with the batch.
NOT_SPECIALIZED = ["n_rows", "seed", "scale_value", "alpha_bits", "n_aux", "aux_steps"]


@triton.jit
def _interleave4(a, b, c, d):
    """Along the last dim: out[4j + 0..3] = a[j], b[j], c[j], d[j]."""
    return tl.interleave(tl.interleave(a, c), tl.interleave(b, d))


@triton.jit
def _interleave8(x0, x1, x2, x3, x4, x5, x6, x7):
    """Along the last dim: out[8j + k] = x_k[j]."""
    return tl.interleave(_interleave4(x0, x2, x4, x6), _interleave4(x1, x3, x5, x7))


@triton.jit
def _half32(w):
    """Uniform h in (-1/2, 1/2) from the top 22 bits of a 32-bit word (exact, symmetric grid)."""
    return ((w >> 9) | 0x3F800001).to(tl.float32, bitcast=True) - 1.5


@triton.jit
def _half_lo16(w):
    return (((w << 7) & 0x007FFF80) | 0x3F800040).to(tl.float32, bitcast=True) - 1.5


@triton.jit
def _half_hi16(w):
    return (((w >> 9) & 0x007FFF80) | 0x3F800040).to(tl.float32, bitcast=True) - 1.5


if _PTX_APPROX:

    @triton.jit
    def _approx(x, OP: tl.constexpr):
        return tl.inline_asm_elementwise(OP, "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1)

    @triton.jit
    def _log(x):
        return _approx(x, "lg2.approx.f32 $0, $1;") * _LN2

    @triton.jit
    def _cos(x):
        return _approx(x, "cos.approx.f32 $0, $1;")

    @triton.jit
    def _sin(x):
        return _approx(x, "sin.approx.f32 $0, $1;")

else:

    @triton.jit
    def _log(x):
        return tl.log(x)

    @triton.jit
    def _cos(x):
        return tl.cos(x)

    @triton.jit
    def _sin(x):
        return tl.sin(x)


@triton.jit
def _box_muller(wa, wb):
    u1 = 2.0 - ((wa >> 9) | 0x3F800000).to(tl.float32, bitcast=True)  # (0, 1]: log is finite
    u2 = ((wb >> 9) | 0x3F800000).to(tl.float32, bitcast=True) - 1.5  # [-1/2, 1/2)
    r = tl.sqrt(-2.0 * _log(u1))
    theta = 6.283185307179586 * u2  # [-pi, pi): the approximations' accurate range
    return r * _cos(theta), r * _sin(theta)


@triton.jit
def _add_noise(xf, scale, seed, groups, DIST: tl.constexpr, GROUP: tl.constexpr):
    """``xf + scale * eps`` (float32) for the elements of ``groups`` (last dim: groups of GROUP lanes).

    ``GROUP``: lanes per layout group, one 128-bit vector of the dtype (8 for 16-bit, 4 for float32).
    """
    if DIST == 3:  # control without random numbers: the same loads, stores and scale math
        y = xf + scale * 0.5
    elif DIST == 1:
        # Gaussian: 4 values per Philox call for every dtype; an 8-lane group (16-bit dtypes, one
        # 128-bit vector) is the two 4-groups 2g and 2g + 1, so the noise is the same as float32's.
        if GROUP == 8:
            a0, a1, a2, a3 = tl.randint4x(seed, groups * 2)
            b0, b1, b2, b3 = tl.randint4x(seed, groups * 2 + 1)
            z0, z1 = _box_muller(a0, a1)
            z2, z3 = _box_muller(a2, a3)
            z4, z5 = _box_muller(b0, b1)
            z6, z7 = _box_muller(b2, b3)
            y = xf + scale * _interleave8(z0, z1, z2, z3, z4, z5, z6, z7)
        else:
            w0, w1, w2, w3 = tl.randint4x(seed, groups)
            z0, z1 = _box_muller(w0, w1)
            z2, z3 = _box_muller(w2, w3)
            y = xf + scale * _interleave4(z0, z1, z2, z3)
    else:
        w0, w1, w2, w3 = tl.randint4x(seed, groups)
        if DIST == 0:
            if GROUP == 8:
                h = _interleave8(
                    _half_lo16(w0),
                    _half_hi16(w0),
                    _half_lo16(w1),
                    _half_hi16(w1),
                    _half_lo16(w2),
                    _half_hi16(w2),
                    _half_lo16(w3),
                    _half_hi16(w3),
                )
            else:
                h = _interleave4(_half32(w0), _half32(w1), _half32(w2), _half32(w3))
            y = xf + (scale + scale) * h
        else:
            top = 0x80000000
            if GROUP == 8:
                sign = _interleave8(
                    (w0 << 16) & top,
                    w0 & top,
                    (w1 << 16) & top,
                    w1 & top,
                    (w2 << 16) & top,
                    w2 & top,
                    (w3 << 16) & top,
                    w3 & top,
                )
            else:
                sign = _interleave4(w0 & top, w1 & top, w2 & top, w3 & top)
            y = xf + (scale.to(tl.uint32, bitcast=True) ^ sign).to(tl.float32, bitcast=True)
    return tl.where(scale != 0.0, y, xf)


@triton.jit
def scale_from_length(length, d, alpha_bits):
    """``alpha / sqrt(L * d)`` as ``neftune.noise.token_scales`` computes it: in float64
    (``fl(fl(1 / fl(sqrt(L * d))) * alpha)``, IEEE division and square root) rounded once to float32.
    ``alpha_bits``: alpha's float64 bit pattern (an int64 argument: exact in every Triton version)."""
    prod = length.to(tl.float64) * d.to(tl.float64)
    r = tl.full(prod.shape, 1.0, tl.float64) / tl.sqrt(prod)
    return (r * alpha_bits.to(tl.float64, bitcast=True)).to(tl.float32)


@triton.jit
def _token_scales(
    rows,
    ok,
    d,
    scale_value,
    alpha_bits,
    scale_ptr,
    scale2_ptr,
    aux_ptr,
    n_aux,
    aux_steps,
    SCALE_MODE: tl.constexpr,
):
    """Float32 scale of each token index in ``rows`` (any shape); 0 on padding."""
    if SCALE_MODE == 0:
        s = tl.zeros(rows.shape, tl.float32) + scale_value
    elif SCALE_MODE == 1:
        s = tl.load(scale_ptr + rows, mask=ok, other=0.0)
    elif SCALE_MODE == 2:
        # aux: one int32 per batch row, nonzero where that row holds a segment id above 1.
        seg = 0
        for start in range(0, n_aux, 128):
            j = start + tl.arange(0, 128)
            seg = tl.maximum(seg, tl.max(tl.load(aux_ptr + j, mask=j < n_aux, other=0), 0))
        a = tl.load(scale_ptr + rows, mask=ok, other=0.0)
        b = tl.load(scale2_ptr + rows, mask=ok, other=0.0)
        s = tl.where(seg != 0, a, b)
    else:
        # aux = cu_seqlens (n_aux entries): the segment of flat token r is the number of entries of
        # cu_seqlens[1:] that are <= r (a binary search, aux_steps = ceil(log2(n_aux)) halvings).
        r = rows.to(aux_ptr.dtype.element_ty)
        lo = tl.zeros(rows.shape, tl.int32)
        hi = tl.zeros(rows.shape, tl.int32) + (n_aux - 1)
        for _ in range(aux_steps):
            active = lo < hi
            mid = (lo + hi) >> 1
            go = tl.load(aux_ptr + 1 + mid, mask=active & ok, other=0) <= r
            lo = tl.where(active & go, mid + 1, lo)
            hi = tl.where(active & ~go, mid, hi)
        total = tl.load(aux_ptr + n_aux - 1)
        inside = ok & (r < total)
        seg = tl.minimum(lo, n_aux - 2)
        length = tl.load(aux_ptr + seg + 1, mask=inside, other=0) - tl.load(
            aux_ptr + seg, mask=inside, other=0
        )
        s = tl.where(inside & (length > 0), scale_from_length(tl.maximum(length, 1), d, alpha_bits), 0.0)
    return s


@triton.jit(do_not_specialize=NOT_SPECIALIZED)
def noise_rows_kernel(
    x_ptr,
    out_ptr,
    n_rows,
    n_cols,
    x_stride,
    out_stride,
    seed,
    scale_value,
    alpha_bits,
    scale_ptr,
    scale2_ptr,
    aux_ptr,
    n_aux,
    aux_steps,
    DIST: tl.constexpr,
    GROUP: tl.constexpr,
    SCALE_MODE: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
    INT64: tl.constexpr,
):
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    if INT64:
        rows = pid_r.to(tl.int64) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    else:
        rows = pid_r * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    cols = pid_c * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    gcols = pid_c * (BLOCK_COLS // GROUP) + tl.arange(0, BLOCK_COLS // GROUP)
    row_ok = rows < n_rows
    mask = row_ok[:, None] & (cols < n_cols)[None, :]
    scale = _token_scales(
        rows,
        row_ok,
        n_cols,
        scale_value,
        alpha_bits,
        scale_ptr,
        scale2_ptr,
        aux_ptr,
        n_aux,
        aux_steps,
        SCALE_MODE,
    )
    groups = rows[:, None] * (n_cols // GROUP) + gcols[None, :]
    x = tl.load(x_ptr + rows[:, None] * x_stride + cols[None, :], mask=mask, other=0.0)
    y = _add_noise(x.to(tl.float32), scale[:, None], seed, groups, DIST, GROUP)
    tl.store(out_ptr + rows[:, None] * out_stride + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=NOT_SPECIALIZED)
def noise_flat_kernel(
    x_ptr,
    out_ptr,
    n_rows,
    n_cols,
    x_stride,
    out_stride,
    seed,
    scale_value,
    alpha_bits,
    scale_ptr,
    scale2_ptr,
    aux_ptr,
    n_aux,
    aux_steps,
    DIST: tl.constexpr,
    GROUP: tl.constexpr,
    SCALE_MODE: tl.constexpr,
    BLOCK: tl.constexpr,
    INT64: tl.constexpr,
):
    pid = tl.program_id(0)
    if INT64:
        base = pid.to(tl.int64) * BLOCK
        numel = n_rows.to(tl.int64) * n_cols
    else:
        base = pid * BLOCK
        numel = n_rows * n_cols
    idx = base + tl.arange(0, BLOCK)
    groups = base // GROUP + tl.arange(0, BLOCK // GROUP)
    ok = idx < numel
    rows = idx // n_cols
    cols = idx - rows * n_cols
    scale = _token_scales(
        rows,
        ok,
        n_cols,
        scale_value,
        alpha_bits,
        scale_ptr,
        scale2_ptr,
        aux_ptr,
        n_aux,
        aux_steps,
        SCALE_MODE,
    )
    x = tl.load(x_ptr + rows * x_stride + cols, mask=ok, other=0.0)
    y = _add_noise(x.to(tl.float32), scale, seed, groups, DIST, GROUP)
    tl.store(out_ptr + rows * out_stride + cols, y.to(out_ptr.dtype.element_ty), mask=ok)


# ------------------------------------------------------------------------------ per-token scales
@triton.jit
def _max_combine(a, b):
    return tl.maximum(a, b)


@triton.jit
def _min_combine(a, b):
    return tl.minimum(a, b)


@triton.jit
def _valid_and_start(
    mask_ptr,
    pos_ptr,
    ign_ptr,
    base,
    t,
    T,
    seg,
    HAS_MASK: tl.constexpr,
    HAS_POS: tl.constexpr,
    HAS_IGNORE: tl.constexpr,
):
    """Per token ``t`` of one row (``t`` may run past ``T``: both False there): does it count (a
    real token, not ignored), and does a sequence start there (row start; a position id that is 0
    or does not continue the previous one; with ``seg``, a nonzero segment id that differs from
    the previous token's). Ignored tokens (``ign_ptr``) keep the boundaries the mask gives."""
    ok = t < T
    prev_ok = ok & (t > 0)
    start = t == 0
    if HAS_MASK:
        m = tl.load(mask_ptr + base + t, mask=ok, other=0)
        valid = ok & (m != 0)
        m_prev = tl.load(mask_ptr + base + t - 1, mask=prev_ok & seg, other=0)
        start = start | (seg & valid & (m != m_prev))
    else:
        valid = ok
    if HAS_POS:
        p = tl.load(pos_ptr + base + t, mask=ok, other=0)
        p_prev = tl.load(pos_ptr + base + t - 1, mask=prev_ok, other=0)
        start = start | (p == 0) | (p != p_prev + 1)
    if HAS_IGNORE:
        valid = valid & (tl.load(ign_ptr + base + t, mask=ok, other=0) == 0)
    return valid, start & ok


@triton.jit
def _scan_row(
    mask_ptr,
    pos_ptr,
    base,
    T,
    seg,
    d,
    alpha_bits,
    out_ptr,
    out2_ptr,
    store2,
    c0_ptr,
    pad_ptr,
    p0_ptr,
    ign_ptr,
    HAS_MASK: tl.constexpr,
    HAS_POS: tl.constexpr,
    HAS_PAD: tl.constexpr,
    HAS_IGNORE: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """Scales of one row's tokens: ``alpha / sqrt(L d)`` with ``L`` the real tokens of the token's
    sequence, 0 on padding. Two passes over the row, ``CHUNK`` tokens at a time:

    forward:  c0[t] = real tokens before the start of t's sequence (a running max of the
              real-token count at each start: the count never decreases), kept in ``c0_ptr``;
    backward: c1[t] = real tokens up to the end of t's sequence (a running min, from the right,
              of the count just before each later start); L = c1 - c0.

    ``HAS_PAD``: the same two counts of the real tokens that are pad-token ids (``pad_ptr``,
    scratch ``p0_ptr``); a sequence made only of them is padding.
    """
    offs = tl.arange(0, CHUNK)
    n_chunks = tl.cdiv(T, CHUNK)
    carry_count = tl.full((), 0, tl.int32)
    carry_c0 = tl.full((), 0, tl.int32)
    carry_pads = tl.full((), 0, tl.int32)
    carry_p0 = tl.full((), 0, tl.int32)
    for ci in range(n_chunks):
        t = ci * CHUNK + offs
        valid, start = _valid_and_start(
            mask_ptr, pos_ptr, ign_ptr, base, t, T, seg, HAS_MASK, HAS_POS, HAS_IGNORE
        )
        v = valid.to(tl.int32)
        before = carry_count + tl.cumsum(v, 0) - v  # real tokens before t
        c0 = tl.maximum(tl.associative_scan(tl.where(start, before, 0), 0, _max_combine), carry_c0)
        tl.store(c0_ptr + base + t, c0, mask=t < T)
        carry_count = carry_count + tl.sum(v, 0)
        carry_c0 = tl.max(c0, 0)
        if HAS_PAD:
            pv = (valid & (tl.load(pad_ptr + base + t, mask=t < T, other=0) != 0)).to(tl.int32)
            pads_before = carry_pads + tl.cumsum(pv, 0) - pv
            p0 = tl.maximum(tl.associative_scan(tl.where(start, pads_before, 0), 0, _max_combine), carry_p0)
            tl.store(p0_ptr + base + t, p0, mask=t < T)
            carry_pads = carry_pads + tl.sum(pv, 0)
            carry_p0 = tl.max(p0, 0)
    total = carry_count
    total_pads = carry_pads
    tl.debug_barrier()  # c0 is read back below, possibly by other threads
    carry_after = tl.full((), 0, tl.int32)
    carry_c1 = total
    carry_pads_after = tl.full((), 0, tl.int32)
    carry_p1 = total_pads
    for k in range(n_chunks):
        t = (n_chunks - 1 - k) * CHUNK + offs
        ok = t < T
        valid, _ = _valid_and_start(
            mask_ptr, pos_ptr, ign_ptr, base, t, T, seg, HAS_MASK, HAS_POS, HAS_IGNORE
        )
        _, next_starts = _valid_and_start(
            mask_ptr, pos_ptr, ign_ptr, base, t + 1, T, seg, HAS_MASK, HAS_POS, HAS_IGNORE
        )
        v = valid.to(tl.int32)
        upto = total - (carry_after + tl.cumsum(v, 0, reverse=True)) + v  # real tokens in [0, t]
        c1 = tl.associative_scan(tl.where(next_starts, upto, total), 0, _min_combine, reverse=True)
        c1 = tl.minimum(c1, carry_c1)
        length = c1 - tl.load(c0_ptr + base + t, mask=ok, other=0)
        keep = valid & (length > 0)
        if HAS_PAD:
            pv = (valid & (tl.load(pad_ptr + base + t, mask=ok, other=0) != 0)).to(tl.int32)
            pads_upto = total_pads - (carry_pads_after + tl.cumsum(pv, 0, reverse=True)) + pv
            p1 = tl.associative_scan(
                tl.where(next_starts, pads_upto, total_pads), 0, _min_combine, reverse=True
            )
            p1 = tl.minimum(p1, carry_p1)
            keep = keep & (p1 - tl.load(p0_ptr + base + t, mask=ok, other=0) != length)  # not all pads
            carry_pads_after = carry_pads_after + tl.sum(pv, 0)
            carry_p1 = tl.min(p1, 0)
        s = tl.where(keep, scale_from_length(tl.maximum(length, 1), d, alpha_bits), 0.0)
        tl.store(out_ptr + base + t, s, mask=ok)
        tl.store(out2_ptr + base + t, s, mask=t < T * store2)  # store2: 0 or 1
        carry_after = carry_after + tl.sum(v, 0)
        carry_c1 = tl.min(c1, 0)
    tl.debug_barrier()  # c0 may be rewritten by a second scan of this row


@triton.jit(do_not_specialize=["T", "alpha_bits"])
def segment_scales_kernel(
    mask_ptr,
    pos_ptr,
    out_ptr,
    out2_ptr,
    flag_ptr,
    c0_ptr,
    pad_ptr,
    p0_ptr,
    ign_ptr,
    T,
    d,
    alpha_bits,
    HAS_MASK: tl.constexpr,
    SEG_IDS: tl.constexpr,
    HAS_POS: tl.constexpr,
    HAS_PAD: tl.constexpr,
    HAS_IGNORE: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """One program per batch row: the scale of each of its ``T`` tokens into ``out_ptr``.

    ``SEG_IDS`` (a mask that may hold values above 1): the mask is read as segment ids when any
    row of the batch holds one above 1, which no single program can know. So each row stores
    ``flag = (its largest id > 1)`` and its scales under the segment-id reading into ``out_ptr``;
    into ``out2_ptr`` goes its reading as a 0/1 mask. The two differ only for a row with ids
    <= 1 and a hole (a 0 between real tokens); otherwise the same values go to both. The noise
    kernel picks ``out_ptr`` where any flag is set, ``out2_ptr`` otherwise.
    """
    b = tl.program_id(0)
    base = b.to(tl.int64) * T
    if SEG_IDS:
        offs = tl.arange(0, CHUNK)
        row_max = tl.full((), 0, mask_ptr.dtype.element_ty)
        first = tl.full((), 2147483647, tl.int32)
        last = tl.full((), -1, tl.int32)
        count = tl.full((), 0, tl.int32)
        for ci in range(tl.cdiv(T, CHUNK)):
            t = ci * CHUNK + offs
            m = tl.load(mask_ptr + base + t, mask=t < T, other=0)
            real = m != 0
            row_max = tl.maximum(row_max, tl.max(m, 0))
            first = tl.minimum(first, tl.min(tl.where(real, t, 2147483647), 0))
            last = tl.maximum(last, tl.max(tl.where(real, t, -1), 0))
            count = count + tl.sum(real.to(tl.int32), 0)
        tl.store(flag_ptr + b, (row_max > 1).to(tl.int32))
        two_readings = (row_max <= 1) & (count > 0) & (last - first + 1 > count)
        _scan_row(
            mask_ptr, pos_ptr, base, T, True, d, alpha_bits, out_ptr, out2_ptr, 1 - two_readings.to(tl.int32), c0_ptr, pad_ptr, p0_ptr, ign_ptr,
            HAS_MASK, HAS_POS, HAS_PAD, HAS_IGNORE, CHUNK,
        )  # fmt: skip
        if two_readings:
            _scan_row(
                mask_ptr, pos_ptr, base, T, False, d, alpha_bits, out2_ptr, out2_ptr, 0, c0_ptr, pad_ptr, p0_ptr, ign_ptr,
                HAS_MASK, HAS_POS, HAS_PAD, HAS_IGNORE, CHUNK,
            )  # fmt: skip
    else:
        _scan_row(
            mask_ptr, pos_ptr, base, T, False, d, alpha_bits, out_ptr, out_ptr, 0, c0_ptr, pad_ptr, p0_ptr, ign_ptr,
            HAS_MASK, HAS_POS, HAS_PAD, HAS_IGNORE, CHUNK,
        )  # fmt: skip
