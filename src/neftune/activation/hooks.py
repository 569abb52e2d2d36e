"""Attach NEFTune to a model: activate / deactivate / is_active / noisy_embeddings / NEFTuneEmbedding.

Mechanics: a forward hook on the input embedding adds the noise; a forward pre-hook
(with kwargs) on the top-level model and on every module between it and the embedding
records the batch's ``attention_mask``, ``position_ids`` and ``cu_seq_lens_q`` so the
embedding hook can scale by each sequence's own length, also when an inner model is
called directly. Nothing is stored on the modules themselves: the active handles live
in a weak registry (which keeps no model alive), and after ``deactivate`` no hook or
attribute remains. Nothing in the hooks changes Python state from step to step that
torch.compile would guard on: the effective alpha is computed by ``set_alpha`` /
``set_progress`` and read from a tensor while compiling.
Activation checkpointing around the embedding gets the same noise in its forward and its
recompute (rule: :mod:`neftune.activation.checkpointing`). A vision-language model's image / video / audio
placeholder tokens get no noise and do not count in ``L`` (``NEFTuneConfig.ignore_token_ids``).
Deep copies and pickles of a model with NEFTune active come out *without* noise (the
hooks copy as inert no-ops, cleared by the next ``activate`` on the copy): a reference
model made by ``copy.deepcopy`` must not be noised.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..config import NEFTuneConfig, make_config
from ..kernels.backend import may_write_in_place, resolve_backend
from ..noise import generator_device, noised, pad_token_mask, token_scales
from ..schedules import Schedule, ScheduledAlpha, resolve_schedule, schedule_name
from ..streams import NoiseStream, check_seed, stream_seed
from .batch_context import BatchContext
from .checkpointing import (
    JOURNAL_SIZE,
    differentiated_reentrant_forward,
    draw_key,
    in_backward,
    replaying,
)
from .discovery import find_input_embedding, placeholder_mask, placeholder_token_ids, unwrap_model
from .embedding import NEFTuneEmbedding
from .guards import (
    check_embedding_module,
    check_embedding_output,
    check_overflow,
    refresh_compiled,
    transformers_hooked,
)

__all__ = [
    "NEFTuneConfig",
    "NEFTuneEmbedding",
    "NEFTuneHandle",
    "activate",
    "check_seed",
    "deactivate",
    "get_handle",
    "is_active",
    "noisy_embeddings",
    "resolve_schedule",
    "stream_seed",
]

#: Attribute set on embeddings noised outside the model's forward: (handle, noise, row scale, alpha).
_PENDING = "_neftune_pending"

#: embedding module -> weak reference to its active handle. Weak both ways: the hooks on the module
#: keep the handle alive, and nothing here keeps the module (or the model) alive.
_ACTIVE: weakref.WeakKeyDictionary[nn.Module, weakref.ref[NEFTuneHandle]] = weakref.WeakKeyDictionary()


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


class NEFTuneHandle:
    """An active NEFTune attachment. ``remove()`` (or :func:`deactivate`) takes it off.

    ``alpha`` is the current effective alpha (base alpha x schedule multiplier), computed when
    ``set_alpha`` / ``set_progress`` are called, never inside a forward pass (so torch.compile
    sees no Python value that changes per step). Set ``record_stats = True`` to have the next
    noised forward store the measured noise-to-embedding norm ratio in ``last_noise_ratio``.
    ``last_backend`` says which implementation ("torch" or "triton") noised the last batch,
    ``last_inplace`` whether the fused kernel wrote into the embedding output in place, and
    ``noised_calls`` how many forward calls were noised (counted in a tensor).

    The handle keeps only weak references to the model and its modules: a model dropped while
    NEFTune is active is freed.
    """

    def __init__(
        self,
        model: nn.Module,
        targets: tuple[tuple[str, nn.Module], ...],
        owners: tuple[nn.Module, ...],
        config: NEFTuneConfig,
        *,
        locator: nn.Module | None = None,
        created_by: str | None = None,
        ignore_token_ids: tuple[int, ...] = (),
    ):
        self._model = weakref.ref(model)
        #: Token ids that get no noise and do not count in L (a VLM's media placeholders).
        self.ignore_token_ids = tuple(ignore_token_ids)
        self._model_ids: torch.Tensor | None = None  # input_ids of the model call in progress
        self.config = config
        self.created_by = created_by
        self.record_stats = False
        self.last_backend: str | None = None
        self.last_inplace = False
        self._calls = torch.zeros((), dtype=torch.int64)
        self._last_stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self._stream = NoiseStream(config.seed)
        self._warned: set[str] = set()
        self._batch = BatchContext(self._warn_once)
        self._locator = weakref.ref(locator) if locator is not None else None
        self._targets: list[tuple[str, weakref.ref]] = []
        self._owners: list[weakref.ref] = []
        self._embedding_removables: list[Any] = []
        self._owner_removables: list[Any] = []
        self._hook_ids: dict[int, int] = {}  # id(embedding module) -> id of our forward hook on it
        self._attach(targets, owners)
        self.active = True
        try:
            self._alpha = ScheduledAlpha(config.alpha, config.resolved_schedule, self._check_overflow)
        except Exception:
            self.remove()
            raise

    # -- public -------------------------------------------------------------------------
    @property
    def model(self) -> nn.Module | None:
        return self._model()

    @property
    def targets(self) -> tuple[tuple[str, nn.Module], ...]:
        """Every ``(path, module)`` whose output gets the noise (the first is the main one)."""
        return tuple((path, m) for path, ref in self._targets if (m := ref()) is not None)

    @property
    def path(self) -> str:
        return self._targets[0][0]

    @property
    def embedding(self) -> nn.Module | None:
        return self._targets[0][1]()

    @property
    def schedule(self) -> Schedule | None:
        """Alpha's multiplier as a function of (step, total_steps); None: constant."""
        return self._alpha.schedule

    @property
    def alpha(self) -> float:
        """The effective alpha now (base alpha x schedule multiplier)."""
        return self._alpha.value

    @property
    def base_alpha(self) -> float:
        return self._alpha.base

    @property
    def step(self) -> int:
        return self._alpha.step

    @property
    def total_steps(self) -> int:
        return self._alpha.total_steps

    @property
    def noised_calls(self) -> int:
        return int(self._calls)

    def set_alpha(self, alpha: float) -> None:
        """Change the base alpha (the schedule still multiplies it)."""
        self._alpha.set_base(alpha)

    def set_progress(self, step: int, total_steps: int = 0) -> None:
        """Tell the schedule and the seeded noise where training is (optimizer steps done, total; 0 = unknown).

        ``step`` must not go back (``ValueError``). With ``seed=``, each step's noise comes from
        a stream of its own (:func:`stream_seed`), so a run resumed at step k reproduces the
        uninterrupted run's noise from step k on.
        """
        self._alpha.set_progress(step, total_steps)
        self._stream.advance(self._alpha.step)

    @property
    def last_noise_ratio(self) -> float | None:
        """||noise|| / ||embeddings|| over the real tokens of the last recorded batch."""
        if self._last_stats is None:
            return None
        noise_norm, embed_norm = (float(t) for t in self._last_stats)
        return noise_norm / embed_norm if embed_norm > 0 else math.inf

    def status(self) -> dict[str, Any]:
        """What is active where, for printing or logging."""
        embedding = self.embedding
        return {
            "active": self.active,
            "alpha": self.alpha,
            "base_alpha": self.base_alpha,
            "distribution": self.config.distribution,
            "scaling": self.config.scaling,
            "schedule": schedule_name(self.schedule),
            "seed": self.config.seed,
            "backend": self.config.backend,
            "ignore_token_ids": list(self.ignore_token_ids),
            "module": ", ".join(p or "<root>" for p, _ in self._targets),
            "module_type": type(embedding).__name__ if embedding is not None else "<freed>",
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
        if not self.active:
            return
        modules = [m for _, m in self.targets] + [m for ref in self._owners if (m := ref()) is not None]
        self._detach_embeddings(forget=False)
        for removable in self._owner_removables:
            removable.remove()
        self._owner_removables = []
        self._owners = []
        self._batch.clear()
        self._model_ids = None
        self._stream.clear()
        self.active = False
        refresh_compiled(modules, "deactivated")

    # -- attaching ----------------------------------------------------------------------
    def _attach(self, targets: tuple[tuple[str, nn.Module], ...], owners: tuple[nn.Module, ...]) -> None:
        """Hook ``targets`` (noise) and ``owners`` (batch tensors); register them as active."""
        for path, module in targets:
            role = "decoder" if "decoder" in path.split(".") else "main"
            # Submodules are watched for transformers' own NEFTune hook (``neftune_noise_alpha``).
            watched = tuple(module.modules())
            hook = _Hook(functools.partial(self._embedding_hook, role, watched))
            removable = module.register_forward_hook(hook)
            self._hook_ids[id(module)] = removable.id
            self._embedding_removables.append(removable)
            self._targets.append((path, weakref.ref(module)))
            _ACTIVE[module] = weakref.ref(self)
        for owner in owners:
            if any(ref() is owner for ref in self._owners):
                continue
            self._owners.append(weakref.ref(owner))
            self._owner_removables.append(
                owner.register_forward_pre_hook(_Hook(self._pre_hook), with_kwargs=True)
            )
            self._owner_removables.append(
                owner.register_forward_hook(_Hook(self._post_hook), with_kwargs=True, always_call=True)
            )

    def _detach_embeddings(self, *, forget: bool = True) -> None:
        """Remove the embedding hooks; ``forget`` also drops the targets (``status`` keeps them after ``remove``)."""
        for removable in self._embedding_removables:
            removable.remove()
        for _, ref in self._targets:
            module = ref()
            if module is not None and _ACTIVE.get(module) is not None and _ACTIVE[module]() is self:
                del _ACTIVE[module]
        self._embedding_removables = []
        self._hook_ids = {}
        if forget:
            self._targets = []

    def _follow_embedding(self) -> None:
        """Move the noise to the model's current input embedding if it was replaced.

        ``merge_and_unload()`` of PEFT, ``resize_token_embeddings`` and similar calls swap the
        embedding module after activation; the noise follows the module the model now uses.
        """
        locator = self._locator() if self._locator is not None else None
        getter = getattr(locator, "get_input_embeddings", None)
        if not callable(getter):
            return
        try:
            current = getter()
        except (NotImplementedError, AttributeError):
            return
        if not isinstance(current, nn.Module) or any(m is current for _, m in self.targets):
            return
        location = find_input_embedding(locator)
        check_embedding_module(location.module, location.path)
        self._detach_embeddings()
        self._attach(location.tied, location.owners)
        self._warn_once(
            "moved",
            f"NEFTune: the model's input embedding was replaced after activation; the noise now goes on "
            f"{location.path or type(location.module).__name__} ({type(location.module).__name__})",
        )

    # -- noise stream -------------------------------------------------------------------
    def generator(self, device: torch.device) -> torch.Generator | None:
        """The private generator for ``device`` (None = torch's default RNG), see :class:`NoiseStream`."""
        return self._stream.generator(device)

    def _check_overflow(self, alpha: float) -> None:
        """Refuse an alpha that would overflow the dtype of any noised embedding."""
        for _, module in self.targets:
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.dim() == 2:
                check_overflow(alpha, weight.shape[1], weight.dtype, self.config.distribution)

    # -- hooks ----------------------------------------------------------------------------
    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        compiling = torch.compiler.is_compiling()
        if self._batch.depth == 0 and not compiling and self._locator is not None:
            self._follow_embedding()
        arguments = self._batch.arguments(module, args, kwargs)
        outermost = self._batch.enter(module, arguments)
        if self.ignore_token_ids:
            # The model's own input_ids: some VLMs (Gemma 3/4) swap placeholders for padding before the lookup.
            ids = arguments.get("input_ids")
            if outermost or self._model_ids is None:
                self._model_ids = ids if isinstance(ids, torch.Tensor) else None
        if not outermost or compiling or not (module.training and torch.is_grad_enabled()):
            return None
        embeds = arguments.get("inputs_embeds")
        if not isinstance(embeds, torch.Tensor):
            return None
        pending = getattr(embeds, _PENDING, None)
        if pending is None or pending[0] is not self:
            if arguments.get("input_ids") is None:
                self._warn_once(
                    "inputs_embeds",
                    "NEFTune: the model got inputs_embeds that did not come from its input embedding "
                    "module in training mode, so they carry no noise; pass input_ids, or make the "
                    "embeddings with model.get_input_embeddings()(input_ids) while NEFTune is active",
                )
            return None
        rescaled = self._rescale_pending(embeds, pending)
        if rescaled is None:
            return None
        if "inputs_embeds" in kwargs:
            return args, {**kwargs, "inputs_embeds": rescaled}
        index = self._batch.param_names(module).index("inputs_embeds")
        return (*args[:index], rescaled, *args[index + 1 :]), kwargs

    def _post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self._batch.exit()
        if self._batch.depth == 0:
            self._model_ids = None

    def _rescale_pending(self, embeds: torch.Tensor, pending: tuple) -> torch.Tensor | None:
        """Embeddings noised outside the model's forward (row length), rescaled per sequence now."""
        _, noise, old_scale, alpha, ignore = pending
        batch = self._batch.for_embedding("main", embeds)
        if not batch:
            return None
        if isinstance(old_scale, torch.Tensor):  # per token: placeholders were left out of the row
            scales = token_scales(embeds, alpha, ignore=ignore, **batch)
            ratio = torch.where(old_scale > 0, scales / old_scale.clamp(min=1e-30), 0.0).to(embeds.dtype)
        else:
            ratio = token_scales(embeds, alpha, **batch).to(embeds.dtype) / old_scale
        with torch.no_grad():
            correction = noise * (ratio - 1.0).unsqueeze(-1)
        return embeds + correction

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    def _check_single_source(self, watched: tuple[nn.Module, ...]) -> None:
        """Refuse to run beside transformers' own NEFTune hook (it marks the module it hooks)."""
        marked = transformers_hooked(watched)
        if marked is not None:
            raise ValueError(
                f"transformers' own NEFTune hook (neftune_noise_alpha={marked.neftune_noise_alpha}) was "
                f"added to {type(marked).__name__} while neftune is active: the noise would be added twice. "
                "Unset neftune_noise_alpha in the trainer arguments (neftune's per-sequence noise "
                "replaces it), or neftune.deactivate(model) to use transformers' hook instead"
            )

    def _ignored(self, role: str, ids: object, output: torch.Tensor) -> torch.Tensor | None:
        """Placeholder positions: in the ids the embedding got, or in the model's own ``input_ids``.

        A decoder's embedding (``role="decoder"``) reads only its own ids: the model's
        ``input_ids`` are the encoder's.
        """
        if not self.ignore_token_ids:
            return None
        shape = tuple(output.shape[:-1])
        sources = (ids,) if role == "decoder" else (ids, self._model_ids)
        found = [placeholder_mask(t, self.ignore_token_ids, shape) for t in sources]
        masks = [m for m in found if m is not None]
        if not masks:
            return None
        return masks[0] | masks[1].to(masks[0].device) if len(masks) == 2 else masks[0]

    def _embedding_hook(
        self, role: str, watched: tuple[nn.Module, ...], module: nn.Module, args: tuple, output: Any
    ) -> Any:
        if not module.training:
            return None
        compiling = torch.compiler.is_compiling()
        if not torch.is_grad_enabled() and (
            compiling or torch.is_inference_mode_enabled() or not differentiated_reentrant_forward()
        ):
            return None  # a no-grad pass (not the forward of a reentrant checkpoint): stays clean
        self._check_single_source(watched)
        check_embedding_output(module, output)
        if self._alpha.error is not None:
            raise RuntimeError(self._alpha.error)
        ids = args[0] if args else None
        # A call during backward recomputes a checkpointed forward: repeat that forward's noise.
        recompute = not compiling and in_backward()
        draw = self._stream.journal.take(draw_key(output, ids)) if recompute else None
        if draw is not None:
            params = draw.params
        else:
            if not compiling and self._alpha.value == 0.0:
                return None
            if recompute:
                self._warn_once(
                    "recompute",
                    "NEFTune: the input embedding was recomputed during backward (activation "
                    "checkpointing around it), but the forward call it repeats was not recorded "
                    f"(more than {JOURNAL_SIZE} forwards before the backward, a new optimizer step "
                    "between them, or a call from a backward hook): "
                    "its noise may differ from the forward's.",
                )
            params = self._fresh_params(role, module, ids, output, compiling)
        backend, inplace = params["backend"], params["inplace"] and not recompute
        generator = self.generator(generator_device(backend, output))
        if not compiling and not recompute:
            self._stream.journal.record(draw_key(output, ids), generator, params)
        with replaying(draw, generator) if recompute else contextlib.nullcontext():
            result, noise = noised(
                output,
                params["alpha"],
                backend=backend,
                distribution=self.config.distribution,
                scaling=self.config.scaling,
                generator=generator,
                inplace=inplace,
                ignore=params["ignore"],
                pad_mask=params["pad_mask"],
                need_noise=self.record_stats or (params["outside"] and not params["batch"]),
                **params["batch"],
            )
        if recompute:
            return result  # counted and measured in the forward
        self.last_backend, self.last_inplace = backend, inplace
        self._calls.add_(1)
        if self.record_stats:
            with torch.no_grad():
                clean = output.detach().float()
                measured = noise.float() if noise is not None else result.detach().float() - clean
                self._last_stats = (measured.norm(), clean.norm())
            self.record_stats = False
        if (
            params["outside"]
            and not compiling
            and self.config.scaling == "per_sequence"
            and not params["batch"]
        ):
            ignore, alpha = params["ignore"], self._alpha.value
            if ignore is None:
                old_scale: float | torch.Tensor = alpha / math.sqrt(output.shape[-2] * output.shape[-1])
            else:
                old_scale = token_scales(output, alpha, ignore=ignore)
            setattr(result, _PENDING, (self, noise, old_scale, alpha, ignore))
        return result

    def _fresh_params(
        self, role: str, module: nn.Module, ids: object, output: torch.Tensor, compiling: bool
    ) -> dict[str, Any]:
        """What sets this call's noise: alpha, the batch's lengths, placeholders, backend."""
        outside = self._batch.depth == 0
        per_sequence = self.config.scaling == "per_sequence"
        if outside and not compiling and per_sequence:
            self._warn_once(
                "outside",
                "NEFTune: the input embedding was called outside the model's forward, so the attention "
                "mask is not known there: the noise is scaled by the row length. Passing the result to "
                "the model as inputs_embeds together with attention_mask rescales it per sequence.",
            )
        # While compiling, alpha is read from a tensor (no per-step Python constant to guard on);
        # batch scaling follows transformers' formula, which takes a Python float.
        alpha: float | torch.Tensor = self._alpha.tensor if compiling and per_sequence else self._alpha.value
        if compiling and self.config.backend == "auto":
            backend = "torch"  # inductor fuses the torch path itself
        elif outside:
            backend = "torch"  # the noise tensor is kept, to rescale it when the mask arrives
        else:
            backend = resolve_backend(self.config.backend, output, scaling=self.config.scaling)
        # The fused kernel may write into the output in place, except when the noise is measured.
        inplace = (
            backend == "triton"
            and not self.record_stats
            and may_write_in_place(module, output, self._hook_ids.get(id(module)))
        )
        return {
            "alpha": alpha,
            "batch": self._batch.for_embedding(role, output),
            "ignore": self._ignored(role, ids, output) if per_sequence else None,
            "pad_mask": pad_token_mask(ids, self.config.pad_token_id, output) if per_sequence else None,
            "outside": outside,
            "backend": backend,
            "inplace": inplace,
        }


def activate(
    model: nn.Module,
    config: NEFTuneConfig | float | None = None,
    *,
    embedding: nn.Module | None = None,
    created_by: str | None = None,
    **overrides: Any,
) -> NEFTuneHandle:
    """Turn NEFTune on for ``model``; returns a handle (pass it, or the model, to :func:`deactivate`).

    ``config``: a :class:`NEFTuneConfig`, or just alpha (``activate(model, 5.0)``), or None for
    the defaults; ``overrides``: any of its settings (``alpha``, ``distribution``, ``scaling``,
    ``seed``, ``schedule``, ``backend``), e.g. ``activate(model, config, seed=0)``. With
    ``seed``, each distributed rank and each optimizer step draws from its own stream (see
    :meth:`NEFTuneHandle.set_progress`). The fused kernel (``backend``) writes into the
    embedding output in place when autograd and the other hooks allow.
    ``embedding``: the module to noise, when it cannot be found automatically.
    Noise is added only while the embedding is in training mode and autograd is enabled.
    ``created_by``: a tag for integrations; an active handle with the same tag on the same
    embedding is a leftover of a run that raised, and is replaced instead of refused.
    A vision-language model's image / video / audio placeholder tokens (ids from its config, or
    ``ignore_token_ids``) get no noise and do not count in ``L``.
    """
    config = make_config(config, **overrides)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    locator = None
    if embedding is None:
        location = find_input_embedding(model)
        targets, owners = location.tied, location.owners
        locator = location.locator
    else:
        if not isinstance(embedding, nn.Module):
            raise TypeError(f"embedding must be a torch.nn.Module, got {type(embedding).__name__}")
        owners = (unwrap_model(model),)
        targets = ((next((n for n, m in model.named_modules() if m is embedding), "<given>"), embedding),)
    root = unwrap_model(model)
    for path, module in targets:
        check_embedding_module(module, path)
        _refuse_other_noise(root, path, module, created_by)
    for module in (*(m for _, m in targets), *owners):
        _drop_inert_hooks(module)
    ignore = config.ignore_token_ids
    if ignore is None:  # a VLM's placeholders, from its config; transformers' batch formula noises all
        ignore = placeholder_token_ids(model) if config.scaling == "per_sequence" else ()
    handle = NEFTuneHandle(
        model, targets, owners, config, locator=locator, created_by=created_by, ignore_token_ids=ignore
    )
    refresh_compiled([*(m for _, m in targets), *owners], "activated")
    return handle


def _refuse_other_noise(root: nn.Module, path: str, module: nn.Module, created_by: str | None) -> None:
    """Refuse to noise ``module`` if something already noises it, a module inside it or one around it.

    Sources: an active neftune handle (ours; one left by a run of the integration ``created_by``
    that raised is removed instead), transformers' own hook (it marks the module it hooks with
    ``neftune_noise_alpha``) and a :class:`NEFTuneEmbedding`, which noises its own output.
    """
    label = path or type(module).__name__
    inside = {id(m) for m in module.modules()}
    for other in {*root.modules(), *module.modules()}:
        ref = _ACTIVE.get(other)
        handle = ref() if ref is not None else None
        if handle is None or not handle.active:
            continue
        if id(other) not in inside and all(m is not module for m in other.modules()):
            continue  # active on an unrelated module (e.g. another model's embedding)
        if created_by is not None and handle.created_by == created_by:
            handle.remove()  # left active by a run of the same integration that raised
            continue
        where = "" if other is module else f" (on {type(other).__name__}, which wraps or is inside it)"
        raise ValueError(
            f"NEFTune is already active on {label}{where}; call neftune.deactivate() first "
            "(two activations would add the noise twice)"
        )
    marked = transformers_hooked(module.modules())
    if marked is not None:
        raise ValueError(
            "transformers' own NEFTune hook is active on this embedding (neftune_noise_alpha="
            f"{marked.neftune_noise_alpha}); "
            "unset neftune_noise_alpha in the trainer arguments, or the noise would be added twice"
        )
    for sub in module.modules():
        if isinstance(sub, NEFTuneEmbedding) and sub.alpha > 0:
            raise ValueError(
                f"{label} is or holds a NEFTuneEmbedding (alpha={sub.alpha:g}), which adds the noise itself; "
                "use either it or neftune.activate, not both (or set_alpha(0) on the wrapper)"
            )


def get_handle(model_or_embedding: nn.Module | NEFTuneHandle) -> NEFTuneHandle | None:
    """The active handle of a model (or of its embedding), or None."""
    if isinstance(model_or_embedding, NEFTuneHandle):
        return model_or_embedding if model_or_embedding.active else None
    if not isinstance(model_or_embedding, nn.Module):
        raise TypeError(
            f"expected a torch.nn.Module or a NEFTune handle, got {type(model_or_embedding).__name__}"
        )
    ref = _ACTIVE.get(model_or_embedding)
    if ref is None:
        try:
            embedding = find_input_embedding(model_or_embedding).module
        except ValueError:
            return None
        ref = _ACTIVE.get(embedding)
    handle = ref() if ref is not None else None
    return handle if handle is not None and handle.active else None


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
def noisy_embeddings(
    model: nn.Module, config: NEFTuneConfig | float | None = None, **kwargs: Any
) -> Iterator[NEFTuneHandle]:
    """``with noisy_embeddings(model, 5.0): train()`` — removed on exit, also on exception.

    Arguments as for :func:`activate`.
    """
    handle = activate(model, config, **kwargs)
    try:
        yield handle
    finally:
        handle.remove()
