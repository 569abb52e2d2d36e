"""Lifecycle of activate/deactivate: no leaks, eval and no_grad clean, copies, saving, seeds, schedules."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from torch import nn

import neftune
from neftune import streams as streams_mod

from conftest import VOCAB, NoiseRecorder, hook_snapshot, tiny_llama, tiny_lora_llama


def _batch():
    ids = torch.randint(1, VOCAB, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 7:] = 0
    return {"input_ids": ids * mask, "attention_mask": mask}


def _embeds(model, batch):
    """Input-embedding output as the model sees it (captured after all hooks)."""
    out = {}
    h = model.get_input_embeddings().register_forward_hook(lambda m, a, o: out.setdefault("x", o.detach()))
    model(**batch)
    h.remove()
    return out["x"]


def test_noise_only_in_training_with_grad():
    model = tiny_llama()
    batch = _batch()
    model.eval()
    clean = _embeds(model, batch)
    h = neftune.activate(model, 10.0)
    assert torch.equal(_embeds(model, batch), clean), "eval mode must add nothing"
    model.train()
    with torch.no_grad():
        assert torch.equal(_embeds(model, batch), clean), "no_grad must add nothing"
    assert not torch.equal(_embeds(model, batch), clean), "training must add noise"
    neftune.deactivate(h)
    assert torch.equal(_embeds(model, batch), clean)


def test_deactivate_leaves_nothing_behind():
    model = tiny_llama()
    before = hook_snapshot(model)
    h = neftune.activate(model, 5.0, seed=1, schedule="cosine")
    assert hook_snapshot(model) != before
    model.train()
    model(**_batch())
    assert neftune.is_active(model)
    assert neftune.deactivate(model) is True
    assert hook_snapshot(model) == before
    assert not neftune.is_active(model)
    assert neftune.deactivate(h) is False  # second time: nothing to do
    h.remove()  # idempotent


def test_context_manager_cleans_up_on_exception():
    model = tiny_lora_llama()
    before = hook_snapshot(model)
    with pytest.raises(RuntimeError, match="boom"), neftune.noisy_embeddings(model, 5.0) as h:
        assert neftune.is_active(model) and h.active
        model.train()
        model(**_batch())
        raise RuntimeError("boom")
    assert hook_snapshot(model) == before
    assert not neftune.is_active(model)


def test_forward_that_raises_does_not_leave_stale_context():
    model = tiny_llama()
    h = neftune.activate(model, 5.0)
    model.train()
    with pytest.raises(Exception):  # noqa: B017 - any error inside forward
        model(input_ids=torch.full((1, 3), VOCAB + 5))  # out-of-range token id
    assert h._batch.depth == 0 and h._batch.tensors == {}
    h.remove()


def test_activating_twice_is_refused():
    model = tiny_llama()
    neftune.activate(model, 5.0)
    with pytest.raises(ValueError, match="already active"):
        neftune.activate(model, 5.0)
    neftune.deactivate(model)
    neftune.activate(model, 5.0).remove()


def test_refuses_when_transformers_hook_is_on():
    from transformers.integrations.neftune import activate_neftune

    model = tiny_llama()
    activate_neftune(model, 5.0)
    with pytest.raises(ValueError, match="transformers' own NEFTune hook"):
        neftune.activate(model, 5.0)


def test_gradients_reach_embedding_weights_unchanged():
    emb = nn.Embedding(10, 8)
    model = nn.Sequential(emb)
    ids = torch.tensor([[1, 2, 2, 3]])
    with neftune.noisy_embeddings(model, 10.0):
        model.train()
        model(ids).sum().backward()
    # d(sum(out))/d(weight[k]) = count of token k: the noise adds nothing to the gradient.
    counts = torch.bincount(ids.flatten(), minlength=10).float()
    torch.testing.assert_close(emb.weight.grad, counts.unsqueeze(1).expand(10, 8))


def test_seed_reproducible_and_distinct():
    def noise_for(seed):
        model = tiny_llama()
        model.train()
        h = neftune.activate(model, 5.0, seed=seed)
        rec = NoiseRecorder(h.embedding)
        model(**_batch_fixed())
        h.remove()
        return rec.noise[0]

    torch.testing.assert_close(noise_for(7), noise_for(7), rtol=0, atol=0)
    assert not torch.equal(noise_for(7), noise_for(8))


def _batch_fixed():
    g = torch.Generator().manual_seed(123)
    ids = torch.randint(1, VOCAB, (2, 12), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_ranks_draw_different_noise(monkeypatch):
    def noise_on_rank(rank, seed):
        monkeypatch.setattr(streams_mod, "distributed_rank", lambda: rank)
        model = tiny_llama()
        model.train()
        h = neftune.activate(model, 5.0, seed=seed)
        rec = NoiseRecorder(h.embedding)
        model(**_batch_fixed())
        h.remove()
        return rec.noise[0]

    r0, r1 = noise_on_rank(0, 3), noise_on_rank(1, 3)
    assert not torch.equal(r0, r1)
    torch.testing.assert_close(noise_on_rank(1, 3), r1, rtol=0, atol=0)
    # without a seed, ranks still differ (the DDP bug of identical noise on every rank)
    torch.manual_seed(0)
    a = noise_on_rank(1, None)
    torch.manual_seed(0)
    b = noise_on_rank(2, None)
    assert not torch.equal(a, b)


def test_schedule_and_set_alpha():
    model = tiny_llama()
    h = neftune.activate(model, 8.0, schedule="linear")
    assert h.alpha == 8.0
    h.set_progress(5, 10)
    assert h.alpha == pytest.approx(4.0)
    h.set_alpha(2.0)
    assert h.alpha == pytest.approx(1.0)
    h.set_progress(10, 10)
    assert h.alpha == 0.0
    model.train()
    batch = _batch()
    clean = _embeds(model.eval(), batch)
    model.train()
    assert torch.equal(_embeds(model, batch), clean), "alpha 0 from the schedule adds nothing"
    h.remove()
    calls = []
    h2 = neftune.activate(model, 5.0, schedule=lambda step, total: calls.append((step, total)) or 0.5)
    assert calls == [(0, 100), (0, 0)], (
        "activate checks a user schedule with one trial call, then computes the alpha of step 0 once"
    )
    assert h2.alpha == 2.5
    model(**batch)
    model(**batch)
    assert len(calls) == 2, "forward passes never call the schedule (torch.compile would guard on it)"
    h2.set_progress(3, 10)
    assert calls[-1] == (3, 10) and len(calls) == 3
    h2.remove()


def test_status_and_repr_and_noise_ratio():
    model = tiny_llama()
    h = neftune.activate(model, 5.0, distribution="gaussian")
    s = h.status()
    assert s["module"] == "model.embed_tokens" and s["distribution"] == "gaussian" and s["alpha"] == 5.0
    assert "model.embed_tokens" in repr(h) and "active" in repr(h)
    h.record_stats = True
    model.train()
    batch = _batch()
    emb = _embeds(model.eval(), batch)
    model.train()
    model(**batch)
    # E||noise||^2 over 2 sequences = 2 * alpha^2 (gaussian); ratio ~ sqrt(2)*alpha / ||emb||
    expected = math.sqrt(2) * 5.0 / emb.float().norm().item()
    assert h.last_noise_ratio == pytest.approx(expected, rel=0.2)
    h.remove()
    assert "removed" in repr(h)


def test_deepcopy_and_pickle_give_clean_copies():
    model = tiny_llama()
    h = neftune.activate(model, 10.0)
    model.train()
    batch = _batch()
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert not neftune.is_active(clone)
        clean = _embeds(clone.eval(), batch)
        clone.train()
        assert torch.equal(_embeds(clone, batch), clean), "copies carry no noise"
        h2 = neftune.activate(clone, 10.0)  # and can be activated themselves
        before_inert = [type(f).__name__ for f in clone.get_input_embeddings()._forward_hooks.values()]
        assert "_Inert" not in before_inert
        h2.remove()
    assert neftune.is_active(model)
    h.remove()


def test_save_pretrained_has_no_noise_and_no_extra_keys(tmp_path):
    from safetensors.torch import load_file

    model = tiny_llama()
    clean_state = {k: v.clone() for k, v in model.state_dict().items()}
    h = neftune.activate(model, 10.0)
    model.train()
    model(**_batch())
    model.save_pretrained(tmp_path / "m")
    h.remove()
    saved = load_file(tmp_path / "m" / "model.safetensors")
    # tied lm_head may be dropped from the file; every saved tensor equals the clean weight
    assert set(saved) <= set(clean_state)
    assert "model.embed_tokens.weight" in saved
    for k, v in saved.items():
        assert torch.equal(v, clean_state[k]), k


def test_coexists_with_gradient_checkpointing_input_hook():
    for order in ("ours_first", "theirs_first"):
        model = tiny_lora_llama()
        base = model.get_base_model()
        if order == "ours_first":
            h = neftune.activate(model, 5.0)
            base.gradient_checkpointing_enable()
            base.enable_input_require_grads()
        else:
            base.gradient_checkpointing_enable()
            base.enable_input_require_grads()
            h = neftune.activate(model, 5.0)
        emb = model.get_input_embeddings()
        n_hooks = len(emb._forward_hooks)
        model.train()
        rec = NoiseRecorder(emb)
        out = model(**_batch(), labels=_batch()["input_ids"])
        out.loss.backward()
        assert torch.count_nonzero(rec.noise[0]) > 0
        assert any(p.grad is not None for n, p in model.named_parameters() if "lora" in n)
        rec.remove()
        h.remove()
        assert len(emb._forward_hooks) == n_hooks - 1, "their hook must survive our removal"


def test_plain_module_and_wrappers():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(20, 8)
            self.proj = nn.Linear(8, 2)

        def forward(self, ids, attention_mask=None):
            return self.proj(self.tok(ids))

    tiny = Tiny()
    assert neftune.find_input_embedding(tiny).path == "tok"
    compiled_like = torch.nn.DataParallel(tiny)
    loc = neftune.find_input_embedding(compiled_like)
    assert loc.module is tiny.tok and loc.root is tiny
    h = neftune.activate(compiled_like, 5.0, distribution="symmetric")
    tiny.train()
    rec = NoiseRecorder(tiny.tok)
    mask = torch.tensor([[1, 1, 0]])
    compiled_like(torch.tensor([[1, 2, 0]]), attention_mask=mask)
    noise = rec.noise[0]
    assert torch.count_nonzero(noise[0, 2]) == 0
    torch.testing.assert_close(noise[0, :2].abs(), torch.full((2, 8), 5.0 / math.sqrt(2 * 8)))
    h.remove()


def test_ddp_wrapper_single_process(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        model = tiny_llama()
        ddp = nn.parallel.DistributedDataParallel(model)
        h = neftune.activate(ddp, 5.0, seed=0)
        assert h.embedding is model.get_input_embeddings()
        ddp.train()
        rec = NoiseRecorder(h.embedding)
        ddp(**_batch())
        mask = _batch()["attention_mask"]
        assert torch.count_nonzero(rec.noise[0][1, 7:]) == 0
        assert neftune.is_active(ddp) and neftune.is_active(model)
        neftune.deactivate(ddp)
        assert not neftune.is_active(model)
        del mask
    finally:
        dist.destroy_process_group()


def test_neftune_embedding_wrapper():
    emb = nn.Embedding(VOCAB, 16, padding_idx=0)
    wrapped = neftune.NEFTuneEmbedding(emb, alpha=5.0, distribution="symmetric", seed=0)
    assert wrapped.weight is emb.weight
    assert list(wrapped.state_dict()) == ["weight"]
    ids = torch.tensor([[3, 4, 5, 0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    wrapped.train()
    noise = wrapped(ids, attention_mask=mask) - emb(ids)
    torch.testing.assert_close(noise[0, :3].abs(), torch.full((3, 16), 5.0 / math.sqrt(3 * 16)))
    assert torch.count_nonzero(noise[0, 3]) == 0
    wrapped.eval()
    assert torch.equal(wrapped(ids), emb(ids))
    wrapped.train()
    wrapped.set_alpha(0.0)
    assert torch.equal(wrapped(ids), emb(ids))
    with pytest.raises(ValueError, match="alpha"):
        wrapped.set_alpha(-1)
    assert wrapped.to_embedding().weight is emb.weight
    assert "alpha=0" in repr(wrapped)
    pickle.loads(pickle.dumps(wrapped))
    copy.deepcopy(wrapped)


def test_explicit_embedding_argument():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Embedding(5, 4)
            self.b = nn.Embedding(5, 4)

    two = Two()
    with pytest.raises(neftune.EmbeddingNotFoundError, match="found 2 nn.Embedding"):
        neftune.activate(two, 5.0)
    h = neftune.activate(two, 5.0, embedding=two.b)
    assert h.embedding is two.b and h.path == "b"
    h.remove()
