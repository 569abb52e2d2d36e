"""Noise exactly once, on the setups real fine-tuning uses (issue: real setups).

Each test measures the noise where the model uses it — the hidden states entering the first
decoder layer, training forward minus the same forward in eval mode — so a second noise source,
a missed mask or a wrong module shows up whatever neftune's internals think they did. Magnitudes
are checked sequence by sequence against E||noise||^2 = alpha^2 / 3 with the tolerance of
``conftest.assert_sequence_norm`` (6 sd of the squared norm of L*d uniform draws): noise added
twice doubles the expectation, far outside it.
"""

from __future__ import annotations

import gc
import math
import warnings
import weakref

import pytest
import torch
from torch import nn

import neftune

from conftest import (
    HIDDEN,
    VOCAB,
    NoiseRecorder,
    assert_sequence_norm,
    padded_batch,
    plain_trainer,
    tiny_llama,
)

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

ALPHA = 5.0


# ----------------------------------------------------------------------------- measuring
def _first_layer_input(model: nn.Module, call) -> torch.Tensor:
    """Hidden states entering the first decoder layer during ``call()``."""
    layers = next(m for name, m in model.named_modules() if name.endswith("layers"))
    seen = []

    def grab(module, args, kwargs):
        seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone())

    handle = layers[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        call()
    finally:
        handle.remove()
    return seen[0]


def used_noise(model: nn.Module, call) -> torch.Tensor:
    """(B, T, d) noise the decoder received in a training ``call()`` (clean: the same call in eval)."""
    model.eval()
    with torch.no_grad():
        clean = _first_layer_input(model, call)
    model.train()
    return _first_layer_input(model, call) - clean


def assert_once_per_sequence(noise: torch.Tensor, mask: torch.Tensor, alpha: float = ALPHA) -> None:
    """Each real sequence's noise has the paper's norm (once, not twice); padding has none."""
    for row in range(noise.shape[0]):
        real = mask[row].bool()
        assert_sequence_norm(noise[row, real], alpha, "uniform")
        assert noise[row, ~real].abs().max().item() == 0.0 if (~real).any() else True


def call_model(model, ids, mask):
    return lambda: model(input_ids=ids, attention_mask=mask)


# ----------------------------------------------------------------------------- 1. wrapped embeddings
class ScaledEmbedding(nn.Module):
    """A user wrapper around an nn.Embedding that exposes its weight (like Gemma's scaled one)."""

    def __init__(self, inner: nn.Embedding) -> None:
        super().__init__()
        self.inner = inner

    @property
    def weight(self) -> nn.Parameter:
        return self.inner.weight

    def forward(self, ids):
        return self.inner(ids) * 1.5


def lora_on_embedding():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "embed_tokens"]))
    with torch.no_grad():  # a trained adapter: its update changes the embedding output
        for name, p in model.named_parameters():
            if "lora_embedding_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    return model


def modules_to_save():
    from peft import LoraConfig, get_peft_model

    return get_peft_model(
        tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["embed_tokens"])
    )


def custom_wrapper():
    model = tiny_llama()
    model.model.embed_tokens = ScaledEmbedding(model.model.embed_tokens)
    return model


WRAPPED = {"lora-embedding": lora_on_embedding, "modules-to-save": modules_to_save, "wrapper": custom_wrapper}


@pytest.mark.parametrize("setup", list(WRAPPED))
def test_wrapped_embedding_is_noised_once_on_the_output_the_model_uses(setup):
    model = WRAPPED[setup]()
    ids, mask, _ = padded_batch()
    handle = neftune.activate(model, ALPHA)
    # one hooked module: the outermost, whose output the decoder gets
    assert [m for _, m in handle.targets] == [model.get_input_embeddings()]
    assert_once_per_sequence(used_noise(model, call_model(model, ids, mask)), mask)
    neftune.deactivate(handle)
    assert used_noise(model, call_model(model, ids, mask)).abs().max().item() == 0.0


@pytest.mark.parametrize("setup", ["lora-embedding", "modules-to-save"])
def test_adapter_switching_disabling_and_merging_keep_the_noise_single(setup):
    from peft import LoraConfig

    model = WRAPPED[setup]()
    kind = {"lora-embedding": {"target_modules": ["q_proj", "embed_tokens"]}}.get(
        setup, {"target_modules": ["q_proj"], "modules_to_save": ["embed_tokens"]}
    )
    model.add_adapter("second", LoraConfig(r=4, **kind))
    ids, mask, _ = padded_batch()
    call = call_model(model, ids, mask)
    neftune.activate(model, ALPHA)
    model.set_adapter("second")
    assert_once_per_sequence(used_noise(model, call), mask)
    with model.disable_adapter():
        assert_once_per_sequence(used_noise(model, call), mask)
    model.set_adapter("default")
    model.base_model.merge_adapter()
    assert_once_per_sequence(used_noise(model, call), mask)
    model.base_model.unmerge_adapter()
    merged = model.merge_and_unload()  # the wrapper is gone: the noise follows the new embedding
    with pytest.warns(UserWarning, match="input embedding was replaced"):
        noise = used_noise(merged, call_model(merged, ids, mask))
    assert_once_per_sequence(noise, mask)
    assert neftune.is_active(merged)
    neftune.deactivate(merged)
    assert used_noise(merged, call_model(merged, ids, mask)).abs().max().item() == 0.0


def test_resized_or_replaced_embedding_keeps_the_noise_single():
    model = tiny_llama()
    ids, mask, _ = padded_batch()
    neftune.activate(model, ALPHA)
    model.resize_token_embeddings(VOCAB + 8, mean_resizing=False)  # resizes the module in place
    assert_once_per_sequence(used_noise(model, call_model(model, ids, mask)), mask)
    replacement = nn.Embedding(VOCAB, HIDDEN)
    model.set_input_embeddings(replacement)  # a new module: the noise follows it
    with pytest.warns(UserWarning, match="input embedding was replaced"):
        assert_once_per_sequence(used_noise(model, call_model(model, ids, mask)), mask)
    assert neftune.get_handle(model).embedding is replacement
    neftune.deactivate(model)


# ----------------------------------------------------------------------------- 2. other noise sources
def test_transformers_hook_added_after_ours_is_refused_at_the_first_step():
    from transformers.integrations.neftune import activate_neftune, deactivate_neftune

    model = tiny_llama()
    ids, mask, _ = padded_batch()
    neftune.activate(model, ALPHA)
    hook = activate_neftune(model, 5.0)
    model.train()
    with pytest.raises(ValueError, match=r"transformers' own NEFTune hook .* added twice"):
        model(input_ids=ids, attention_mask=mask)
    deactivate_neftune(model, hook)
    model(input_ids=ids, attention_mask=mask)  # fine again once theirs is gone
    neftune.deactivate(model)


def test_transformers_hook_added_before_ours_is_refused_at_activate():
    from transformers.integrations.neftune import activate_neftune

    model = tiny_llama()
    activate_neftune(model, 5.0)
    with pytest.raises(ValueError, match="transformers' own NEFTune hook is active"):
        neftune.activate(model, ALPHA)
    assert not neftune.is_active(model)


def test_trainer_neftune_noise_alpha_on_an_active_model_is_refused(tmp_path):
    trainer = plain_trainer(tmp_path, neftune_noise_alpha=5.0)
    neftune.activate(trainer.model, ALPHA)
    with pytest.raises(ValueError, match="added twice"):
        trainer.train()
    neftune.deactivate(trainer.model)


# ----------------------------------------------------------------------------- 3. bypassing the top level
def test_inner_model_called_directly_gets_per_sequence_noise():
    model = tiny_llama()
    ids, mask, _ = padded_batch()
    neftune.activate(model, ALPHA)
    noise = used_noise(model, lambda: model.model(input_ids=ids, attention_mask=mask))
    assert_once_per_sequence(noise, mask)
    neftune.deactivate(model)


def test_inputs_embeds_from_the_hooked_embedding_are_rescaled_per_sequence():
    model = tiny_llama()
    ids, mask, _ = padded_batch()
    neftune.activate(model, ALPHA)

    def call():
        embeds = model.get_input_embeddings()(ids)
        return model(inputs_embeds=embeds, attention_mask=mask)

    with pytest.warns(UserWarning, match="outside the model's forward"):
        noise = used_noise(model, call)
    assert_once_per_sequence(noise, mask)
    neftune.deactivate(model)


def test_embedding_called_alone_falls_back_to_the_row_length():
    model = tiny_llama()
    ids, _, _ = padded_batch()
    embedding = model.get_input_embeddings()
    neftune.activate(model, ALPHA)
    with torch.no_grad():
        clean = embedding(ids)
    with pytest.warns(UserWarning, match="scaled by the row length"):
        noise = (embedding(ids) - clean).detach()
    for row in range(ids.shape[0]):  # the whole row (12 tokens) is one sequence here
        assert_sequence_norm(noise[row], ALPHA, "uniform")
    neftune.deactivate(model)


def test_inputs_embeds_that_never_went_through_the_embedding_warn_once():
    model = tiny_llama()
    ids, mask, _ = padded_batch()
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
    neftune.activate(model, ALPHA)
    model.train()
    with pytest.warns(UserWarning, match="carry no noise"):
        model(inputs_embeds=embeds, attention_mask=mask)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(inputs_embeds=embeds, attention_mask=mask)
    neftune.deactivate(model)


# ----------------------------------------------------------------------------- 4. torch.compile
class EmbedOnly(nn.Module):
    """The smallest model with an input embedding: returns the (noised) embeddings."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed_tokens = nn.Embedding(VOCAB, HIDDEN)

    def forward(self, input_ids, attention_mask=None):
        return self.embed_tokens(input_ids)


def compiled_steps(model, handle, backend: str, steps: int = 10, loss=None) -> tuple[list[int], list]:
    """Frames compiled after each of ``steps`` training steps, and the outputs."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch.compiler.reset()
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(model, backend=counter)
    ids, mask, _ = padded_batch()
    frames, outputs = [], []
    model.train()
    for step in range(steps):
        handle.set_progress(step, steps)
        out = compiled(input_ids=ids, attention_mask=mask)
        (loss(out) if loss else out.float().pow(2).mean()).backward()
        outputs.append(out if torch.is_tensor(out) else None)
        frames.append(counter.frame_count)
    return frames, outputs


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("schedule", [None, "linear"])
def test_compiled_llama_does_not_recompile_each_step(backend, schedule):
    model = tiny_llama()
    handle = neftune.activate(model, ALPHA, schedule=schedule)
    frames, _ = compiled_steps(model, handle, backend, loss=lambda out: out.logits.float().pow(2).mean())
    assert frames[-1] == frames[0], f"frames compiled per step: {frames}"
    assert handle.noised_calls == 10
    neftune.deactivate(handle)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compiled_schedule_changes_the_noise_without_recompiling(backend):
    model = EmbedOnly()
    ids, _, lengths = padded_batch()
    with torch.no_grad():
        clean = model.embed_tokens(ids)
    handle = neftune.activate(model, ALPHA, schedule="linear")
    frames, outputs = compiled_steps(model, handle, backend)
    assert frames[-1] == frames[0], frames
    # step k has alpha 5 * (1 - k/10); each sequence's noise norm follows it (one draw per step)
    for step in (0, 5, 9):
        noise = outputs[step].detach() - clean
        for row, n in enumerate(lengths):
            assert_sequence_norm(noise[row, :n], ALPHA * (1 - step / 10), "uniform")
            assert torch.count_nonzero(noise[row, n:]) == 0
    neftune.deactivate(handle)


def test_activate_and_deactivate_after_compile_take_effect():
    model = EmbedOnly().train()
    ids, _, _ = padded_batch()
    torch.compiler.reset()
    compiled = torch.compile(model, backend="eager")
    clean = compiled(input_ids=ids).detach()  # compiled without hooks
    with pytest.warns(UserWarning, match="cleared torch.compile's caches"):
        handle = neftune.activate(model, ALPHA)
    assert not torch.equal(compiled(input_ids=ids).detach(), clean), "activation took effect"
    with pytest.warns(UserWarning, match="cleared torch.compile's caches"):
        neftune.deactivate(handle)
    assert torch.equal(compiled(input_ids=ids).detach(), clean), "deactivation took effect"


def test_trainer_with_torch_compile(tmp_path):
    from neftune.integrations import NEFTuneCallback

    torch.compiler.reset()
    callback = NEFTuneCallback(ALPHA, seed=0)
    trainer = plain_trainer(
        tmp_path, callbacks=[callback], max_steps=3, torch_compile=True, torch_compile_backend="eager"
    )
    trainer.train()
    assert callback.handle.noised_calls == 3
    assert not neftune.is_active(trainer.model)


# ----------------------------------------------------------------------------- 5. lifecycle
def test_a_model_dropped_while_active_is_freed():
    model = tiny_llama()
    handle = neftune.activate(model, ALPHA)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None, "the handle registry kept the model alive"
    assert handle.model is None


def test_bare_callback_after_a_raised_train_lets_the_next_training_run(tmp_path):
    from transformers import Trainer

    from neftune.integrations import NEFTuneCallback

    class Boom(Trainer):
        def compute_loss(self, *args, **kwargs):
            raise RuntimeError("boom")

    model = tiny_llama()
    first = plain_trainer(tmp_path, model=model, trainer_cls=Boom, callbacks=[NEFTuneCallback(ALPHA)])
    with pytest.raises(RuntimeError, match="boom"):
        first.train()
    assert neftune.is_active(model)  # the callback is never told that train() raised
    callback = NEFTuneCallback(ALPHA)
    plain_trainer(tmp_path, model=model, callbacks=[callback], max_steps=1).train()
    assert callback.handle.noised_calls == 1 and not neftune.is_active(model)


def test_a_user_activation_is_still_refused_by_the_callback(tmp_path):
    from neftune.integrations import NEFTuneCallback

    model = tiny_llama()
    neftune.activate(model, ALPHA)
    with pytest.raises(ValueError, match="already active"):
        plain_trainer(tmp_path, model=model, callbacks=[NEFTuneCallback(ALPHA)], max_steps=1).train()
    neftune.deactivate(model)


def test_patch_transformers_leaves_no_hook_when_train_raises_and_a_retry_works(tmp_path):
    from transformers import Trainer

    from neftune.integrations import patch_transformers

    class Boom(Trainer):
        fail = True

        def compute_loss(self, *args, **kwargs):
            if Boom.fail:
                raise RuntimeError("boom")
            return super().compute_loss(*args, **kwargs)

    model = tiny_llama()
    with patch_transformers():
        trainer = plain_trainer(tmp_path, model=model, trainer_cls=Boom, neftune_noise_alpha=5.0, max_steps=1)
        with pytest.raises(RuntimeError, match="boom"):
            trainer.train()
        Boom.fail = False
        trainer.train()  # the retry inside the patch replaces the leftover instead of refusing
        Boom.fail = True
        with pytest.raises(RuntimeError, match="boom"):
            trainer.train()
    assert not neftune.is_active(model)


# ----------------------------------------------------------------------------- 6. resume
def _noise_by_step(model, handle, steps, start=0):
    """Noise of one forward per optimizer step ``start..steps-1`` (set_progress as a trainer does)."""
    ids, mask, _ = padded_batch()
    recorder = NoiseRecorder(model.get_input_embeddings())
    model.train()
    for step in range(start, steps):
        handle.set_progress(step, steps)
        model(input_ids=ids, attention_mask=mask)
    recorder.remove()
    return recorder.noise


def test_seeded_noise_after_resume_equals_the_uninterrupted_run():
    model = tiny_llama()
    handle = neftune.activate(model, ALPHA, seed=3)
    full = _noise_by_step(model, handle, 5)
    neftune.deactivate(handle)
    handle = neftune.activate(model, ALPHA, seed=3)  # "resumed at step 3": a new process, a new handle
    resumed = _noise_by_step(model, handle, 5, start=3)
    neftune.deactivate(handle)
    for a, b in zip(full[3:], resumed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(full[0], full[3]), "each step draws new noise"


def test_trainer_resume_from_checkpoint_reproduces_seeded_noise(tmp_path):
    from transformers import TrainerCallback

    from neftune.integrations import NEFTuneCallback

    class Record(TrainerCallback):
        def __init__(self):
            self.recorder = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.recorder = NoiseRecorder(model.get_input_embeddings())

        def on_train_end(self, args, state, control, **kwargs):
            self.recorder.remove()

    def run(out, **train_kwargs):
        record = Record()
        torch.manual_seed(0)
        trainer = plain_trainer(
            out,
            callbacks=[NEFTuneCallback(ALPHA, seed=7), record],
            max_steps=4,
            save_strategy="steps",
            save_steps=2,
            per_device_train_batch_size=2,
        )
        trainer.train(**train_kwargs)
        return record.recorder.noise

    full = run(tmp_path / "full")
    resumed = run(tmp_path / "full", resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    assert len(full) == 4 and len(resumed) == 2
    for a, b in zip(full[2:], resumed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# Activation checkpointing around the embedding (forward and recompute get one noise): test_checkpointing.py


# ----------------------------------------------------------------------------- 8. bad input
def test_alpha_that_overflows_the_dtype_is_refused():
    model = tiny_llama(torch.float16)
    with pytest.raises(ValueError, match="too large for float16"):
        neftune.activate(model, 1e6)
    assert not neftune.is_active(model)
    handle = neftune.activate(model, 5.0, schedule=lambda step, total: 1e6 if step > 2 else 1.0)
    with pytest.raises(ValueError, match="too large for float16"):
        handle.set_progress(3, 10)
    with pytest.raises(ValueError, match="too large for float16"):
        handle.set_alpha(1e6)
    assert handle.alpha == 5.0
    neftune.deactivate(handle)


def test_schedule_used_before_set_progress_gives_a_clear_error():
    model = tiny_llama()
    ids, mask, _ = padded_batch()
    handle = neftune.activate(model, ALPHA, schedule=lambda step, total: 1 - step / total)
    model.train()
    with pytest.raises(RuntimeError, match=r"failed at step 0 of 0 \(ZeroDivisionError.*set_progress"):
        model(input_ids=ids, attention_mask=mask)
    with pytest.raises(ValueError, match="ZeroDivisionError"):
        handle.set_progress(0, 0)
    handle.set_progress(1, 10)
    assert handle.alpha == pytest.approx(ALPHA * 0.9)
    model(input_ids=ids, attention_mask=mask)
    neftune.deactivate(handle)


def test_negative_or_decreasing_progress_is_refused():
    handle = neftune.activate(tiny_llama(), ALPHA, schedule="linear")
    with pytest.raises(ValueError, match="step must be >= 0"):
        handle.set_progress(-1, 10)
    with pytest.raises(ValueError, match="total_steps must be >= 0"):
        handle.set_progress(1, -10)
    handle.set_progress(5, 10)
    with pytest.raises(ValueError, match="went back from 5 to 4"):
        handle.set_progress(4, 10)
    handle.set_progress(5, 10)  # the same step again is fine
    neftune.deactivate(handle)


def test_numpy_and_tensor_integer_seeds_are_accepted():
    np = pytest.importorskip("numpy")
    noises = []
    for seed in (5, np.int64(5), torch.tensor(5)):
        model = tiny_llama()
        handle = neftune.activate(model, ALPHA, seed=seed)
        assert handle.config.seed == 5 and type(handle.config.seed) is int
        noises.append(_noise_by_step(model, handle, 1)[0])
        neftune.deactivate(handle)
    assert all(torch.equal(noises[0], n) for n in noises[1:])
    for bad in (5.0, torch.tensor(5.0), torch.tensor([1, 2]), True):
        with pytest.raises(TypeError, match="seed"):
            neftune.activate(tiny_llama(), ALPHA, seed=bad)


def test_embedding_bag_is_refused_with_its_name():
    class Bags(nn.Module):
        def __init__(self):
            super().__init__()
            self.bag = nn.EmbeddingBag(10, 4)

        def forward(self, ids):
            return self.bag(ids)

    model = Bags()
    with pytest.raises(TypeError, match=r"bag is an nn.EmbeddingBag"):
        neftune.activate(model, ALPHA, embedding=model.bag)
    assert not neftune.is_active(model)


def test_analyze_reports_no_flips_at_alpha_0_with_duplicate_rows(tmp_path):
    from neftune.experiments import embedding_noise as en

    model = tiny_llama()
    with torch.no_grad():  # ten pairs of identical rows
        model.model.embed_tokens.weight[100:110] = model.model.embed_tokens.weight[10:20]
    table, _ = en.embedding_table(model)
    seqs = [[10 + (i + j) % 10 for j in range(6)] + [100 + (i + j) % 10 for j in range(6)] for i in range(20)]
    result = en.analyze_embeddings(table, seqs, [0.0, 1.0], seed=0)
    zero = next(r for r in result["metrics"] if r["alpha"] == 0.0)
    assert zero["n_flips_l2"] == 0 and zero["n_flips_cos"] == 0
    assert math.isclose(zero["flip_rate_l2"], 0.0)


# ----------------------------------------------------------------------------- one source, whatever the nesting
def test_a_second_activation_around_or_inside_an_active_embedding_is_refused():
    model = lora_on_embedding()
    wrapper = model.get_input_embeddings()
    inner = neftune.activate(model, ALPHA, embedding=wrapper.base_layer)  # the inner one, by hand
    with pytest.raises(ValueError, match=r"already active on .*wraps or is inside it"):
        neftune.activate(model, ALPHA)  # would hook the wrapper around it
    neftune.deactivate(inner)
    outer = neftune.activate(model, ALPHA)
    with pytest.raises(ValueError, match="already active"):
        neftune.activate(model, ALPHA, embedding=wrapper.base_layer)
    neftune.deactivate(outer)


def test_neftune_embedding_and_activate_are_not_combined():
    model = tiny_llama()
    model.model.embed_tokens = neftune.NEFTuneEmbedding(model.model.embed_tokens, alpha=ALPHA)
    with pytest.raises(ValueError, match="holds a NEFTuneEmbedding"):
        neftune.activate(model, ALPHA)
    model.model.embed_tokens.set_alpha(0.0)
    neftune.deactivate(neftune.activate(model, ALPHA))  # a silenced wrapper is fine


def test_transformers_hook_on_a_neftune_embedding_is_refused():
    from transformers.integrations.neftune import activate_neftune

    model = tiny_llama()
    model.model.embed_tokens = neftune.NEFTuneEmbedding(model.model.embed_tokens, alpha=ALPHA)
    activate_neftune(model, 5.0)
    ids, mask, _ = padded_batch()
    model.train()
    with pytest.raises(ValueError, match="added twice"):
        model(input_ids=ids, attention_mask=mask)


def test_inner_model_compiled_alone_gets_per_sequence_noise_once():
    model = tiny_llama()
    ids, mask, _ = padded_batch()
    torch.compiler.reset()
    model.model = torch.compile(model.model, backend="eager")
    handle = neftune.activate(model, ALPHA)
    assert handle.path == "model._orig_mod.embed_tokens"
    model.eval()
    with torch.no_grad():
        clean = model.model._orig_mod.embed_tokens(ids)
    recorder_out = []
    hook = model.model._orig_mod.layers[0].register_forward_pre_hook(
        lambda m, a, k: recorder_out.append((a[0] if a else k["hidden_states"]).detach()), with_kwargs=True
    )
    model.train()
    model(input_ids=ids, attention_mask=mask)
    hook.remove()
    assert_once_per_sequence(recorder_out[0] - clean, mask)
    neftune.deactivate(handle)
