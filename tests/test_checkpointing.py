"""Activation checkpointing around the input embedding: the forward and its recompute see one noise.

The rule under test is stated in ``neftune.activation.checkpointing``: a reentrant checkpoint's no-grad forward
is noised when its backward will run (a genuine ``no_grad`` pass stays clean), and a recompute during
backward repeats the forward's draw (torch restores its RNG; neftune restores its private generator).
Each test records the noise of every embedding call (forward and recompute) and checks them bit for
bit, then checks the loss and the gradients against a manual computation fed the very same noised
embeddings. Issue 22 item 8.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.checkpoint import checkpoint

import neftune

from conftest import NoiseRecorder, padded_batch, tiny_llama

pytest.importorskip("transformers")

ALPHA = 5.0


class Outputs:
    """Records every noised output of an embedding (forward and recompute), detached."""

    def __init__(self, embedding: torch.nn.Module):
        self.values: list[torch.Tensor] = []
        self.handle = embedding.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        if module.training:
            self.values.append(output.detach().clone())

    def remove(self):
        self.handle.remove()


def loss_of(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask, labels=ids).loss


def checkpointed_step(model, ids, mask, *, reentrant: bool):
    """Forward the whole model inside one checkpoint, backward; returns (loss, grads)."""
    model.zero_grad(set_to_none=True)
    if reentrant:
        # A reentrant checkpoint differentiates only through inputs that require grad: the usual
        # trick for a region that takes only token ids is an extra input that does.
        anchor = torch.ones((), requires_grad=True)
        loss = checkpoint(lambda i, m, a: loss_of(model, i, m) * a, ids, mask, anchor, use_reentrant=True)
    else:
        loss = checkpoint(loss_of, model, ids, mask, use_reentrant=False)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def manual_step(model, ids, mask, noised_embeds):
    """The same loss and gradients computed without neftune, from the given noised embeddings.

    ``noised + (e - e.detach())`` has exactly the noised values and the identity gradient to the
    embedding weights, as neftune's ``embeds + noise`` has.
    """
    model.zero_grad(set_to_none=True)
    clean = model.get_input_embeddings()(ids)
    embeds = noised_embeds + (clean - clean.detach())
    loss = model(inputs_embeds=embeds, attention_mask=mask, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_consistent(model, ids, mask, outputs, loss, grads):
    """Forward and recompute got one noise, and loss and gradients are those of that noise."""
    forward, recompute = outputs.values
    torch.testing.assert_close(recompute, forward, rtol=0, atol=0)
    with torch.no_grad():
        clean = model.get_input_embeddings()(ids)
    assert (forward - clean)[mask.bool()].abs().min() > 0, "the forward was noised"
    handle = neftune.get_handle(model)
    neftune.deactivate(handle)
    outputs.remove()
    manual_loss, manual_grads = manual_step(model, ids, mask, forward)
    torch.testing.assert_close(loss, manual_loss)
    assert grads.keys() == manual_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], manual_grads[name], msg=name)


# ----------------------------------------------------------------------------- (a) reentrant
@pytest.mark.parametrize("seed", [None, 3])
def test_reentrant_checkpoint_forward_and_recompute_get_the_same_noise(seed):
    model = tiny_llama().train()
    ids, mask, _ = padded_batch()
    neftune.activate(model, ALPHA, seed=seed)
    outputs = Outputs(model.get_input_embeddings())
    loss, grads = checkpointed_step(model, ids, mask, reentrant=True)
    assert len(outputs.values) == 2  # the no-grad forward and the recompute in backward
    assert_consistent(model, ids, mask, outputs, loss, grads)


def test_no_grad_passes_stay_clean_also_around_a_reentrant_checkpoint():
    model = tiny_llama().train()
    ids, mask, _ = padded_batch()
    with torch.no_grad():
        clean = model(input_ids=ids, attention_mask=mask).logits
    neftune.activate(model, ALPHA)
    anchor = torch.ones((), requires_grad=True)

    def region(i, m, a):
        return model(input_ids=i, attention_mask=m).logits * a

    for context in (torch.no_grad, torch.inference_mode):
        with context():
            plain = model(input_ids=ids, attention_mask=mask).logits
            around = checkpoint(region, ids, mask, anchor, use_reentrant=True)
        torch.testing.assert_close(plain, clean, rtol=0, atol=0)
        torch.testing.assert_close(around, clean, rtol=0, atol=0)
    # grad enabled but no input requiring grad: the checkpoint has no backward, so no recompute
    with pytest.warns(UserWarning, match="None of the inputs have requires_grad"):
        frozen = checkpoint(region, ids, mask, torch.ones(()), use_reentrant=True)
    torch.testing.assert_close(frozen, clean, rtol=0, atol=0)
    # the differentiated one is noised
    assert not torch.equal(checkpoint(region, ids, mask, anchor, use_reentrant=True), clean)
    neftune.deactivate(model)


# ----------------------------------------------------------------------------- (b) seeded generator
@pytest.mark.parametrize("seed", [None, 0])
def test_non_reentrant_checkpoint_recomputes_the_forward_noise(seed):
    model = tiny_llama().train()
    ids, mask, _ = padded_batch()
    neftune.activate(model, ALPHA, seed=seed)
    outputs = Outputs(model.get_input_embeddings())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "recomputed noise differs" warning any more
        loss, grads = checkpointed_step(model, ids, mask, reentrant=False)
    assert len(outputs.values) == 2
    assert_consistent(model, ids, mask, outputs, loss, grads)


def test_recompute_leaves_the_seeded_stream_as_without_checkpointing():
    """The private generator is put back after a recompute: later forwards draw what they would draw."""
    ids, mask, _ = padded_batch()
    noises = {}
    for use_checkpoint in (False, True):
        model = tiny_llama().train()
        neftune.activate(model, ALPHA, seed=11)
        recorder = NoiseRecorder(model.get_input_embeddings())
        for _ in range(3):
            if use_checkpoint:
                checkpoint(loss_of, model, ids, mask, use_reentrant=False).backward()
            else:
                loss_of(model, ids, mask).backward()
        recorder.remove()
        # forward draws only (a checkpointed run also records its 3 recomputes, each after its forward)
        noises[use_checkpoint] = recorder.noise[:: 2 if use_checkpoint else 1]
        if use_checkpoint:
            for forward, recompute in zip(recorder.noise[::2], recorder.noise[1::2]):
                torch.testing.assert_close(recompute, forward, rtol=0, atol=0)
        neftune.deactivate(model)
    assert len(noises[True]) == len(noises[False]) == 3
    for with_ckpt, without in zip(noises[True], noises[False]):
        torch.testing.assert_close(with_ckpt, without, rtol=0, atol=0)


@pytest.mark.parametrize("reentrant", [False, True])
def test_two_forwards_then_one_backward_each_recompute_gets_its_own_forward_noise(reentrant):
    model = tiny_llama().train()
    ids, mask, _ = padded_batch()
    other_ids = ids.flip(0).contiguous()
    other_mask = mask.flip(0).contiguous()
    neftune.activate(model, ALPHA, seed=5)
    outputs = Outputs(model.get_input_embeddings())
    anchor = torch.ones((), requires_grad=True)

    def run(i, m):
        if reentrant:
            return checkpoint(lambda i, m, a: loss_of(model, i, m) * a, i, m, anchor, use_reentrant=True)
        return checkpoint(loss_of, model, i, m, use_reentrant=False)

    (run(ids, mask) + run(other_ids, other_mask)).backward()
    first, second, *recomputes = outputs.values
    assert len(recomputes) == 2 and not torch.equal(first, second)

    def which(t):
        return 0 if torch.equal(t, first) else 1 if torch.equal(t, second) else -1

    assert sorted(map(which, recomputes)) == [0, 1]  # each forward's noise recomputed once, bit for bit
    outputs.remove()
    neftune.deactivate(model)


def test_neftune_embedding_recompute_repeats_its_seeded_noise():
    from torch import nn

    emb = neftune.NEFTuneEmbedding(nn.Embedding(50, 16), ALPHA, seed=2).train()
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    seen = []
    emb.register_forward_hook(lambda m, a, o: seen.append(o.detach().clone()))
    out = checkpoint(lambda i: emb(i).pow(2).sum(), ids, use_reentrant=False)
    out.backward()
    assert len(seen) == 2
    torch.testing.assert_close(seen[1], seen[0], rtol=0, atol=0)
    assert not torch.equal(seen[0], nn.functional.embedding(ids, emb.weight))
    # the gradient is that of the forward's noised embeddings: d/dw sum((w[ids] + n)^2) = 2 (w[ids] + n)
    expected = torch.zeros_like(emb.weight).index_add_(0, ids.view(-1), 2 * seen[0].view(-1, 16))
    torch.testing.assert_close(emb.weight.grad, expected)


# ----------------------------------------------------------------------------- (c) stale marker
def test_transformers_marker_left_without_its_hook_does_not_block_activation():
    from transformers.integrations.neftune import activate_neftune, neftune_post_forward_hook

    from test_real_setups import assert_once_per_sequence, call_model, used_noise

    model = tiny_llama()
    ids, mask, _ = padded_batch()
    hook = activate_neftune(model, 5.0)
    with pytest.raises(ValueError, match="transformers' own NEFTune hook is active"):
        neftune.activate(model, ALPHA)
    hook.remove()  # the handle removed directly: the neftune_noise_alpha marker stays on the module
    assert model.get_input_embeddings().neftune_noise_alpha == 5.0
    handle = neftune.activate(model, ALPHA)
    assert_once_per_sequence(used_noise(model, call_model(model, ids, mask)), mask)
    neftune.deactivate(handle)
    # the same for NEFTuneEmbedding, which checks at each forward
    wrapped = neftune.NEFTuneEmbedding(torch.nn.Embedding(10, 8), ALPHA).train()
    wrapped.neftune_noise_alpha = 5.0
    hook = wrapped.register_forward_hook(neftune_post_forward_hook)
    with pytest.raises(ValueError, match="noise would be added twice"):
        wrapped(torch.arange(4).unsqueeze(0))
    hook.remove()
    wrapped(torch.arange(4).unsqueeze(0))  # marker alone: fine


def test_a_recompute_whose_forward_was_not_recorded_warns_and_keeps_the_stream():
    model = tiny_llama().train()
    ids, mask, _ = padded_batch()
    handle = neftune.activate(model, ALPHA, seed=4)
    loss = checkpoint(loss_of, model, ids, mask, use_reentrant=False)
    handle.set_progress(1)  # a new step between forward and backward empties the record
    generator = handle.generator(torch.device("cpu"))
    before = generator.get_state()
    with pytest.warns(UserWarning, match="the forward call it repeats was not recorded"):
        loss.backward()
    torch.testing.assert_close(generator.get_state(), before, rtol=0, atol=0)
    neftune.deactivate(handle)
