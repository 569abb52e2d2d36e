"""What the framework entries (LLaMA-Factory, ``trl sft``, ms-swift) share: the tokenizer's pad id.

Packers pad a row's tail with the tokenizer's pad token, and some give that tail position ids of its
own (LLaMA-Factory: position 0 for every pad token), which would make each pad token a one-token
"sequence". :attr:`NEFTuneConfig.pad_token_id <neftune.NEFTuneConfig>` marks such segments as padding;
a framework's entry knows the tokenizer, so it fills the id in unless the user gave one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import NEFTuneConfig
from .transformers import NEFTuneCallback

__all__ = ["FrameworkNEFTuneCallback", "pad_token_id_of", "with_pad_token_id"]


def pad_token_id_of(processing_class: Any) -> int | None:
    """The pad token id of a tokenizer, or of a processor's tokenizer; None when there is none."""
    for candidate in (processing_class, getattr(processing_class, "tokenizer", None)):
        pad = getattr(candidate, "pad_token_id", None)
        if isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0:
            return pad
    return None


def with_pad_token_id(config: NEFTuneConfig, processing_class: Any) -> NEFTuneConfig:
    """``config`` with the tokenizer's pad id, unless it names one already (or there is none)."""
    if config.pad_token_id is not None:
        return config
    pad = pad_token_id_of(processing_class)
    return config if pad is None else dataclasses.replace(config, pad_token_id=pad)


class FrameworkNEFTuneCallback(NEFTuneCallback):
    """:class:`NEFTuneCallback` that takes ``pad_token_id`` from the trainer's ``processing_class``
    when training begins (the tokenizer the framework built, after any pad token it added)."""

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.config = with_pad_token_id(self.config, kwargs.get("processing_class"))
        super().on_train_begin(args, state, control, model=model, **kwargs)
