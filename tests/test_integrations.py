"""NEFTuneCallback / attach / patch_transformers with real transformers and TRL trainers.

Every test trains a tiny model built from a config for a few steps on CPU and checks the
noise the embedding actually received, sequence by sequence, using the batch's own
boundaries (attention_mask, position_ids) read independently of neftune's code.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import math
from pathlib import Path

import pytest
import torch

import neftune
from neftune.integrations import NEFTuneCallback, add_neftune, attach, patch_transformers

from conftest import (
    LM_TEXTS,
    NoiseRecorder,
    assert_no_leftovers,
    assert_sequence_norm,
    char_tokenizer,
    hook_snapshot,
    plain_trainer,
    tiny_llama,
    tiny_lora_llama,
)

transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
trl = pytest.importorskip("trl")

from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

ALPHA = 5.0
ROOT = Path(__file__).resolve().parents[1]
TEXTS = LM_TEXTS


# -- helpers -------------------------------------------------------------------------------
def embedding_of(model):
    return neftune.find_input_embedding(model).module


class Capture(TrainerCallback):
    """Registered after the NEFTune callback: records each forward's batch tensors and noise."""

    def __init__(self, steps: int = 1):
        self.steps = steps
        self.batches: list[dict] = []
        self.recorder = None
        self._pre = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.recorder = NoiseRecorder(embedding_of(model))
        self._pre = neftune.unwrap_model(model).register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        if len(self.batches) < self.steps:
            keep = {k: kwargs.get(k) for k in ("input_ids", "attention_mask", "position_ids")}
            keep = {k: v.detach().clone() for k, v in keep.items() if isinstance(v, torch.Tensor)}
            self.batches.append({**keep, "training": module.training and torch.is_grad_enabled()})

    def on_train_end(self, args, state, control, **kwargs):
        self.recorder.remove()
        self._pre.remove()

    def pairs(self):
        return [(b, n) for b, n in zip(self.batches, self.recorder.noise) if b["training"]]


def segments(batch) -> tuple[list[tuple[int, int, int]], torch.Tensor]:
    """(row, start, end) of every real sequence, and a bool mask of the padding."""
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
    pos = batch.get("position_ids")
    if pos is not None and pos.shape != ids.shape:
        pos = pos.expand_as(ids)
    segs = []
    for row in range(ids.shape[0]):
        cols = mask[row].nonzero().flatten().tolist()
        starts = [c for i, c in enumerate(cols) if i == 0 or c != cols[i - 1] + 1]
        if pos is not None:
            starts = sorted(set(starts) | {c for c in cols if pos[row, c] == 0})
        for i, s in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else cols[-1] + 1
            segs.append((row, s, end))
    return segs, ~mask


def check_per_sequence(capture: Capture, alpha: float = ALPHA) -> list[int]:
    pairs = capture.pairs()
    assert pairs, "no training forward recorded"
    lengths = []
    for batch, noise in pairs:
        segs, pad = segments(batch)
        for row, s, e in segs:
            assert_sequence_norm(noise[row, s:e], alpha, "uniform")
            lengths.append(e - s)
        assert noise[pad].abs().max().item() == 0.0 if pad.any() else True
    return lengths


def sequence_norms(capture: Capture) -> list[tuple[int, float]]:
    out = []
    for batch, noise in capture.pairs():
        segs, _ = segments(batch)
        out += [(e - s, noise[r, s:e].norm().item()) for r, s, e in segs]
    return out


def sft_trainer(tmp_path, dataset=None, callbacks=(), **kw):
    from trl import SFTConfig, SFTTrainer

    base = dict(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=4,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        max_length=128,
        gradient_checkpointing=False,  # TRL turns it on by default; not needed for a tiny model
    )
    ds = dataset if dataset is not None else datasets.Dataset.from_dict({"text": TEXTS})
    return SFTTrainer(
        model=tiny_llama(),
        args=SFTConfig(**{**base, **kw}),
        train_dataset=ds,
        processing_class=char_tokenizer(),
        callbacks=list(callbacks),
    )


# -- transformers.Trainer -----------------------------------------------------------------
def test_trainer_padded_batches_per_sequence_noise(tmp_path, caplog):
    capture = Capture(steps=2)
    trainer = plain_trainer(tmp_path, callbacks=[NEFTuneCallback(ALPHA, seed=0), capture])
    before = hook_snapshot(trainer.model)
    with caplog.at_level(logging.INFO, logger="neftune"):
        trainer.train()
    lengths = check_per_sequence(capture)
    assert len(set(lengths)) >= 3  # varying lengths, in one padded batch
    assert any(b.get("attention_mask") is not None and not b["attention_mask"].all() for b in capture.batches)
    assert "NEFTune activated: NEFTune(active, alpha=5" in caplog.text
    assert_no_leftovers(before, trainer.model)
    assert not neftune.is_active(trainer.model)


def test_trainer_logs_alpha_and_noise_ratio(tmp_path):
    trainer = plain_trainer(tmp_path, max_steps=3)
    callback = attach(trainer, ALPHA)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 3
    for entry in logged:
        assert entry["neftune/alpha"] == ALPHA
        assert 0.0 < entry["neftune/noise_ratio"] < math.inf
    assert callback.handle is not None and not callback.handle.active


def test_linear_schedule_advances_each_optimizer_step(tmp_path):
    seen = []

    class Alphas(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append((state.global_step, callback.handle.alpha))

    trainer = plain_trainer(
        tmp_path, max_steps=4, gradient_accumulation_steps=2, per_device_train_batch_size=2
    )
    callback = attach(trainer, ALPHA, schedule="linear")
    trainer.add_callback(Alphas())
    trainer.train()
    assert seen == [(k, pytest.approx(ALPHA * (1 - k / 4))) for k in (1, 2, 3, 4)]
    logged = [h["neftune/alpha"] for h in trainer.state.log_history if "loss" in h]
    assert logged == pytest.approx([ALPHA * (1 - k / 4) for k in (1, 2, 3, 4)])


def test_eval_during_training_is_clean(tmp_path):
    capture = Capture(steps=100)
    trainer = plain_trainer(
        tmp_path, eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=4, callbacks=[capture]
    )
    attach(trainer, ALPHA)
    trainer.train()
    evals = [n for b, n in zip(capture.batches, capture.recorder.noise) if not b["training"]]
    trains = capture.pairs()
    assert evals and trains
    assert all(n.abs().max().item() == 0.0 for n in evals)
    assert all(n.abs().max().item() > 0.0 for _, n in trains)


def test_attach_cleans_up_when_train_raises(tmp_path):
    class Boom(Trainer):
        calls = 0

        def compute_loss(self, *args, **kwargs):
            Boom.calls += 1
            if Boom.calls == 2:
                raise RuntimeError("boom")
            return super().compute_loss(*args, **kwargs)

    trainer = plain_trainer(tmp_path, trainer_cls=Boom, max_steps=3)
    before = hook_snapshot(trainer.model)
    callback = add_neftune(trainer, ALPHA)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    assert callback.handle is not None and not callback.handle.active
    assert_no_leftovers(before, trainer.model)
    # without attach, the hooks would stay: the callback is never told
    trainer2 = plain_trainer(tmp_path, trainer_cls=Boom, max_steps=3, callbacks=[NEFTuneCallback(ALPHA)])
    Boom.calls = 0
    with pytest.raises(RuntimeError, match="boom"):
        trainer2.train()
    assert neftune.is_active(trainer2.model)
    neftune.deactivate(trainer2.model)


def test_callback_refuses_transformers_alpha(tmp_path):
    trainer = plain_trainer(tmp_path, neftune_noise_alpha=5.0)
    attach(trainer, ALPHA)
    with pytest.raises(ValueError, match="twice"):
        trainer.train()
    assert not neftune.is_active(trainer.model)


def test_callback_validates_arguments_early():
    with pytest.raises(ValueError):
        NEFTuneCallback(-1.0)
    with pytest.raises(ValueError):
        NEFTuneCallback(5.0, distribution="laplace")


def test_patch_transformers_makes_neftune_noise_alpha_per_sequence(tmp_path):
    import transformers.trainer as tt

    original = tt.activate_neftune
    capture = Capture(steps=2)
    with patch_transformers():
        assert tt.activate_neftune is neftune.activate_neftune
        trainer = plain_trainer(tmp_path, neftune_noise_alpha=ALPHA, callbacks=[capture])
        before = hook_snapshot(trainer.model)
        trainer.train()
    assert tt.activate_neftune is original
    check_per_sequence(capture)
    assert_no_leftovers(before, trainer.model)


# -- TRL SFTTrainer ---------------------------------------------------------------------------
SFT_CASES = {
    "padded": {},
    "padding_free": {"padding_free": True, "max_length": None},
    "packing_bfd": {"packing": True, "packing_strategy": "bfd", "max_length": 64},
}


@pytest.mark.parametrize("case", list(SFT_CASES))
def test_sft_trainer_per_sequence_noise(tmp_path, case):
    capture = Capture()
    trainer = sft_trainer(tmp_path, callbacks=[capture], **SFT_CASES[case])
    attach(trainer, ALPHA, seed=1)
    before = hook_snapshot(trainer.model)
    trainer.train()
    lengths = check_per_sequence(capture)
    batch = capture.pairs()[0][0]
    if case == "padded":
        assert not batch["attention_mask"].all()
    else:  # one row holding several sequences
        assert batch["input_ids"].shape[0] == 1 and "position_ids" in batch
    assert sorted(lengths)[0] <= 4 and len(lengths) == len(TEXTS)
    assert_no_leftovers(before, trainer.model)


def test_sft_trainer_completion_only_loss(tmp_path):
    ds = datasets.Dataset.from_dict(
        {
            "prompt": ["what is up?", "hi", "say something long, please."],
            "completion": [" ok", " hello there", " no"],
        }
    )
    capture = Capture()
    trainer = sft_trainer(tmp_path, dataset=ds, callbacks=[capture], completion_only_loss=True)
    attach(trainer, ALPHA)
    trainer.train()
    lengths = check_per_sequence(capture)
    assert len(lengths) == 3


def test_trl_own_neftune_is_wrong_padding_free_and_ours_is_right(tmp_path):
    """The contrast this library exists for: TRL's ``neftune_noise_alpha`` (transformers' hook)
    scales a padding-free row by its total length, so short sequences get far too little noise."""
    target = ALPHA / math.sqrt(3)
    theirs = Capture()
    trainer = sft_trainer(
        tmp_path / "theirs", callbacks=[theirs], neftune_noise_alpha=ALPHA, **SFT_CASES["padding_free"]
    )
    trainer.train()
    ours = Capture()
    trainer = sft_trainer(tmp_path / "ours", callbacks=[ours], **SFT_CASES["padding_free"])
    attach(trainer, ALPHA)
    trainer.train()
    their_norms, our_norms = dict(sequence_norms(theirs)), dict(sequence_norms(ours))
    shortest = min(their_norms)
    print("padding-free SFTTrainer, noise norm per sequence (length: TRL's, ours), target", round(target, 3))
    for length in sorted(their_norms):
        print(f"  {length:3d}: {their_norms[length]:.3f}  {our_norms[length]:.3f}")
    assert their_norms[shortest] < 0.35 * target  # e.g. 3 of ~80 tokens: ~0.2 x target
    assert abs(our_norms[shortest] - target) < 0.1 * target
    check_per_sequence(ours)


# -- PEFT / reference passes --------------------------------------------------------------------
def test_lora_disable_adapter_and_reference_copy_are_clean():
    model = tiny_lora_llama()
    model.train()
    ids = torch.randint(1, 100, (2, 10))
    with neftune.noisy_embeddings(model, ALPHA):
        recorder = NoiseRecorder(embedding_of(model))
        reference = copy.deepcopy(model)
        ref_recorder = NoiseRecorder(embedding_of(reference))
        model(input_ids=ids)
        with model.disable_adapter(), torch.no_grad():
            model(input_ids=ids)
        reference.train()
        reference(input_ids=ids)
        recorder.remove()
        ref_recorder.remove()
    assert recorder.noise[0].abs().max() > 0
    assert recorder.noise[1].abs().max() == 0
    assert ref_recorder.noise[0].abs().max() == 0
    assert not neftune.is_active(model)


# -- examples (the README snippets) ------------------------------------------------------------
EXAMPLES = ["trainer_callback", "sft_trainer", "accelerate_loop", "plain_loop", "peft_lora"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name):
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main()
    assert result is not None and not neftune.is_active(result)


def test_noise_ratio_is_measured_only_before_logged_steps():
    from types import SimpleNamespace

    from transformers import TrainerState

    from neftune.integrations.transformers import _logs_after

    def logged(args, max_steps):
        state = TrainerState()
        state.compute_steps(args, max_steps)  # what the Trainer does at train start
        return [s for s in range(1, max_steps + 1) if _logs_after(args, state, s)]

    args = SimpleNamespace(logging_strategy="steps", logging_steps=5, logging_first_step=False)
    args.eval_steps = args.save_steps = None
    assert logged(args, 20) == [5, 10, 15, 20]
    args.logging_first_step = True
    assert logged(args, 10) == [1, 5, 10]
    args.logging_steps = 0.25  # a share of the total steps: transformers rounds it up
    args.logging_first_step = False
    assert logged(args, 20) == [5, 10, 15, 20]
    assert logged(args, 10) == [3, 6, 9], "ceil(0.25 * 10) = 3, as the Trainer logs"
    assert _logs_after(SimpleNamespace(logging_strategy="epoch"), None, 3), "other strategies: every step"
    real = TrainingArguments(output_dir="unused", logging_steps=5, use_cpu=True, report_to="none")
    assert logged(real, 10) == [5, 10], "the enum TrainingArguments holds"
