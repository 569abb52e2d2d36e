"""Hooks never leak: an exception at any stage of training leaves the model exactly as it was.

Stages: data loading (collator, dataset), forward, backward, optimizer step, a callback, evaluation
during training, checkpoint save, and a KeyboardInterrupt. Each runs a real tiny ``transformers``
``Trainer`` (and TRL ``SFTTrainer``) with ``neftune.integrations.attach``, and a plain loop inside
``neftune.noisy_embeddings``. Afterwards: no forward hook or pre-hook that neftune added on any
module, ``neftune.is_active(model)`` is False, and a fresh ``activate`` noises again.
"""

from __future__ import annotations

import pytest
import torch

import neftune

from conftest import (
    VOCAB,
    assert_no_leftovers,
    char_tokenizer,
    hook_snapshot,
    neftune_hooks,
    tiny_llama,
    tiny_trainer_kwargs,
)

pytest.importorskip("transformers")
from transformers import Trainer, TrainerCallback, TrainingArguments

from neftune.integrations import attach


class Boom(RuntimeError):
    """The injected fault; its message names the stage."""


# ----------------------------------------------------------------------------- checks
def hook_dicts(snapshot: dict[str, tuple]) -> dict[str, tuple]:
    """The hook part of a ``hook_snapshot`` (forward, forward pre, backward), without attributes."""
    return {name: snap[:3] for name, snap in snapshot.items()}


def assert_clean_and_reusable(model: torch.nn.Module, before: dict[str, tuple]) -> None:
    assert neftune_hooks(model) == []
    assert hook_dicts(hook_snapshot(model)) == hook_dicts(before), "hook dicts differ from before training"
    assert_no_leftovers(before, model)  # and no attribute of ours left on any module
    assert not neftune.is_active(model)
    # a fresh activation works and noises a training forward
    model.train()
    ids = torch.randint(1, VOCAB, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean = model.get_input_embeddings()(ids)
    handle = neftune.activate(model, 5.0, seed=0)
    noisy = model.get_input_embeddings()(ids)
    assert not torch.equal(noisy.detach(), clean)
    neftune.deactivate(handle)
    assert neftune_hooks(model) == [] and not neftune.is_active(model)


# ----------------------------------------------------------------------------- data and faults
class Rows(torch.utils.data.Dataset):
    """Token rows of lengths 3..10; ``fail_at`` makes ``__getitem__`` raise from that many calls on."""

    def __init__(self, n: int = 16, fail_at: int | None = None, name: str = "dataset") -> None:
        gen = torch.Generator().manual_seed(1)
        self.rows = [torch.randint(1, VOCAB, (3 + i % 8,), generator=gen).tolist() for i in range(n)]
        self.fail_at, self.name, self.calls = fail_at, name, 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise Boom(self.name)
        return {"input_ids": self.rows[i]}


class Collator:
    """Right-pads, masks, labels = ids (-100 on padding); raises from batch ``fail_at`` on."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at, self.calls = fail_at, 0

    def __call__(self, rows: list[dict]) -> dict:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise Boom("collator")
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[i, : len(r["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def fail_in_forward(model: torch.nn.Module, at_call: int) -> torch.utils.hooks.RemovableHandle:
    """A forward hook on the first decoder layer raising from its ``at_call``-th call."""
    calls = [0]

    def hook(module, args, output):
        calls[0] += 1
        if calls[0] >= at_call:
            raise Boom("forward")

    return model.model.layers[0].register_forward_hook(hook)


def fail_in_backward(model: torch.nn.Module, at_call: int) -> torch.utils.hooks.RemovableHandle:
    """A gradient hook on the LM head's output raising during the ``at_call``-th backward."""
    calls = [0]

    def on_grad(grad):
        raise Boom("backward")

    def hook(module, args, output):
        calls[0] += 1
        if calls[0] >= at_call and output.requires_grad:
            output.register_hook(on_grad)

    return model.lm_head.register_forward_hook(hook)


class FailingAdamW(torch.optim.AdamW):
    def __init__(self, params, fail_at: int, **kw) -> None:
        super().__init__(params, **kw)
        self.fail_at, self.calls = fail_at, 0

    def step(self, closure=None):
        self.calls += 1
        if self.calls >= self.fail_at:
            raise Boom("optimizer step")
        return super().step(closure)


class FailingCallback(TrainerCallback):
    def __init__(self, at_step: int, exc: BaseException) -> None:
        self.at_step, self.exc = at_step, exc

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.at_step:
            raise self.exc


class FailingSave(Trainer):
    def save_model(self, *args, **kwargs):
        raise OSError(28, "No space left on device (injected)")


# ----------------------------------------------------------------------------- Trainer
def make_trainer(tmp_path, stage: str) -> tuple[Trainer, list, dict]:
    """A 4-step Trainer on a tiny Llama with the fault for ``stage`` armed.

    Returns the trainer, the handles of this test's own fault hooks, and the model's hooks before.
    The data faults come at the third batch: the data loader fetches one batch ahead.
    """
    model = tiny_llama()
    before = hook_snapshot(model)
    args = tiny_trainer_kwargs(tmp_path, max_steps=4)
    train_ds, eval_ds, collator = Rows(), Rows(8), Collator()
    trainer_cls, callbacks, optimizers, undo = Trainer, [], (None, None), []
    if stage == "collator":
        collator = Collator(fail_at=3)
    elif stage == "dataset":
        train_ds = Rows(fail_at=10)  # batches 1 and 2 take items 1-8: fails while building batch 3
    elif stage == "forward":
        undo.append(fail_in_forward(model, at_call=2))
    elif stage == "backward":
        undo.append(fail_in_backward(model, at_call=1))
    elif stage == "optimizer":
        optimizers = (FailingAdamW(model.parameters(), fail_at=1, lr=1e-3), None)
    elif stage == "callback":
        callbacks.append(FailingCallback(1, Boom("callback")))
    elif stage == "interrupt":
        callbacks.append(FailingCallback(1, KeyboardInterrupt()))
    elif stage == "eval":
        args.update(eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=4)
        eval_ds = Rows(8, fail_at=1, name="eval dataset")
    elif stage == "save":
        args.update(save_strategy="steps", save_steps=1)
        trainer_cls = FailingSave
    trainer = trainer_cls(
        model=model,
        args=TrainingArguments(**args),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=collator,
        callbacks=callbacks,
        optimizers=optimizers,
    )
    return trainer, undo, before


STAGES = {
    "collator": (Boom, "collator"),
    "dataset": (Boom, "dataset"),
    "forward": (Boom, "forward"),
    "backward": (Boom, "backward"),
    "optimizer": (Boom, "optimizer step"),
    "callback": (Boom, "callback"),
    "eval": (Boom, "eval dataset"),
    "save": (OSError, "No space left"),
    "interrupt": (KeyboardInterrupt, None),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_trainer_fault_leaves_model_clean(tmp_path, stage):
    trainer, undo, before = make_trainer(tmp_path, stage)
    model = trainer.model
    callback = attach(trainer, 5.0, seed=0)
    exc, message = STAGES[stage]
    with pytest.raises(exc, match=message):
        trainer.train()
    for handle in undo:  # our own fault hooks, so the snapshot compares neftune's alone
        handle.remove()
    assert callback.handle is not None, "the fault must come after activation"
    assert callback.handle.noised_calls >= 1, "at least one training forward ran with noise first"
    assert not callback.handle.active
    assert_clean_and_reusable(model, before)


@pytest.mark.parametrize("stage", ["forward", "callback"])
def test_sft_trainer_fault_leaves_model_clean(tmp_path, stage):
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    model = tiny_llama()
    before = hook_snapshot(model)
    undo = [fail_in_forward(model, at_call=2)] if stage == "forward" else []
    trainer = trl.SFTTrainer(
        model=model,
        args=trl.SFTConfig(
            output_dir=str(tmp_path),
            max_steps=3,
            per_device_train_batch_size=2,
            report_to="none",
            use_cpu=True,
            save_strategy="no",
            disable_tqdm=True,
            max_length=None,
            padding_free=True,
            activation_checkpointing=False,
        ),
        train_dataset=datasets.Dataset.from_dict(
            {"text": ["hello world.", "a b c", "short", "one more line"]}
        ),
        processing_class=char_tokenizer(),
        callbacks=[FailingCallback(2, Boom("callback"))] if stage == "callback" else [],
    )
    callback = attach(trainer, 5.0)
    built = hook_snapshot(trainer.model)  # with what TRL sets on the model when it builds the trainer
    with pytest.raises(Boom, match=stage):
        trainer.train()
    for handle in undo:
        handle.remove()
    assert callback.handle is not None and callback.handle.noised_calls >= 1
    # TRL may leave transformers' own require-grads hook on the embedding; neftune's must all be gone
    after = hook_snapshot(trainer.model)
    assert neftune_hooks(trainer.model) == []
    assert all(after[k][1] == before[k][1] for k in before), "pre-hooks left behind"
    assert_no_leftovers(built, trainer.model)  # no other hook and no attribute of ours left either
    assert not neftune.is_active(trainer.model)
    with neftune.noisy_embeddings(trainer.model, 5.0) as handle:
        trainer.model.train()
        trainer.model(input_ids=torch.tensor([[3, 4, 5]]), attention_mask=torch.ones(1, 3, dtype=torch.long))
        assert handle.noised_calls == 1


# ----------------------------------------------------------------------------- plain loop
def plain_loop(model, stage: str, tmp_path, undo: list) -> None:
    """A hand-written training loop inside ``noisy_embeddings`` with a real fault at ``stage``."""
    dataset = Rows(fail_at=6 if stage == "data" else None, name="data")
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=Collator())
    if stage == "forward":
        undo.append(fail_in_forward(model, at_call=2))
    if stage == "backward":
        undo.append(fail_in_backward(model, at_call=2))
    optimizer = FailingAdamW(model.parameters(), fail_at=2 if stage == "optimizer" else 10**9, lr=1e-3)

    def on_step(step: int) -> None:  # the user's per-step code, e.g. logging
        if stage == "callback" and step == 2:
            raise Boom("callback")

    def evaluate() -> None:
        model.eval()
        with torch.no_grad():
            model(**Collator()([{"input_ids": [1, 2, 3]}]))
            if stage == "eval":
                raise Boom("eval")
        model.train()

    with neftune.noisy_embeddings(model, 5.0, schedule="linear") as handle:
        model.train()
        for step, batch in enumerate(loader, start=1):
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            handle.set_progress(step, len(loader))
            on_step(step)
            evaluate()
            if stage == "save" and step == 2:  # a real failure: the target's parent is a file
                (tmp_path / "file").write_text("x")
                model.save_pretrained(tmp_path / "file" / "checkpoint")


PLAIN_STAGES = {
    "data": (Boom, "data"),
    "forward": (Boom, "forward"),
    "backward": (Boom, "backward"),
    "optimizer": (Boom, "optimizer step"),
    "callback": (Boom, "callback"),
    "eval": (Boom, "eval"),
    "save": (NotADirectoryError, None),
}


@pytest.mark.parametrize("stage", list(PLAIN_STAGES))
def test_plain_loop_fault_leaves_model_clean(tmp_path, stage):
    model = tiny_llama()
    before = hook_snapshot(model)
    exc, message = PLAIN_STAGES[stage]
    undo: list = []
    with pytest.raises(exc, match=message):
        plain_loop(model, stage, tmp_path, undo)
    for handle in undo:  # this test's own fault hooks
        handle.remove()
    assert_clean_and_reusable(model, before)
