"""``NEFTuneCallback`` for ``transformers.Trainer`` (and TRL trainers, which subclass it).

    trainer = Trainer(model=model, args=args, ...)
    neftune.integrations.attach(trainer, NEFTuneConfig(alpha=5.0))   # or attach(trainer, 5.0)
    trainer.train()                                                  # cleaned up if it raises

or ``Trainer(..., callbacks=[NEFTuneCallback(NEFTuneConfig(alpha=5.0))])``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from transformers import TrainerCallback

from ..activation.hooks import NEFTuneHandle, activate
from ..config import NEFTuneConfig, make_config

logger = logging.getLogger("neftune")

__all__ = ["NEFTuneCallback", "add_neftune", "attach"]

#: Tag of the handles the callback creates (see ``neftune.activate``'s ``created_by``).
CREATED_BY = "NEFTuneCallback"


class NEFTuneCallback(TrainerCallback):
    """Per-sequence NEFTune for the duration of ``trainer.train()``.

    Activates on the trainer's model at ``on_train_begin`` (PEFT / DDP wrappers are
    unwrapped by :func:`neftune.activate`), advances the alpha schedule after every
    optimizer step, adds ``neftune/alpha`` and ``neftune/noise_ratio`` to the training
    logs, and removes the hooks at ``on_train_end``. Callbacks are not told when
    ``train()`` raises: use :func:`attach` to also clean up in that case.

    ``config``: a :class:`~neftune.NEFTuneConfig` (or alpha), with ``overrides`` as in
    :func:`neftune.activate`; checked here, and handed to ``activate`` unchanged.
    """

    def __init__(
        self,
        config: NEFTuneConfig | float | None = None,
        *,
        log_every_logging_step: bool = True,
        **overrides: Any,
    ) -> None:
        self.config = make_config(config, **overrides)  # checked now, not at train time
        self.log_every_logging_step = log_every_logging_step
        self.handle: NEFTuneHandle | None = None

    @property
    def alpha(self) -> float:
        return self.config.alpha

    # -- lifecycle ----------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if getattr(args, "neftune_noise_alpha", None) is not None:
            raise ValueError(
                f"TrainingArguments.neftune_noise_alpha={args.neftune_noise_alpha} is set and NEFTuneCallback "
                "is used: the noise would be added twice. Set neftune_noise_alpha=None (the callback "
                "replaces it with per-sequence noise)."
            )
        if model is None:
            raise ValueError(
                "NEFTuneCallback.on_train_begin got no model; is it used with a transformers Trainer?"
            )
        self.remove()  # a previous train() that raised without attach()
        # created_by: a handle left active by another NEFTuneCallback whose train() raised is replaced.
        self.handle = activate(model, self.config, created_by=CREATED_BY)
        self.handle.set_progress(state.global_step, state.max_steps)
        logger.info("NEFTune activated: %r", self.handle)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Measure the noise ratio only on the forward of a step that will be logged: the two
        # reductions are cheap, but measuring also keeps the fused kernel out of place.
        if (
            self.handle is not None
            and self.log_every_logging_step
            and _logs_after(args, state, state.global_step + 1)
        ):
            self.handle.record_stats = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.handle is not None:
            self.handle.set_progress(state.global_step, state.max_steps)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if self.handle is None or not self.log_every_logging_step or logs is None or "loss" not in logs:
            return
        extra = {"neftune/alpha": self.handle.alpha}
        ratio = self.handle.last_noise_ratio
        if ratio is not None:
            extra["neftune/noise_ratio"] = ratio
        logs.update(extra)  # reaches the report_to callbacks that run after this one
        # Trainer.log has already copied ``logs`` into the history: add them there too.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            last = state.log_history[-1]
            if all(last.get(k) == v for k, v in logs.items() if k not in extra):
                last.update(extra)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hooks now (idempotent)."""
        if self.handle is not None:
            self.handle.remove()
            logger.info("NEFTune removed")

    def __repr__(self) -> str:
        state = repr(self.handle) if self.handle is not None and self.handle.active else "inactive"
        return f"NEFTuneCallback(alpha={self.alpha:g}, scaling={self.config.scaling!r}, {state})"


def _logs_after(args: Any, state: Any, step: int) -> bool:
    """Whether the trainer logs the training loss after optimizer step ``step`` (1-based).

    The same rule as transformers' ``DefaultFlowCallback``, with the interval the Trainer resolved
    into ``state.logging_steps`` (a fractional ``logging_steps`` is a share of the total steps).
    """
    strategy = getattr(args, "logging_strategy", "steps")
    strategy = str(getattr(strategy, "value", strategy))  # an IntervalStrategy enum in TrainingArguments
    if step == 1 and getattr(args, "logging_first_step", False):
        return True
    if strategy != "steps":
        return True  # "epoch" / "no": cannot tell cheaply; measure every step as before
    return step % max(1, int(state.logging_steps)) == 0


def attach(trainer: Any, config: NEFTuneConfig | float | None = None, **kwargs: Any) -> NEFTuneCallback:
    """Add a :class:`NEFTuneCallback` to ``trainer`` and make ``trainer.train`` clean up on errors.

    The callback is put first, so the ``neftune/*`` values it adds to the logs reach every
    ``report_to`` backend. ``trainer.train`` is wrapped (an instance attribute) in
    ``try/finally``: if training raises, ``on_train_end`` never runs, and the wrapper removes
    the hooks instead. ``config`` and ``kwargs`` are those of :class:`NEFTuneCallback`.
    """
    handler = getattr(trainer, "callback_handler", None)
    if handler is None or not callable(getattr(trainer, "train", None)):
        raise TypeError(
            f"attach() needs a transformers Trainer (or a TRL trainer), got {type(trainer).__name__}; "
            "for your own loop use neftune.activate(model, alpha) or neftune.noisy_embeddings"
        )
    callback = NEFTuneCallback(config, **kwargs)
    handler.callbacks.insert(0, callback)
    original = trainer.train

    @functools.wraps(original)
    def train(*args: Any, **kw: Any) -> Any:
        try:
            return original(*args, **kw)
        finally:
            callback.remove()

    trainer.train = train
    return callback


add_neftune = attach
