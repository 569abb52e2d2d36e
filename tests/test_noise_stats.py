"""Statistical tests of add_noise: magnitude, range, mean, padding, layouts. Bounds derive from the math
(see conftest.sq_norm_sd); no tolerance here was tuned to make a test pass."""

from __future__ import annotations

import math

import pytest
import torch

import neftune
from neftune.noise import EPS_VARIANCE, noised, segment_lengths

from conftest import Z, assert_sequence_norm, expected_sq_norm, sq_norm_sd

D = 64
LENGTHS = [1, 2, 3, 7, 64, 300, 1000, 2048]


def _padded_mask(lengths, total, left=False):
    mask = torch.zeros(len(lengths), total, dtype=torch.long)
    for i, n in enumerate(lengths):
        if left:
            mask[i, total - n :] = 1
        else:
            mask[i, :n] = 1
    return mask


def _sequences_padded(noise, mask):
    return [noise[i][mask[i].bool()] for i in range(noise.shape[0])]


def _noise(shape, alpha, dist="uniform", seed=0, dtype=torch.float32, **kw):
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(shape, dtype=dtype)
    return (neftune.add_noise(x, alpha, distribution=dist, generator=gen, **kw) - x).float()


@pytest.mark.parametrize("distribution", ["uniform", "gaussian", "symmetric"])
@pytest.mark.parametrize("left", [False, True])
def test_padded_batches_per_sequence_norm(distribution, left):
    alpha = 5.0
    mask = _padded_mask(LENGTHS, max(LENGTHS), left=left)
    noise = _noise((len(LENGTHS), max(LENGTHS), D), alpha, distribution, attention_mask=mask)
    for n, seq in zip(LENGTHS, _sequences_padded(noise, mask)):
        assert seq.shape[0] == n
        assert_sequence_norm(seq, alpha, distribution)
    assert torch.count_nonzero(noise[~mask.bool()]) == 0, "padding must get exactly zero noise"


@pytest.mark.parametrize("distribution", ["uniform", "gaussian", "symmetric"])
def test_packed_position_ids_and_cu_seqlens(distribution):
    alpha = 10.0
    lengths = [40, 120, 300, 60, 1, 3]
    total = sum(lengths) + 7  # trailing padding
    pos = torch.zeros(1, total, dtype=torch.long)
    start = 0
    for n in lengths:
        pos[0, start : start + n] = torch.arange(n)
        start += n
    mask = torch.zeros(1, total, dtype=torch.long)
    mask[0, : sum(lengths)] = 1
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    for kw in ({"position_ids": pos, "attention_mask": mask}, {"cu_seqlens": cu}):
        noise = _noise((1, total, D), alpha, distribution, seed=3, **kw)[0]
        start = 0
        for n in lengths:
            assert_sequence_norm(noise[start : start + n], alpha, distribution)
            start += n
        assert torch.count_nonzero(noise[start:]) == 0


def test_unpadded_batch_uses_row_length():
    alpha = 5.0
    noise = _noise((4, 256, D), alpha)
    for row in noise:
        assert_sequence_norm(row, alpha, "uniform")


@pytest.mark.parametrize("distribution", ["uniform", "symmetric"])
def test_elements_within_scale(distribution):
    alpha = 15.0
    mask = _padded_mask(LENGTHS, max(LENGTHS))
    noise = _noise((len(LENGTHS), max(LENGTHS), D), alpha, distribution, attention_mask=mask)
    for n, seq in zip(LENGTHS, _sequences_padded(noise, mask)):
        bound = alpha / math.sqrt(n * D)
        assert seq.abs().max().item() <= bound * (1 + 1e-6)
        if distribution == "symmetric":
            torch.testing.assert_close(seq.abs(), torch.full_like(seq, bound))


@pytest.mark.parametrize("distribution", ["uniform", "gaussian", "symmetric"])
def test_mean_is_zero(distribution):
    # mean of n i.i.d. eps has sd sqrt(Var(eps)/n); scaled by alpha/sqrt(L*d).
    alpha, length = 5.0, 2048
    noise = _noise((1, length, D), alpha, distribution)
    scale = alpha / math.sqrt(length * D)
    n = noise.numel()
    assert abs(noise.mean().item()) <= Z * scale * math.sqrt(EPS_VARIANCE[distribution] / n)


@pytest.mark.parametrize("distribution", ["uniform", "gaussian"])
def test_average_norm_over_many_sequences_is_tight(distribution):
    # Averaging m independent sequences shrinks the sd of the mean squared norm by sqrt(m).
    alpha, length, m = 5.0, 16, 512
    noise = _noise((m, length, D), alpha, distribution, seed=11)
    sq = noise.double().pow(2).sum(dim=(1, 2))
    mean = expected_sq_norm(alpha, distribution)
    sd_mean = sq_norm_sd(alpha, distribution, length * D) / math.sqrt(m)
    assert abs(sq.mean().item() - mean) <= Z * sd_mean


def test_same_sequence_same_scale_alone_padded_or_packed():
    """The property transformers breaks: noise scale must not depend on the rest of the batch."""
    alpha, n = 5.0, 40
    alone = _noise((1, n, D), alpha, "symmetric")[0]
    mask = _padded_mask([n, 300], 300)
    padded = _noise((2, 300, D), alpha, "symmetric", attention_mask=mask)[0, :n]
    pos = torch.cat([torch.arange(n), torch.arange(120), torch.arange(300)]).unsqueeze(0)
    packed = _noise((1, pos.shape[1], D), alpha, "symmetric", position_ids=pos)[0, :n]
    expected = alpha / math.sqrt(n * D)
    for noise in (alone, padded, packed):
        torch.testing.assert_close(noise.abs(), torch.full_like(noise, expected))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_dtypes(dtype):
    alpha = 5.0
    mask = _padded_mask([10, 200, 1000], 1000)
    x = torch.randn(3, 1000, D).to(dtype)
    out = neftune.add_noise(x, alpha, attention_mask=mask, generator=torch.Generator().manual_seed(0))
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.equal(out[~mask.bool()], x[~mask.bool()])
    noise = _noise((3, 1000, D), alpha, dtype=dtype, attention_mask=mask)
    # bf16 rounds each eps to 8 significant bits: relative error <= 2^-8 per element, so
    # the squared norm may drift by up to 2 * 2^-8 relative on top of the sampling sd.
    for seq in _sequences_padded(noise, mask):
        assert_sequence_norm(seq, alpha, "uniform", rel_slack=2 * 2**-8)


def test_alpha_zero_adds_nothing():
    x = torch.randn(2, 5, D)
    assert torch.equal(neftune.add_noise(x, 0.0), x)


def test_gradient_flows_and_noise_has_no_graph():
    x = torch.randn(2, 6, D, requires_grad=True)
    out = neftune.add_noise(x, 5.0)
    (out * 3).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 3.0))
    _, noise = noised(x, 5.0, backend="torch")
    assert not noise.requires_grad


def test_segment_lengths_left_padding_with_position_ids():
    # Left padding as transformers builds positions: pads have position 1, real tokens 0..n-1.
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    pos = torch.tensor([[1, 1, 0, 1, 2], [0, 1, 2, 3, 4]])
    lengths = segment_lengths((2, 5), attention_mask=mask, position_ids=pos)
    assert lengths.tolist() == [[0, 0, 3, 3, 3], [5, 5, 5, 5, 5]]


def test_segment_lengths_cu_seqlens_with_trailing_padding():
    cu = torch.tensor([0, 2, 5])
    assert segment_lengths((1, 7), cu_seqlens=cu).tolist() == [[2, 2, 3, 3, 3, 0, 0]]


def test_two_dimensional_embeds_are_one_row():
    noise = _noise((50, D), 5.0, "symmetric")
    torch.testing.assert_close(noise.abs(), torch.full_like(noise, 5.0 / math.sqrt(50 * D)))


def test_expected_noise_norm():
    assert neftune.expected_noise_norm(5.0) == pytest.approx(5.0 / math.sqrt(3))
    assert neftune.expected_noise_norm(5.0, "gaussian") == pytest.approx(5.0)
