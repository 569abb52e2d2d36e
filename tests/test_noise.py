"""One noise path: ``add_noise``, the activation hook, ``NEFTuneEmbedding`` and the kernel's
reference all compute the same thing, bit for bit, from the same random state.

These are exact (bitwise) comparisons, not statistics: the three callers must reach the same
function (:func:`neftune.noise.noised`) with the same arguments, so the same generator state
must give identical tensors, in float32 and in bfloat16 (where a path that sampled in another
dtype, or scaled in another order, would differ in the last bits).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neftune
from neftune.kernels import reference_add_noise
from neftune.noise import noised, token_scales

from conftest import VOCAB, padded_batch, tiny_llama

DTYPES = [torch.float32, torch.bfloat16]


def _mask() -> torch.Tensor:
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[0, 6:] = 0
    mask[2, 2:] = 0
    return mask


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("distribution", neftune.DISTRIBUTIONS)
def test_kernel_reference_is_the_path_add_noise_runs(dtype, distribution):
    x = torch.randn(3, 10, 16).to(dtype)
    mask = _mask()
    scales = token_scales(x, 7.0, attention_mask=mask)
    ours = neftune.add_noise(
        x,
        7.0,
        attention_mask=mask,
        distribution=distribution,
        backend="torch",
        generator=torch.Generator().manual_seed(5),
    )
    ref = reference_add_noise(
        x, scales, distribution=distribution, generator=torch.Generator().manual_seed(5)
    )
    assert ours.dtype == dtype
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hook_adds_what_add_noise_adds(dtype):
    """The hook on a model's embedding and add_noise on that embedding's output agree bitwise."""
    model = tiny_llama(dtype)
    model.train()
    ids, mask, _ = padded_batch()
    emb = model.get_input_embeddings()
    with torch.no_grad():
        clean = emb(ids)
    seen = {}
    handle = neftune.activate(model, 5.0, distribution="gaussian")
    recorder = emb.register_forward_hook(lambda m, a, out: seen.setdefault("x", out.detach().clone()))
    torch.manual_seed(11)
    model(input_ids=ids, attention_mask=mask)
    recorder.remove()
    handle.remove()
    torch.manual_seed(11)
    expected = neftune.add_noise(clean, 5.0, attention_mask=mask, distribution="gaussian", backend="torch")
    assert torch.equal(seen["x"], expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_neftune_embedding_adds_what_add_noise_adds(dtype):
    base = nn.Embedding(VOCAB, 16).to(dtype)
    ids, mask, _ = padded_batch()
    module = neftune.NEFTuneEmbedding(base, 10.0, distribution="symmetric")
    module.train()
    torch.manual_seed(3)
    out = module(ids, attention_mask=mask)
    with torch.no_grad():
        clean = base(ids)
    torch.manual_seed(3)
    expected = neftune.add_noise(clean, 10.0, attention_mask=mask, distribution="symmetric", backend="torch")
    assert torch.equal(out.detach(), expected)


def test_seeded_module_and_seeded_hook_draw_the_same_stream():
    """Both take their private generator from the same NoiseStream: seed 7 gives the same noise."""
    model = tiny_llama()
    model.train()
    ids, mask, _ = padded_batch()
    emb = model.get_input_embeddings()
    seen = {}
    handle = neftune.activate(model, 5.0, seed=7)
    rec = emb.register_forward_hook(lambda m, a, out: seen.setdefault("x", out.detach().clone()))
    model(input_ids=ids, attention_mask=mask)
    rec.remove()
    handle.remove()
    module = neftune.NEFTuneEmbedding(emb, 5.0, seed=7)
    module.train()
    assert torch.equal(module(ids, attention_mask=mask).detach(), seen["x"])


def test_batch_scaling_matches_transformers_formula_bitwise():
    """scaling='batch' is transformers' hook: U(-m, m) with m = alpha / sqrt(T d), same draws."""
    x = torch.randn(2, 9, 8)
    torch.manual_seed(0)
    ours, noise = noised(x, 5.0, backend="torch", scaling="batch")
    torch.manual_seed(0)
    mag = 5.0 / torch.sqrt(torch.tensor(9 * 8))
    theirs = x + torch.zeros_like(x).uniform_(-mag, mag)
    assert torch.equal(ours, theirs)
    assert torch.equal(ours, x + noise)


def test_noised_never_modifies_its_input_on_the_torch_path():
    x = torch.randn(2, 5, 8)
    before = x.clone()
    out, noise = noised(x, 5.0, backend="torch")
    assert torch.equal(x, before) and noise is not None and out is not x
