"""``NEFTuneEmbedding``: an ``nn.Embedding`` that adds the noise itself (no hooks)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from ..config import NEFTuneConfig, make_config
from ..kernels.backend import output_writable_in_place, resolve_backend
from ..noise import check_alpha, generator_device, noised, pad_token_mask
from ..streams import NoiseStream
from .checkpointing import differentiated_reentrant_forward, draw_key, in_backward, replaying
from .discovery import placeholder_mask
from .guards import transformers_hooked


class NEFTuneEmbedding(nn.Embedding):
    """An ``nn.Embedding`` that adds NEFTune noise in training; shares the wrapped module's weight.

    ``NEFTuneEmbedding(model.embed_tokens, 5.0)`` or ``NEFTuneEmbedding(emb, config)`` keeps the
    same ``weight`` Parameter (tied weights stay tied, state-dict keys unchanged).
    ``forward(input_ids, attention_mask=None, position_ids=None, cu_seqlens=None)``: without
    them, ``L`` is the row length (masks as in :func:`neftune.add_noise`). ``config``: a :class:`~neftune.NEFTuneConfig` (or alpha) and
    overrides as in :func:`neftune.activate`; scaling is always per sequence and there is no
    schedule (call :meth:`set_alpha`). The fused kernel noises the lookup's result in place.
    ``config.ignore_token_ids``: tokens that get no noise and do not count in ``L`` (a VLM's
    media placeholders; there is no model config to read them from here, so None means none).
    Under activation checkpointing the recompute repeats the forward's noise
    (:mod:`neftune.activation.checkpointing`).
    """

    def __init__(
        self, embedding: nn.Embedding, config: NEFTuneConfig | float | None = None, **overrides: Any
    ) -> None:
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"embedding must be a torch.nn.Embedding, got {type(embedding).__name__}")
        config = make_config(config, **overrides)
        if config.scaling != "per_sequence" or config.schedule is not None:
            raise ValueError(
                "NEFTuneEmbedding adds per-sequence noise without a schedule; use neftune.activate "
                "for scaling='batch' or a schedule"
            )
        nn.Module.__init__(self)
        for name in (
            "num_embeddings",
            "embedding_dim",
            "padding_idx",
            "max_norm",
            "norm_type",
            "scale_grad_by_freq",
            "sparse",
        ):
            setattr(self, name, getattr(embedding, name))
        self.weight = embedding.weight
        self.config = config
        self.alpha = config.alpha
        self._stream = NoiseStream(config.seed)
        self.train(embedding.training)

    @property
    def distribution(self) -> str:
        return self.config.distribution

    @property
    def backend(self) -> str:
        return self.config.backend

    @property
    def seed(self) -> int | None:
        return self.config.seed

    def set_alpha(self, alpha: float) -> None:
        """Change the noise magnitude (0 turns it off)."""
        self.alpha = check_alpha(alpha)

    def forward(
        self,
        input: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = super().forward(input)
        if not self.training or self.alpha == 0.0:
            return out
        if not torch.is_grad_enabled() and (
            torch.compiler.is_compiling()
            or torch.is_inference_mode_enabled()
            or not differentiated_reentrant_forward()
        ):
            return out  # a no-grad pass (not the forward of a reentrant checkpoint): stays clean
        if transformers_hooked([self]) is not None:
            raise ValueError(
                "transformers' own NEFTune hook was added to a NEFTuneEmbedding, which adds the noise "
                "itself: the noise would be added twice; unset neftune_noise_alpha in the trainer arguments"
            )
        compiling = torch.compiler.is_compiling()
        recompute = not compiling and in_backward()
        key = draw_key(out, input)
        draw = self._stream.journal.take(key) if recompute else None
        if draw is not None:
            params = draw.params
        else:
            backend = resolve_backend(self.backend, out)
            params = {
                "alpha": self.alpha,
                "backend": backend,
                "batch": {
                    "attention_mask": attention_mask,
                    "position_ids": position_ids,
                    "cu_seqlens": cu_seqlens,
                },
                "ignore": placeholder_mask(input, self.config.ignore_token_ids or (), tuple(out.shape[:-1])),
                "pad_mask": pad_token_mask(input, self.config.pad_token_id, out),
            }
        backend = params["backend"]
        generator = self._stream.generator(generator_device(backend, out))
        if not compiling and not recompute:
            self._stream.journal.record(key, generator, params)
        with replaying(draw, generator) if recompute else contextlib.nullcontext():
            result, _ = noised(
                out,
                params["alpha"],
                backend=backend,
                distribution=self.distribution,
                generator=generator,
                inplace=backend == "triton" and output_writable_in_place(out),
                ignore=params["ignore"],
                pad_mask=params["pad_mask"],
                need_noise=False,
                **params["batch"],
            )
        return result

    def to_embedding(self) -> nn.Embedding:
        """A plain ``nn.Embedding`` sharing this module's weight."""
        plain = nn.Embedding(
            self.num_embeddings,
            self.embedding_dim,
            self.padding_idx,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.sparse,
            _weight=self.weight.data,
        )
        plain.weight = self.weight
        return plain

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, alpha={self.alpha:g}, distribution={self.distribution!r}, "
            f"backend={self.backend!r}"
        )
