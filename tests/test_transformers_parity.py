"""scaling="batch" reproduces transformers' hook bit for bit; the drop-in functions fix its scaling."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.integrations import neftune as hf_neftune

import neftune

from conftest import VOCAB, NoiseRecorder, tiny_llama


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_batch_scaling_matches_transformers_bit_for_bit(dtype):
    ids = torch.randint(1, VOCAB, (3, 17))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0

    def logits(use_ours: bool):
        model = tiny_llama(dtype)
        model.train()
        if use_ours:
            h = neftune.activate(model, 5.0, scaling="batch")
        else:
            h = hf_neftune.activate_neftune(model, 5.0)
        torch.manual_seed(1234)
        out = model(input_ids=ids, attention_mask=mask).logits
        h.remove()
        return out

    assert torch.equal(logits(True), logits(False))


def test_hook_function_matches_on_raw_tensor():
    emb = torch.nn.Embedding(VOCAB, 32)
    emb.neftune_noise_alpha = 7.0
    ids = torch.randint(0, VOCAB, (4, 9))
    torch.manual_seed(5)
    theirs = hf_neftune.neftune_post_forward_hook(emb, (ids,), emb(ids))
    torch.manual_seed(5)
    ours = neftune.neftune_post_forward_hook(emb, (ids,), emb(ids))
    # Same formula without a mask (row length); same distribution, not the same draws.
    assert theirs.shape == ours.shape
    noise = (ours - emb(ids)).detach()
    assert noise.abs().max() <= 7.0 / math.sqrt(9 * 32) + 1e-6
    with torch.no_grad():
        assert torch.equal(neftune.neftune_post_forward_hook(emb, (ids,), emb(ids)), emb(ids))


def test_transformers_scales_by_padded_length_ours_by_true_length():
    """The DESIGN.md table in miniature: a 40-token sequence padded to 300."""
    n, total, alpha = 40, 300, 5.0
    ids = torch.randint(1, VOCAB, (2, total))
    mask = torch.ones(2, total, dtype=torch.long)
    mask[0, n:] = 0

    def noise_of_first(activate):
        model = tiny_llama()
        model.train()
        h = activate(model)
        rec = NoiseRecorder(model.get_input_embeddings())
        model(input_ids=ids, attention_mask=mask)
        h.remove()
        return rec.noise[0]

    theirs = noise_of_first(lambda m: hf_neftune.activate_neftune(m, alpha))
    ours = noise_of_first(lambda m: neftune.activate_neftune(m, alpha))
    target = alpha / math.sqrt(3)
    # expected norm of the padded hook: target * sqrt(n / total) (= 1.05 for alpha 5)
    theirs_norm = theirs[0, :n].norm().item()
    ours_norm = ours[0, :n].norm().item()
    assert theirs_norm == pytest.approx(target * math.sqrt(n / total), rel=0.1)
    assert ours_norm == pytest.approx(target, rel=0.1)
    assert torch.count_nonzero(theirs[0, n:]) > 0 and torch.count_nonzero(ours[0, n:]) == 0


def test_drop_in_deactivate_with_trainer_signature():
    model = tiny_llama()
    h = neftune.activate_neftune(model, 5.0, accelerator=None)
    assert neftune.is_active(model)
    neftune.deactivate_neftune(model, h)
    assert not neftune.is_active(model)
    assert not model.get_input_embeddings()._forward_hooks
