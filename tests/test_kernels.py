"""Tests for the fused NEFTune noise kernel (neftune.kernels).

The Triton kernel runs here through the Triton CPU interpreter (TRITON_INTERPRET=1),
which is slow (a few microseconds per element), so tensors are kept small and the
random samples shared by several tests are drawn once per module.

How the statistical bounds are derived
--------------------------------------
Write a token row's noise as n_j = s * eps_j, j = 1..d, eps_j i.i.d. with
    m2 = E[eps^2], m4 = E[eps^4]:
    uniform U(-1, 1):  m2 = 1/3, m4 = 1/5  -> Var(eps^2) = m4 - m2^2 = 1/5 - 1/9 = 4/45
    gaussian N(0, 1):  m2 = 1,   m4 = 3    -> Var(eps^2) = 2
    symmetric +-1:     m2 = 1,   m4 = 1    -> Var(eps^2) = 0 (the norm is not random)
Row sum of squares S = sum_j n_j^2 = s^2 * sum_j eps_j^2, so
    E[S] = s^2 * d * m2,    Var(S) = s^4 * d * (m4 - m2^2).
By the CLT S is close to normal for d in the hundreds, so |S - E[S]| <= 6 sd(S)
fails with probability ~1e-9 per row for a symmetric tail. The upper tail of a
sum of squares is heavier than normal (chi-square-like, skewness sqrt(8/d) for
gaussian); for d = 256, P(chi2_256 > mean + 6 sd) = 9.5e-8 (the lower tail is
2e-14), so over the 48 rows of a test the false-failure rate stays below 1e-5.
For the mean of n i.i.d. eps: sd = sqrt(m2 / n), bound 6 sd. For the lag-1 sample
correlation of i.i.d. zero-mean samples, sum_i eps_i eps_{i+1} / sum_i eps_i^2 has
sd ~ 1/sqrt(n) (each product has variance m2^2 and consecutive products are
uncorrelated), bound 6/sqrt(n).

Kolmogorov-Smirnov: scipy.stats' one-sample test against the exact CDF and two-sample
test (kernel vs reference) at level 0.001 (p >= 0.001 passes). For the discrete +-1
distribution the test is conservative (the statistic is stochastically smaller).

Everything runs with fixed seeds, so the suite is deterministic; the bounds only make
sure that any correct implementation (or seed) would pass too.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from scipy import stats as scipy_stats

_PREV_INTERPRET = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported anywhere in this module
triton = pytest.importorskip("triton", reason="triton is not installed (pip install triton)")

from neftune.kernels import (  # noqa: E402
    DISTRIBUTIONS,
    fused_add_noise,
    reference_add_noise,
    triton_available,
)
from neftune.kernels._triton import pick_blocks  # noqa: E402

from conftest import KS_LEVEL, ks_two_sample_p  # noqa: E402


def _restore_interpret() -> None:
    if _PREV_INTERPRET is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _PREV_INTERPRET


# Don't leak interpreter mode into other test modules collected after this one;
# the fixture below turns it on only while this module's tests run.
_restore_interpret()


@pytest.fixture(autouse=True, scope="module")
def _triton_interpreter():
    os.environ["TRITON_INTERPRET"] = "1"
    yield
    _restore_interpret()


M2 = {"uniform": 1 / 3, "gaussian": 1.0, "symmetric": 1.0}
M4 = {"uniform": 1 / 5, "gaussian": 3.0, "symmetric": 1.0}
SIGMAS = 6.0
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _int_view(t: torch.Tensor) -> torch.Tensor:
    """Bit pattern of a float tensor, for bitwise comparisons."""
    return t.contiguous().view({4: torch.int32, 2: torch.int16}[t.element_size()])


def _round_like_triton(x32: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """What the kernel's final ``.to(dtype)`` store does to an fp32 value.

    Compiled Triton lowers fp32 -> bf16/fp16 to a round-to-nearest-even conversion,
    like torch. The Triton 3.x CPU *interpreter* converts fp32 -> bf16 by dropping the
    low 16 bits (round toward zero), so under TRITON_INTERPRET=1 the bf16 result is the
    truncation. Either way the value is rounded exactly once, from the fp32 result.
    """
    if dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1":
        return (x32.contiguous().view(torch.int32) & ~0xFFFF).view(torch.float32).to(dtype)
    return x32.to(dtype)


#: Exact CDFs of the unit noise, for the one-sample Kolmogorov-Smirnov test.
CDFS = {"uniform": scipy_stats.uniform(loc=-1.0, scale=2.0).cdf, "gaussian": scipy_stats.norm.cdf}


# ---------------------------------------------------------------------------
# Shared samples: a padded (B, T, d) batch with a different scale on every row.
# ---------------------------------------------------------------------------
B, T, D = 4, 16, 256
LENGTHS = [16, 11, 16, 5]  # right padding after LENGTHS[b] tokens


def _batch_scales() -> torch.Tensor:
    scales = torch.empty(B, T)
    for b in range(B):
        for t in range(T):
            scales[b, t] = 0.05 * (1 + (b * T + t) % 7) if t < LENGTHS[b] else 0.0
    return scales


_SAMPLES: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}


def _noise(impl: str, distribution: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise, scales) for x = 0: noise[b, t] = scale[b, t] * eps exactly (fp32)."""
    key = (impl, distribution)
    if key not in _SAMPLES:
        x = torch.zeros(B, T, D)
        scales = _batch_scales()
        if impl == "triton":
            out = fused_add_noise(x, scales, distribution=distribution, seed=1234)
        else:
            gen = torch.Generator().manual_seed(1234)
            out = reference_add_noise(x, scales, distribution=distribution, generator=gen)
        _SAMPLES[key] = (out, scales)
    return _SAMPLES[key]


def _eps(impl: str, distribution: str) -> torch.Tensor:
    """Unit noise of the non-padding tokens, shape (n_tokens, D), float64."""
    noise, scales = _noise(impl, distribution)
    keep = scales > 0
    return noise[keep].double() / scales[keep].double()[:, None]


IMPLS = ["triton", "reference"]


# ---------------------------------------------------------------------------
# Availability
# ---------------------------------------------------------------------------
def test_triton_available_under_interpreter():
    assert triton_available()
    assert triton_available(torch.zeros(1))


def test_cpu_tensor_without_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not triton_available(torch.zeros(1))
    with pytest.raises(RuntimeError, match="reference_add_noise"):
        fused_add_noise(torch.zeros(2, 4), torch.ones(2), distribution="uniform", seed=0)


# ---------------------------------------------------------------------------
# Statistics (kernel and reference alike)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_row_norms_match_theory(impl, distribution):
    noise, scales = _noise(impl, distribution)
    s = scales.double()
    sumsq = noise.double().pow(2).sum(-1)  # (B, T)
    expected = s**2 * D * M2[distribution]
    sd = s**2 * math.sqrt(D * (M4[distribution] - M2[distribution] ** 2))
    # fp32 rounding of s * eps is < 2^-24 relative per element -> < 2^-22 on the sum.
    tol = SIGMAS * sd + 2.0**-22 * expected
    assert torch.all((sumsq - expected).abs() <= tol), (sumsq - expected).abs().max()
    # Aggregate over all real tokens: sum_r S_r / s_r^2 has mean n D m2, var n D (m4 - m2^2).
    keep = scales > 0
    n = int(keep.sum())
    total = (sumsq[keep] / s[keep] ** 2).sum().item()
    total_sd = math.sqrt(n * D * (M4[distribution] - M2[distribution] ** 2))
    assert abs(total - n * D * M2[distribution]) <= SIGMAS * total_sd + 1e-6 * n * D


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_mean_is_zero(impl, distribution):
    eps = _eps(impl, distribution)
    bound = SIGMAS * math.sqrt(M2[distribution] / eps.numel())
    assert abs(eps.mean().item()) <= bound


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_padding_gets_exactly_zero_noise(impl, distribution):
    noise, scales = _noise(impl, distribution)
    assert torch.all(noise[scales == 0] == 0)
    assert torch.all(noise[scales > 0].abs().amax(-1) > 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_uniform_is_bounded_by_scale_and_fills_the_interval(impl):
    noise, scales = _noise(impl, "uniform")
    # x = 0, so out = fl(s * eps) with |eps| <= 1: rounding is monotone, |out| <= s exactly.
    assert torch.all(noise.abs() <= scales[..., None])
    eps = _eps(impl, "uniform")
    # P(max eps < 0.99) = 0.995^n; n = 48 tokens x 256 = 12288 here gives e^-61.
    assert eps.max() > 0.99 and eps.min() < -0.99


@pytest.mark.parametrize("impl", IMPLS)
def test_symmetric_is_exactly_plus_minus_scale(impl):
    noise, scales = _noise(impl, "symmetric")
    keep = scales > 0
    # s * (+-1) is exact in fp32, so |noise| == s bit for bit.
    assert torch.equal(noise[keep].abs(), scales[keep][:, None].expand(-1, D))


@pytest.mark.parametrize("impl", IMPLS)
def test_gaussian_has_tails(impl):
    eps = _eps(impl, "gaussian")
    # P(all |z| < 3) = 0.9973^n = e^-33 for n = 12288: a variance or clipping bug shows here.
    assert eps.abs().max() > 3.0
    if impl == "triton":  # Box-Muller with u1 >= 1e-7 caps |z| at sqrt(-2 ln 1e-7) = 5.68
        assert eps.abs().max() <= 5.7


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("distribution", ["uniform", "gaussian"])
def test_ks_against_exact_cdf(impl, distribution):
    eps = _eps(impl, distribution).flatten().numpy()
    p = scipy_stats.kstest(eps, CDFS[distribution], method="asymp").pvalue
    assert p >= KS_LEVEL, p


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_kernel_matches_reference_distribution_ks(distribution):
    p = ks_two_sample_p(_eps("triton", distribution), _eps("reference", distribution))
    assert p >= KS_LEVEL, p


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_no_correlation_between_neighbours(distribution):
    """Lag-1 correlation along d, across tokens, and across column blocks ~ 0 (catches reused counters)."""
    eps = _eps("triton", distribution)  # (n_tokens, D)
    bound = SIGMAS / math.sqrt(eps[:, 1:].numel())
    assert abs((eps[:, 1:] * eps[:, :-1]).sum() / eps[:, 1:].pow(2).sum()) <= bound
    bound = SIGMAS / math.sqrt(eps[1:].numel())
    assert abs((eps[1:] * eps[:-1]).sum() / eps[1:].pow(2).sum()) <= bound
    # d spanning several kernel column blocks: the blocks must not repeat each other.
    _, block_cols, _ = pick_blocks(4, 3000)
    x = torch.zeros(4, 3000)
    e = fused_add_noise(x, torch.ones(4), distribution=distribution, seed=7).double()
    left, right = e[:, :block_cols], e[:, block_cols : 2 * block_cols]
    bound = SIGMAS / math.sqrt(left.numel())
    assert abs((left * right).sum() / left.pow(2).sum()) <= bound


def test_each_row_uses_its_own_scale():
    noise, scales = _noise("triton", "symmetric")
    assert torch.equal(noise.abs().amax(-1), scales)


# ---------------------------------------------------------------------------
# Exactness, dtypes, shapes, layouts
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_scale_leaves_input_bitwise_identical(dtype):
    x = torch.randn(3, 5, 96).to(dtype)
    x[0, 0, :4] = -0.0  # x + 0 * eps would flip these to +0.0
    scales = torch.full((3, 5), 0.3)
    scales[0, :2] = 0.0
    scales[2, 3:] = 0.0
    out = fused_add_noise(x, scales, distribution="gaussian", seed=3)
    pad = scales == 0
    assert torch.equal(_int_view(out[pad]), _int_view(x[pad]))
    assert not torch.equal(out[~pad], x[~pad])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 8, 96), (16, 100), (1, 3, 7)])
def test_dtype_and_shape_preserved_and_math_in_fp32(dtype, shape):
    x = torch.randn(shape).to(dtype)
    scales = torch.rand(shape[:-1]) + 0.1
    out = fused_add_noise(x, scales, distribution="uniform", seed=11)
    assert out.dtype == dtype and out.shape == x.shape and out.device == x.device
    # Same seed => same eps. The kernel adds in fp32 and rounds once at the store, so
    # the low-precision result equals the fp32 result rounded to the dtype.
    out32 = fused_add_noise(x.float(), scales, distribution="uniform", seed=11)
    assert torch.equal(_int_view(out), _int_view(_round_like_triton(out32, dtype)))
    assert torch.all((out32 - x.float()).abs() <= scales[..., None] * (1 + 2**-20))


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_same_seed_reproduces_other_seed_differs(distribution):
    x = torch.randn(2, 6, 100)
    s = torch.full((2, 6), 0.5)
    a = fused_add_noise(x, s, distribution=distribution, seed=42)
    b = fused_add_noise(x, s, distribution=distribution, seed=42)
    c = fused_add_noise(x, s, distribution=distribution, seed=43)
    assert torch.equal(a, b)
    # Even for +-1 noise, agreement between independent seeds is ~50%, never ~100%.
    assert (a == c).double().mean() < 0.75


def test_seed_is_any_python_int():
    x, s = torch.zeros(2, 16), torch.ones(2)
    outs = [fused_add_noise(x, s, distribution="uniform", seed=k) for k in (0, 2**40 + 5, -1, 2**70)]
    for o in outs:
        assert o.abs().max() <= 1 and o.abs().max() > 0
    assert not torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("inplace", [False, True])
def test_noise_independent_of_memory_layout(inplace):
    base = torch.randn(6, 2, 100)  # (T, B, d)
    x = base.transpose(0, 1)  # (B, T, d): rows strided, last dim contiguous
    s = torch.rand(2, 6)
    want = fused_add_noise(x.contiguous(), s, distribution="gaussian", seed=5)
    ptr = x.data_ptr()
    got = fused_add_noise(x, s, distribution="gaussian", seed=5, inplace=inplace)
    assert torch.equal(got, want)
    if inplace:
        assert got is x and x.data_ptr() == ptr and torch.equal(base.transpose(0, 1), want)


@pytest.mark.parametrize("inplace", [False, True])
def test_hidden_dim_not_contiguous(inplace):
    base = torch.randn(2, 96, 5)  # (B, d, T)
    x = base.transpose(1, 2)  # (B, T, d) with stride(-1) != 1
    s = torch.rand(2, 5)
    want = fused_add_noise(x.contiguous(), s, distribution="symmetric", seed=9)
    got = fused_add_noise(x, s, distribution="symmetric", seed=9, inplace=inplace)
    assert torch.equal(got, want)
    if inplace:
        assert got is x and torch.equal(base.transpose(1, 2), want)


@pytest.mark.parametrize("d", [96, 100])
def test_inplace_writes_storage_and_masks_the_tail(d):
    base = torch.full((8, 128), 7.0)
    x = base[:, :d]  # row stride 128 > d: a write past column d would hit the sentinel
    s = torch.ones(8)
    want = fused_add_noise(x.clone(), s, distribution="uniform", seed=2)
    got = fused_add_noise(x, s, distribution="uniform", seed=2, inplace=True)
    assert got is x and got.data_ptr() == base.data_ptr()
    assert torch.equal(base[:, :d], want)
    assert torch.all(base[:, d:] == 7.0)
    assert torch.all(want != 7.0)  # every column up to d got noise


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1), (3, 1), (1, 5), (2, 0, 8), (0, 4), (5,)])
def test_tiny_and_empty_tensors(shape):
    x = torch.randn(shape)
    s = torch.ones(shape[:-1])
    out = fused_add_noise(x, s, distribution="uniform", seed=0)
    assert out.shape == x.shape
    assert torch.all((out - x).abs() <= 1)
    if x.numel():
        assert not torch.equal(out, x)
    assert fused_add_noise(x, s, distribution="uniform", seed=0, inplace=True) is x


def test_input_validation():
    x = torch.zeros(2, 3, 8)
    with pytest.raises(ValueError, match="shape"):
        fused_add_noise(x, torch.ones(2, 4), distribution="uniform", seed=0)
    with pytest.raises(ValueError, match="distribution"):
        fused_add_noise(x, torch.ones(2, 3), distribution="laplace", seed=0)
    with pytest.raises(TypeError):
        fused_add_noise(x.double(), torch.ones(2, 3), distribution="uniform", seed=0)
    with pytest.raises(ValueError, match="shape"):
        reference_add_noise(x, torch.ones(3), distribution="uniform")


def test_scales_in_other_dtypes_are_cast_to_fp32():
    x = torch.zeros(2, 32)
    a = fused_add_noise(x, torch.tensor([0.5, 0.25]), distribution="symmetric", seed=1)
    b = fused_add_noise(x, torch.tensor([0.5, 0.25], dtype=torch.float64), distribution="symmetric", seed=1)
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------
# Autograd
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_passes_straight_through(dtype):
    x = torch.randn(2, 3, 100).to(dtype).requires_grad_()
    s = torch.full((2, 3), 0.4)
    out = fused_add_noise(x, s, distribution="gaussian", seed=0)
    assert out.requires_grad and out.grad_fn is not None
    g = torch.randn_like(out)
    out.backward(g)
    assert torch.equal(x.grad, g)


def test_gradient_through_inplace_on_nonleaf():
    leaf = torch.randn(2, 3, 64, requires_grad=True)
    y = leaf * 2.0  # like an embedding output: a non-leaf whose backward doesn't need its value
    ptr = y.data_ptr()
    before = y.detach().clone()
    z = fused_add_noise(y, torch.ones(2, 3), distribution="uniform", seed=0, inplace=True)
    assert z is y and z.data_ptr() == ptr and not torch.equal(z.detach(), before)
    g = torch.randn_like(z)
    z.backward(g)
    assert torch.equal(leaf.grad, 2.0 * g)


def test_inplace_on_leaf_requiring_grad_is_refused_by_autograd():
    x = torch.randn(2, 8, requires_grad=True)
    with pytest.raises(RuntimeError):
        fused_add_noise(x, torch.ones(2), distribution="uniform", seed=0, inplace=True)


def test_no_grad_and_embedding_pipeline():
    emb = torch.nn.Embedding(50, 96)
    ids = torch.randint(0, 50, (2, 7))
    s = torch.full((2, 7), 0.1)
    h = fused_add_noise(emb(ids), s, distribution="uniform", seed=0, inplace=True)
    h.sum().backward()
    # d sum / d weight = counts of each id: unchanged by the additive noise.
    counts = torch.bincount(ids.flatten(), minlength=50).float()
    assert torch.equal(emb.weight.grad, counts[:, None].expand(-1, 96))
    with torch.no_grad():
        out = fused_add_noise(emb(ids), s, distribution="uniform", seed=0)
    assert not out.requires_grad


# ---------------------------------------------------------------------------
# GPU (compiled kernel, not the interpreter)
# ---------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_compiled_kernel_on_cuda(monkeypatch, dtype, distribution):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    rows, d = 64, 4096 + 96
    x = torch.zeros(rows, d, device="cuda", dtype=dtype)
    s = torch.full((rows,), 1.0, device="cuda")
    s[-4:] = 0.0
    out = fused_add_noise(x, s, distribution=distribution, seed=123).double()
    assert out.dtype == torch.float64 and torch.all(out[-4:] == 0)
    eps = out[:-4]
    n = eps.numel()
    # low-precision rounding: relative error <= 2^-8 (bf16) per element -> 2^-7 on squares
    tol = SIGMAS * math.sqrt(n * (M4[distribution] - M2[distribution] ** 2)) + 2**-7 * n * M2[distribution]
    assert abs(eps.pow(2).sum().item() - n * M2[distribution]) <= tol
    assert abs(eps.mean().item()) <= SIGMAS * math.sqrt(M2[distribution] / n) + 2**-8
    assert torch.equal(out, fused_add_noise(x, s, distribution=distribution, seed=123).double())
    xg = torch.randn(rows, d, device="cuda", dtype=dtype, requires_grad=True)
    y = fused_add_noise(xg, s, distribution=distribution, seed=1)
    g = torch.randn_like(y)
    y.backward(g)
    assert torch.equal(xg.grad, g)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("distribution", ["uniform", "symmetric"])
def test_compiled_kernel_matches_interpreter_bitwise(monkeypatch, tmp_path, dtype, distribution):
    """Philox, int->float and the unfused multiply-add are exact IEEE ops, so the compiled
    kernel and the CPU interpreter must agree bit for bit (bf16 is excluded: the
    interpreter truncates where the GPU rounds to nearest even; gaussian is excluded:
    log/cos/sqrt are approximated differently)."""
    x = torch.randn(8, 3, 1000).to(dtype)
    s = torch.rand(8, 3)
    s[0, 1] = 0.0
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    gpu = fused_add_noise(x.cuda(), s.cuda(), distribution=distribution, seed=77).cpu()
    # Triton fixes interpreter or compiled mode per process: the interpreter runs in a fresh one.
    cpu = _interpreted(x, s, distribution, 77, tmp_path)
    assert torch.equal(_int_view(gpu), _int_view(cpu))


def _interpreted(x: torch.Tensor, s: torch.Tensor, distribution: str, seed: int, folder) -> torch.Tensor:
    """``fused_add_noise`` in Triton's CPU interpreter, run in a fresh process (CPU tensors in and out)."""
    import subprocess
    import sys

    src, dst = folder / "kernel_in.pt", folder / "kernel_out.pt"
    torch.save({"x": x, "s": s}, src)
    code = (
        "import sys, torch\n"
        "from neftune.kernels import fused_add_noise\n"
        "d = torch.load(sys.argv[1])\n"
        f"torch.save(fused_add_noise(d['x'], d['s'], distribution={distribution!r}, seed={seed}), sys.argv[2])\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", code, str(src), str(dst)], env=env, check=True, timeout=600)
    return torch.load(dst)


def test_interpreter_in_a_fresh_process_matches_this_one(tmp_path):
    """The helper the GPU bitwise test uses gives what the interpreter gives in this process."""
    x = torch.randn(2, 3, 64)
    s = torch.rand(2, 3)
    here = fused_add_noise(x, s, distribution="uniform", seed=5)
    assert torch.equal(_int_view(_interpreted(x, s, "uniform", 5, tmp_path)), _int_view(here))
