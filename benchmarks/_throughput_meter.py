"""A TrainerCallback measuring real-token throughput and peak memory of a training run."""

from __future__ import annotations

import resource
import time
from typing import Any

import torch
from _common import synchronize
from transformers import TrainerCallback


def _checkpointing(model) -> bool:
    """Whether activation checkpointing is on (transformers >= 5.2x renamed the property)."""
    flag = getattr(type(model), "is_activation_checkpointing", None)
    return bool(model.is_activation_checkpointing if flag is not None else model.is_gradient_checkpointing)


class ThroughputMeter(TrainerCallback):
    """Counts real tokens fed to the model and times the steps after ``warmup``.

    A forward pre-hook on the model counts the non-padding tokens of each training forward
    (attention_mask sum; every token when the batch has no mask, as padding-free batches do)
    while the timing window is open; counts stay on the device until the end (no syncs).
    """

    def __init__(self, warmup: int, gradient_checkpointing: bool | None = None) -> None:
        self.warmup = warmup
        # True: turn activation checkpointing on at train begin (where the Trainer turns it on when
        # its arguments ask), with the same defaults; used for runs whose trainer cannot be asked.
        self.force_checkpointing = gradient_checkpointing
        self.window_open = False
        self.tokens: torch.Tensor | int = 0
        self.fed_tokens: torch.Tensor | int = 0
        self.loss_tokens: torch.Tensor | int = 0
        self.forwards = 0
        self.steps_timed = 0
        self.t0 = self.t1 = None
        self.device = torch.device("cpu")
        self.settings: dict[str, Any] = {}
        self._hook = None
        self._neftune = None

    def _count(self, module, args, kwargs) -> None:
        if not (self.window_open and module.training and torch.is_grad_enabled()):
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        labels = kwargs.get("labels")
        if ids is None:
            return
        self.forwards += 1
        self.fed_tokens = self.fed_tokens + ids.numel()
        self.tokens = self.tokens + (mask.sum() if isinstance(mask, torch.Tensor) else ids.numel())
        if isinstance(labels, torch.Tensor):
            self.loss_tokens = self.loss_tokens + (labels != -100).sum()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.device = next(model.parameters()).device
        self._hook = model.register_forward_pre_hook(self._count, with_kwargs=True)
        if self.force_checkpointing and not _checkpointing(model):
            enable = (
                getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            )
            enable()  # the defaults the Trainer uses when its checkpointing kwargs are None (TRL's)
        self.settings = {
            # What the model runs with (set by the Trainer from its arguments, or forced above).
            "gradient_checkpointing": _checkpointing(model),
            "gradient_checkpointing_forced_by_benchmark": bool(self.force_checkpointing),
            "bf16": bool(args.bf16),
            "fp16": bool(args.fp16),
            "padding_free": getattr(args, "padding_free", None),
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "max_length": getattr(args, "max_length", None),
            "optim": str(args.optim),
            "torch_compile": bool(args.torch_compile),
            "use_liger_kernel": getattr(args, "use_liger_kernel", None),
            "neftune_noise_alpha": args.neftune_noise_alpha,
            "model_dtype": str(next(model.parameters()).dtype),
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
        }
        import neftune

        self._neftune = neftune.get_handle(model)  # our callback activates before this one
        emb = model.get_input_embeddings()
        self.settings["transformers_neftune_hook"] = getattr(emb, "neftune_noise_alpha", None) is not None
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.window_open and state.global_step >= self.warmup:
            synchronize(self.device)
            self.t0 = time.perf_counter()
            self.window_open = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.window_open:
            self.steps_timed += 1
            synchronize(self.device)
            self.t1 = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.window_open = False
        if self._hook is not None:
            self._hook.remove()
        h = self._neftune
        self.settings["neftune"] = (
            None
            if h is None
            else {
                "alpha": h.base_alpha,
                "scaling": h.config.scaling,
                "backend": h.config.backend,
                "last_backend": h.last_backend,
                "noised_calls": h.noised_calls,
            }
        )

    def result(self) -> dict[str, Any]:
        if self.t0 is None or self.t1 is None or self.steps_timed == 0:
            raise RuntimeError("no step was timed: raise --steps above --warmup")
        seconds = self.t1 - self.t0
        tokens = int(self.tokens)
        cuda = self.device.type == "cuda"
        return {
            "steps_timed": self.steps_timed,
            "forwards_counted": self.forwards,
            "seconds": seconds,
            "real_tokens": tokens,
            "fed_tokens": int(self.fed_tokens),
            "padding_fraction": 1 - tokens / max(1, int(self.fed_tokens)),
            "loss_tokens": int(self.loss_tokens),
            "real_tokens_per_s": tokens / seconds,
            "seconds_per_step": seconds / self.steps_timed,
            "peak_mem_mib": torch.cuda.max_memory_allocated(self.device) / 2**20 if cuda else None,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "settings": self.settings,
        }
