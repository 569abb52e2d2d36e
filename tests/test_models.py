"""activate() on real (tiny, config-built) transformers models: per-sequence noise inside a normal forward."""

from __future__ import annotations

import pytest
import torch

import neftune

from conftest import MODEL_FACTORIES, VOCAB, NoiseRecorder, assert_sequence_norm, tiny_gemma, tiny_t5


def _batch(lengths, total, left=False):
    ids = torch.randint(1, VOCAB, (len(lengths), total))
    mask = torch.zeros(len(lengths), total, dtype=torch.long)
    for i, n in enumerate(lengths):
        if left:
            mask[i, total - n :] = 1
        else:
            mask[i, :n] = 1
    return ids * mask, mask


def _forward(name, model, ids, mask):
    if name == "t5":
        return model(input_ids=ids, attention_mask=mask, labels=ids[:, :4].contiguous())
    if name == "bert":
        return model(input_ids=ids, attention_mask=mask)
    return model(input_ids=ids, attention_mask=mask, labels=ids)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(MODEL_FACTORIES))
def test_per_sequence_noise_in_model_forward(name, dtype):
    model = MODEL_FACTORIES[name](dtype)
    model.train()
    alpha = 5.0
    handle = neftune.activate(model, alpha, seed=0)
    called = dict(handle.targets).get("encoder.embed_tokens", handle.embedding)  # T5: the encoder's copy
    recorder = NoiseRecorder(called)
    lengths = [3, 40, 17]
    ids, mask = _batch(lengths, 40, left=(name == "gpt2"))
    out = _forward(name, model, ids, mask)
    loss = out.loss if out.loss is not None else out.logits.float().mean()
    loss.backward()
    noise = recorder.noise[0]
    slack = 2 * 2**-8 if dtype == torch.bfloat16 else 1e-4
    for i, n in enumerate(lengths):
        seq = noise[i][mask[i].bool()]
        assert seq.shape[0] == n
        assert_sequence_norm(seq, alpha, "uniform", rel_slack=slack)
    assert torch.count_nonzero(noise[~mask.bool()]) == 0
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    recorder.remove()
    handle.remove()
    assert not neftune.is_active(model)


def test_positional_call_still_sees_mask():
    model = MODEL_FACTORIES["llama"]()
    model.train()
    handle = neftune.activate(model, 5.0, distribution="symmetric")
    recorder = NoiseRecorder(handle.embedding)
    ids, mask = _batch([4, 30], 30)
    model(ids, mask)  # LlamaForCausalLM.forward(input_ids, attention_mask, ...)
    noise = recorder.noise[0]
    assert torch.count_nonzero(noise[0, 4:]) == 0
    torch.testing.assert_close(noise[0, :4].abs().max(), torch.tensor(5.0 / (4 * 64) ** 0.5))


def test_t5_encoder_and_decoder_each_get_their_own_lengths():
    """The shared embedding feeds both sides: both are noised, each scaled by its own lengths."""
    model = tiny_t5()
    model.train()
    handle = neftune.activate(model, 5.0, distribution="symmetric")
    paths = [p for p, _ in handle.targets]
    assert paths == ["shared", "encoder.embed_tokens", "decoder.embed_tokens"]
    targets = dict(handle.targets)
    enc_rec = NoiseRecorder(targets["encoder.embed_tokens"])
    dec_rec = NoiseRecorder(targets["decoder.embed_tokens"])
    ids, mask = _batch([5, 9], 9)
    dec_ids, dec_mask = _batch([2, 6], 6)
    model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids, decoder_attention_mask=dec_mask)
    (enc,), (dec,) = enc_rec.noise, dec_rec.noise
    assert enc.shape[1] == 9 and dec.shape[1] == 6
    torch.testing.assert_close(enc[0, :5].abs(), torch.full((5, 64), 5.0 / (5 * 64) ** 0.5))
    torch.testing.assert_close(dec[0, :2].abs(), torch.full((2, 64), 5.0 / (2 * 64) ** 0.5))
    assert torch.count_nonzero(dec[0, 2:]) == 0


def test_gemma_noise_lands_after_embedding_scale():
    """Gemma scales embeddings by sqrt(d) inside the embedding module; the noise is added to that
    module's output, so its norm is alpha/sqrt(3) per sequence in the scaled space (not x sqrt(d))."""
    model = tiny_gemma()
    model.train()
    handle = neftune.activate(model, 5.0, seed=1)
    assert type(handle.embedding).__name__ == "GemmaTextScaledWordEmbedding"
    recorder = NoiseRecorder(handle.embedding)
    ids, mask = _batch([50, 50], 50)
    model(input_ids=ids, attention_mask=mask)
    for row in recorder.noise[0]:
        assert_sequence_norm(row, 5.0, "uniform")


def test_padding_free_packed_llama_via_position_ids():
    model = MODEL_FACTORIES["llama"]()
    model.train()
    handle = neftune.activate(model, 5.0, distribution="symmetric")
    recorder = NoiseRecorder(handle.embedding)
    lengths = [40, 12, 3]
    pos = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    ids = torch.randint(1, VOCAB, pos.shape)
    model(input_ids=ids, position_ids=pos, labels=ids)
    noise = recorder.noise[0][0]
    start = 0
    for n in lengths:
        torch.testing.assert_close(noise[start : start + n].abs(), torch.full((n, 64), 5.0 / (n * 64) ** 0.5))
        start += n


def test_transformers_hook_on_t5_shared_embedding_adds_nothing():
    """Why we hook every tied embedding: in transformers >= 5 the `shared` module that
    get_input_embeddings() returns is never called, so its hook never fires."""
    from transformers.integrations.neftune import activate_neftune

    model = tiny_t5()
    model.train()
    activate_neftune(model, 5.0)
    rec = NoiseRecorder(model.encoder.embed_tokens)
    ids, mask = _batch([5, 9], 9)
    model(input_ids=ids, attention_mask=mask, labels=ids)
    assert torch.count_nonzero(rec.noise[0]) == 0
