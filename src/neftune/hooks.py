"""Attach NEFTune to a model: activate / deactivate / is_active / noisy_embeddings / NEFTuneEmbedding.

Mechanics: a forward hook on the input embedding adds the noise; a forward pre-hook
(with kwargs) on the top-level model records the batch's ``attention_mask``,
``position_ids`` and ``cu_seq_lens_q`` so the embedding hook can scale by each
sequence's own length. Nothing is stored on the modules themselves: the active
handles live in a weak registry, and after ``deactivate`` no hook or attribute remains.
Deep copies and pickles of a model with NEFTune active come out *without* noise (the
hooks copy as inert no-ops, cleared by the next ``activate`` on the copy): a reference
model made by ``copy.deepcopy`` must not be noised.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import operator
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .discovery import find_input_embedding, unwrap_model
from .kernels.backend import (
    check_backend,
    is_plain_embedding_forward,
    output_writable_in_place,
    resolve_backend,
)
from .noise import (
    DISTRIBUTIONS,
    SCALINGS,
    batch_scaled_noise_like,
    check_alpha,
    check_choice,
    fused_noisy,
    make_noise,
    sample_eps,
)
from .schedules import Schedule, resolve_schedule, schedule_name

# Keyword names under which models receive the tensors that define sequence boundaries.
_BATCH_KEYS = {
    "attention_mask": ("attention_mask",),
    "position_ids": ("position_ids",),
    "cu_seqlens": ("cu_seq_lens_q", "cu_seqlens_q", "cu_seqlens"),
    "decoder_attention_mask": ("decoder_attention_mask",),
}
_RANK_STRIDE = 1_000_003  # distinct, reproducible seeds per distributed rank

_ACTIVE: weakref.WeakKeyDictionary[nn.Module, NEFTuneHandle] = weakref.WeakKeyDictionary()


class _Inert:
    """What a NEFTune hook becomes in a deep copy or pickle: does nothing."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Hook:
    """A hook that calls ``fn`` but copies and pickles as :class:`_Inert`."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> tuple[type, tuple]:
        return (_Inert, ())


def _drop_inert_hooks(module: nn.Module) -> None:
    for hooks in (module._forward_hooks, module._forward_pre_hooks):
        for key in [k for k, fn in hooks.items() if isinstance(fn, _Inert)]:
            del hooks[key]
            module._forward_hooks_with_kwargs.pop(key, None)
            module._forward_hooks_always_called.pop(key, None)
            module._forward_pre_hooks_with_kwargs.pop(key, None)


def _as_steps(value: Any, name: str) -> int:
    """An optimizer-step count as an int (whole floats accepted); TypeError naming ``name`` otherwise."""
    if not isinstance(value, bool):
        with contextlib.suppress(TypeError):
            return operator.index(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    raise TypeError(f"set_progress: {name} must be an integer number of optimizer steps, got {value!r}")


def _distributed_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


@dataclass
class NEFTuneConfig:
    """Settings of one activation (see :func:`activate`)."""

    alpha: float = 5.0
    distribution: str = "uniform"
    scaling: str = "per_sequence"
    seed: int | None = None
    schedule: str | Schedule | None = None
    backend: str = "auto"
    #: ``schedule`` as a function of (step, total_steps), or None; checked once, here.
    resolved_schedule: Schedule | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.alpha = check_alpha(self.alpha)
        check_choice(self.distribution, DISTRIBUTIONS, "distribution")
        check_choice(self.scaling, SCALINGS, "scaling")
        check_backend(self.backend, scaling=self.scaling)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(self.seed).__name__}")
        self.resolved_schedule = resolve_schedule(self.schedule)


class NEFTuneHandle:
    """An active NEFTune attachment. ``remove()`` (or :func:`deactivate`) takes it off.

    ``alpha`` is the current effective alpha (base alpha x schedule multiplier).
    Set ``record_stats = True`` to have the next noised forward store the measured
    noise-to-embedding norm ratio in ``last_noise_ratio``. ``last_backend`` says which
    implementation ("torch" or "triton") noised the last batch and ``last_inplace``
    whether the fused kernel wrote into the embedding output in place.
    """

    def __init__(
        self,
        model: nn.Module,
        targets: tuple[tuple[str, nn.Module], ...],
        owners: tuple[nn.Module, ...],
        config: NEFTuneConfig,
    ):
        self.model = model
        self.targets = targets
        self.path, self.embedding = targets[0]
        self.config = config
        self.schedule = config.resolved_schedule
        self.base_alpha = config.alpha
        self.step = 0
        self.total_steps = 0
        self.record_stats = False
        self.noised_calls = 0
        self.last_backend: str | None = None
        self.last_inplace = False
        self._last_stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self._generators: dict[torch.device, torch.Generator] = {}
        self._context: dict[str, torch.Tensor] = {}
        self._depth = 0
        self._warned: set[str] = set()
        self._signatures: dict[type, list[str]] = {}
        self._removables = []
        self._hook_ids: dict[int, int] = {}  # id(embedding module) -> id of our forward hook on it
        for path, module in targets:
            role = "decoder" if "decoder" in path.split(".") else "main"
            hook = _Hook(functools.partial(self._embedding_hook, role))
            removable = module.register_forward_hook(hook)
            self._hook_ids[id(module)] = removable.id
            self._removables.append(removable)
        for owner in owners:
            self._removables.append(owner.register_forward_pre_hook(_Hook(self._pre_hook), with_kwargs=True))
            self._removables.append(
                owner.register_forward_hook(_Hook(self._post_hook), with_kwargs=True, always_call=True)
            )
        self.active = True

    # -- public -------------------------------------------------------------------------
    @property
    def alpha(self) -> float:
        if self.schedule is None:
            return self.base_alpha
        factor = check_alpha(self.schedule(self.step, self.total_steps), "schedule multiplier")
        return self.base_alpha * factor

    def set_alpha(self, alpha: float) -> None:
        """Change the base alpha (the schedule still multiplies it)."""
        self.base_alpha = check_alpha(alpha)

    def set_progress(self, step: int, total_steps: int = 0) -> None:
        """Tell the schedule where training is (optimizer steps done, total; 0 = unknown)."""
        self.step, self.total_steps = _as_steps(step, "step"), _as_steps(total_steps or 0, "total_steps")

    @property
    def last_noise_ratio(self) -> float | None:
        """||noise|| / ||embeddings|| over the real tokens of the last recorded batch."""
        if self._last_stats is None:
            return None
        noise_norm, embed_norm = (float(t) for t in self._last_stats)
        return noise_norm / embed_norm if embed_norm > 0 else math.inf

    def status(self) -> dict[str, Any]:
        """What is active where, for printing or logging."""
        return {
            "active": self.active,
            "alpha": self.alpha,
            "base_alpha": self.base_alpha,
            "distribution": self.config.distribution,
            "scaling": self.config.scaling,
            "schedule": schedule_name(self.schedule),
            "seed": self.config.seed,
            "backend": self.config.backend,
            "module": ", ".join(p or "<root>" for p, _ in self.targets),
            "module_type": type(self.embedding).__name__,
        }

    def __repr__(self) -> str:
        s = self.status()
        state = "active" if self.active else "removed"
        return (
            f"NEFTune({state}, alpha={s['alpha']:g}, distribution={s['distribution']!r}, "
            f"scaling={s['scaling']!r}, schedule={s['schedule']!r}, module={s['module']!r} ({s['module_type']}))"
        )

    def remove(self) -> None:
        """Remove every hook this handle registered. Safe to call twice."""
        for removable in self._removables:
            removable.remove()
        self._removables = []
        self._context = {}
        self._generators = {}
        for _, module in self.targets:
            if _ACTIVE.get(module) is self:
                del _ACTIVE[module]
        self.active = False

    # -- internals ----------------------------------------------------------------------
    def generator(self, device: torch.device) -> torch.Generator | None:
        """The private generator for ``device`` (None = torch's default RNG)."""
        rank = _distributed_rank()
        seed = self.config.seed
        if seed is None and rank == 0:
            return None
        gen = self._generators.get(device)
        if gen is None:
            if seed is None:  # distributed without a seed: differ per rank, follow torch's seed
                seed = torch.initial_seed()
            gen = torch.Generator(device=device)
            gen.manual_seed((seed + rank * _RANK_STRIDE) % (2**63))
            self._generators[device] = gen
        return gen

    def _param_names(self, module: nn.Module) -> list[str]:
        names = self._signatures.get(type(module))
        if names is None:
            try:
                params = inspect.signature(module.forward).parameters.values()
                names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            except (TypeError, ValueError):
                names = []
            self._signatures[type(module)] = names
        return names

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._depth == 0:
            self._context = {}
        self._depth += 1
        positional = dict(zip(self._param_names(module), args)) if args else {}
        for key, names in _BATCH_KEYS.items():
            if key in self._context:
                continue
            for name in names:
                value = kwargs.get(name, positional.get(name))
                if isinstance(value, torch.Tensor):
                    self._context[key] = value
                    break

    def _post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:
            self._context = {}

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    def _batch_tensors(self, role: str, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mask / positions / cu_seqlens for this embedding call, dropped if they do not fit."""
        ctx = self._context
        if role == "decoder":  # encoder-decoder models: the decoder has its own mask, if given
            found = (
                {"attention_mask": ctx["decoder_attention_mask"]} if "decoder_attention_mask" in ctx else {}
            )
        else:
            found = {k: ctx[k] for k in ("attention_mask", "position_ids", "cu_seqlens") if k in ctx}
        shape = tuple(output.shape[:-1]) if output.dim() == 3 else (1, output.shape[0])
        kept = {}
        for key, value in found.items():
            if key == "cu_seqlens" or tuple(value.shape) == shape or (value.dim() == 1 and shape[0] == 1):
                kept[key] = value
            else:
                self._warn_once(
                    key,
                    f"NEFTune: ignoring {key} of shape {tuple(value.shape)}, which does not match the "
                    f"embeddings {shape}; noise for those batches is scaled by the row length",
                )
        return kept

    def _embedding_hook(self, role: str, module: nn.Module, args: tuple, output: Any) -> Any:
        if not (module.training and torch.is_grad_enabled()):
            return None
        if (
            not isinstance(output, torch.Tensor)
            or not output.is_floating_point()
            or output.dim() not in (2, 3)
        ):
            described = (
                f"a {output.dtype} tensor of shape {tuple(output.shape)}"
                if isinstance(output, torch.Tensor)
                else type(output).__name__
            )
            self._warn_once(
                "output",
                f"NEFTune: the embedding returned {described}, not floating-point (batch, seq, dim) or "
                "(seq, dim) embeddings; no noise is added. Pass embedding= to activate() to pick the module.",
            )
            return None
        batch = self._batch_tensors(role, output)
        alpha = self.alpha
        if alpha == 0.0:
            return None
        backend = resolve_backend(self.config.backend, output, scaling=self.config.scaling)
        self.last_backend = backend
        if backend == "triton":
            return self._fused_noise(module, output, alpha, batch)
        self.last_inplace = False
        gen = self.generator(output.device)
        if self.config.scaling == "batch":
            if self.config.distribution == "uniform":
                noise = batch_scaled_noise_like(output, alpha, gen)
            else:
                length, dim = output.shape[-2], output.shape[-1]
                noise = sample_eps(
                    output.shape,
                    self.config.distribution,
                    dtype=output.dtype,
                    device=output.device,
                    generator=gen,
                ) * (alpha / math.sqrt(length * dim))
        else:
            noise = make_noise(output, alpha, distribution=self.config.distribution, generator=gen, **batch)
        self.noised_calls += 1
        if self.record_stats:
            with torch.no_grad():
                self._last_stats = (noise.float().norm(), output.detach().float().norm())
            self.record_stats = False
        return output + noise

    def _fused_noise(
        self, module: nn.Module, output: torch.Tensor, alpha: float, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Per-sequence noise by the fused kernel, written in place when that is safe."""
        inplace = not self.record_stats and self._may_write_in_place(module, output)
        # Seeds come from a CPU generator (no device sync): the private one, or torch's default.
        noised = fused_noisy(
            output,
            alpha,
            distribution=self.config.distribution,
            generator=self.generator(torch.device("cpu")),
            inplace=inplace,
            **batch,
        )
        self.last_inplace = inplace
        self.noised_calls += 1
        if self.record_stats:  # out of place on these steps, so the noise can be measured
            with torch.no_grad():
                clean = output.detach().float()
                self._last_stats = ((noised.detach().float() - clean).norm(), clean.norm())
            self.record_stats = False
        return noised

    def _may_write_in_place(self, module: nn.Module, output: torch.Tensor) -> bool:
        """Whether overwriting ``output`` (the embedding's result) is invisible to everyone else.

        Needs: a plain ``nn.Embedding`` forward (its backward keeps only the indices), an output
        autograd allows to be written (:func:`output_writable_in_place`), and no other hook that
        ran before ours and may have kept a reference to the clean output — except
        transformers' ``enable_input_require_grads`` hook, which only flips ``requires_grad``.
        """
        if not is_plain_embedding_forward(module) or not output_writable_in_place(output):
            return False
        global_hooks = getattr(torch.nn.modules.module, "_global_forward_hooks", None)
        if global_hooks:
            return False
        ours = self._hook_ids.get(id(module))
        for key, fn in module._forward_hooks.items():
            if key == ours:
                return True
            if getattr(fn, "__name__", None) != "make_inputs_require_grads":
                return False
        return False


def activate(
    model: nn.Module,
    alpha: float = 5.0,
    *,
    distribution: str = "uniform",
    scaling: str = "per_sequence",
    seed: int | None = None,
    schedule: str | Schedule | None = None,
    embedding: nn.Module | None = None,
    backend: str = "auto",
) -> NEFTuneHandle:
    """Turn NEFTune on for ``model``; returns a handle (pass it, or the model, to :func:`deactivate`).

    ``alpha``: noise magnitude (paper: 5, 10, 15); ``distribution``: "uniform" | "gaussian" |
    "symmetric"; ``scaling``: "per_sequence" (each sequence's true length, no noise on
    padding) or "batch" (transformers' padded-length formula, bit-identical draws);
    ``seed``: private reproducible generator (each distributed rank offset differently);
    ``schedule``: name or callable ``(step, total_steps) -> multiplier``; ``embedding``:
    the module to noise, when it cannot be found automatically; ``backend``: "auto" (the
    fused Triton kernel for CUDA embeddings when triton is installed, else torch), "torch"
    (the reference) or "triton" (forced; raises where it cannot run). The fused kernel
    writes into the embedding output in place when autograd and the other hooks allow.
    Noise is added only while the embedding is in training mode and autograd is enabled.
    """
    config = NEFTuneConfig(alpha, distribution, scaling, seed, schedule, backend)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if embedding is None:
        location = find_input_embedding(model)
        targets, owners = location.tied, location.owners
    else:
        if not isinstance(embedding, nn.Module):
            raise TypeError(f"embedding must be a torch.nn.Module, got {type(embedding).__name__}")
        owners = (unwrap_model(model),)
        targets = ((next((n for n, m in model.named_modules() if m is embedding), "<given>"), embedding),)
    for path, module in targets:
        if module in _ACTIVE:
            raise ValueError(
                f"NEFTune is already active on {path or type(module).__name__}; call neftune.deactivate() "
                "first (two activations would add the noise twice)"
            )
        if getattr(module, "neftune_noise_alpha", None) is not None and module._forward_hooks:
            raise ValueError(
                "transformers' own NEFTune hook is active on this embedding (neftune_noise_alpha="
                f"{module.neftune_noise_alpha}); unset neftune_noise_alpha in the trainer arguments, "
                "or the noise would be added twice"
            )
    for module in (*(m for _, m in targets), *owners):
        _drop_inert_hooks(module)
    handle = NEFTuneHandle(model, targets, owners, config)
    for _, module in targets:
        _ACTIVE[module] = handle
    return handle


def get_handle(model_or_embedding: nn.Module | NEFTuneHandle) -> NEFTuneHandle | None:
    """The active handle of a model (or of its embedding), or None."""
    if isinstance(model_or_embedding, NEFTuneHandle):
        return model_or_embedding if model_or_embedding.active else None
    if not isinstance(model_or_embedding, nn.Module):
        raise TypeError(
            f"expected a torch.nn.Module or a NEFTune handle, got {type(model_or_embedding).__name__}"
        )
    if model_or_embedding in _ACTIVE:
        return _ACTIVE[model_or_embedding]
    try:
        embedding = find_input_embedding(model_or_embedding).module
    except ValueError:
        return None
    return _ACTIVE.get(embedding)


def is_active(model: nn.Module) -> bool:
    """Whether NEFTune (ours) is active on ``model``'s input embedding."""
    return get_handle(model) is not None


def deactivate(handle_or_model: NEFTuneHandle | nn.Module) -> bool:
    """Remove NEFTune; accepts the handle or the model. Returns whether anything was removed."""
    handle = get_handle(handle_or_model)
    if handle is None:
        return False
    handle.remove()
    return True


@contextlib.contextmanager
def noisy_embeddings(model: nn.Module, alpha: float = 5.0, **kwargs: Any) -> Iterator[NEFTuneHandle]:
    """``with noisy_embeddings(model, 5.0): train()`` — removed on exit, also on exception."""
    handle = activate(model, alpha, **kwargs)
    try:
        yield handle
    finally:
        handle.remove()


class NEFTuneEmbedding(nn.Embedding):
    """An ``nn.Embedding`` that adds NEFTune noise in training; shares the wrapped module's weight.

    ``NEFTuneEmbedding(model.embed_tokens, alpha=5.0)`` keeps the same ``weight`` Parameter
    (tied weights stay tied, state-dict keys unchanged). ``forward(input_ids, attention_mask=None,
    position_ids=None, cu_seqlens=None)``: without them, ``L`` is the row length.
    ``backend`` as in :func:`activate`; the fused kernel noises the lookup's result in place.
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        alpha: float = 5.0,
        *,
        distribution: str = "uniform",
        seed: int | None = None,
        backend: str = "auto",
    ) -> None:
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"embedding must be a torch.nn.Embedding, got {type(embedding).__name__}")
        config = NEFTuneConfig(alpha, distribution, "per_sequence", seed, backend=backend)
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
        self.alpha = config.alpha
        self.distribution = config.distribution
        self.backend = config.backend
        self.seed = seed
        self._generator: torch.Generator | None = None
        self.train(embedding.training)

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
        if not (self.training and torch.is_grad_enabled()) or self.alpha == 0.0:
            return out
        fused = resolve_backend(self.backend, out) == "triton"
        gen_device = torch.device("cpu") if fused else out.device  # fused: seeds from a CPU generator
        if self.seed is not None and (self._generator is None or self._generator.device != gen_device):
            self._generator = torch.Generator(device=gen_device)
            self._generator.manual_seed(self.seed + _distributed_rank() * _RANK_STRIDE)
        if fused:
            return fused_noisy(
                out,
                self.alpha,
                distribution=self.distribution,
                generator=self._generator,
                inplace=output_writable_in_place(out),
                attention_mask=attention_mask,
                position_ids=position_ids,
                cu_seqlens=cu_seqlens,
            )
        noise = make_noise(
            out,
            self.alpha,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cu_seqlens=cu_seqlens,
            distribution=self.distribution,
            generator=self._generator,
        )
        return out + noise

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

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_generator"] = None
        return state
