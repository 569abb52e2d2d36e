"""Learning curves with the noise off: a trainer callback that evaluates every N optimizer steps.

Each point goes into ``trainer.state.log_history`` as ``{"step": s, "curve/<metric>": value, ...}``
(``<metric>`` named as in ``neftune eval``: ``loss/train``, ``loss/<split>``, ``accuracy/<split>``),
so it is saved with checkpoints, survives ``--resume`` and ends up in ``train_log.json``.
The model is switched to eval mode under ``torch.no_grad()`` for the measurement (no noise is
added there) and back to training mode after.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from ..finetune.data import Record, records_to_examples
from ..finetune.evaluation import generate, response_loss
from ..finetune.metrics import accuracy

PREFIX = "curve/"


class CurveCallback(TrainerCallback):
    """Noise-off loss (and, for built-in tasks, accuracy) at step 0 and every ``every`` steps.

    ``loss_sets``: name -> records for ``loss/<name>`` (use ``"train"`` for a training subset);
    ``accuracy_sets``: name -> records with checkable answers for ``accuracy/<name>`` (greedy,
    ``max_new_tokens`` each). Keep the sets small: every point costs one forward per record.
    """

    def __init__(
        self,
        every: int,
        loss_sets: dict[str, Sequence[Record]],
        accuracy_sets: dict[str, Sequence[Record]] | None = None,
        *,
        max_new_tokens: int = 32,
        batch_size: int = 8,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1 optimizer steps, got {every}")
        self.every = every
        self.loss_sets = {k: list(v) for k, v in loss_sets.items() if v}
        self.accuracy_sets = {k: list(v) for k, v in (accuracy_sets or {}).items() if v}
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def measure(self, model: Any, tokenizer: Any) -> dict[str, float]:
        """One curve point: ``{"loss/<name>": ..., "accuracy/<name>": ...}`` with the noise off."""
        was_training = model.training
        model.eval()
        try:
            point = {
                f"loss/{name}": response_loss(model, tokenizer, records, self.batch_size)
                for name, records in self.loss_sets.items()
            }
            for name, records in self.accuracy_sets.items():
                outputs = generate(
                    model, tokenizer, records, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size
                )
                point[f"accuracy/{name}"] = accuracy(records_to_examples(records), outputs)
        finally:
            model.train(was_training)
        return point

    def _record(self, state: Any, model: Any, tokenizer: Any) -> None:
        if any(e.get("step") == state.global_step and _is_curve(e) for e in state.log_history):
            return  # already measured (e.g. restored from a checkpoint)
        point = self.measure(model, tokenizer)
        entry = {f"{PREFIX}{k}": v for k, v in point.items()}
        state.log_history.append({"step": state.global_step, **entry})

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 0:
            self._record(state, kwargs["model"], kwargs["processing_class"])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self._record(state, kwargs["model"], kwargs["processing_class"])


def _is_curve(entry: dict[str, Any]) -> bool:
    return any(k.startswith(PREFIX) for k in entry)


def curves_from_log(log_history: Sequence[dict[str, Any]]) -> dict[str, list]:
    """Split a trainer log into ``{"train_loss": [[step, loss], ...], "eval": [{"step": s, ...}, ...]}``.

    ``train_loss`` is the trainer's logged loss (noise on); ``eval`` the noise-off curve points,
    sorted by step, the last measurement winning if a step appears twice.
    """
    train_loss = sorted(
        {int(e["step"]): float(e["loss"]) for e in log_history if "loss" in e and "step" in e}.items()
    )
    points: dict[int, dict[str, Any]] = {}
    for e in log_history:
        if _is_curve(e) and "step" in e:
            points[int(e["step"])] = {
                "step": int(e["step"]),
                **{k[len(PREFIX) :]: v for k, v in e.items() if k.startswith(PREFIX)},
            }
    return {"train_loss": [list(p) for p in train_loss], "eval": [points[s] for s in sorted(points)]}
