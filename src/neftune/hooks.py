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
import sys
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
    token_scales,
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
_MASK64 = 2**64 - 1
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


def _as_steps(value: Any, name: str) -> int:
    """An optimizer-step count as an int >= 0 (whole floats accepted); TypeError / ValueError naming ``name``."""
    steps: int | None = None
    if not isinstance(value, bool):
        with contextlib.suppress(TypeError):
            steps = operator.index(value)
        if isinstance(value, float) and value.is_integer():
            steps = int(value)
    if steps is None:
        raise TypeError(f"set_progress: {name} must be an integer number of optimizer steps, got {value!r}")
    if steps < 0:
        raise ValueError(f"set_progress: {name} must be >= 0, got {steps}")
    return steps


def check_seed(seed: object) -> int | None:
    """``seed`` as a Python int (or None): ints, numpy integers and 0-d integer tensors are accepted."""
    if seed is None:
        return None
    if isinstance(seed, torch.Tensor):
        if (
            seed.numel() != 1
            or seed.dtype.is_floating_point
            or seed.dtype.is_complex
            or seed.dtype == torch.bool
        ):
            raise TypeError(
                f"seed must be an integer, got a {seed.dtype} tensor of shape {tuple(seed.shape)}"
            )
        return int(seed.item())
    if not isinstance(seed, bool):
        with contextlib.suppress(TypeError):
            return operator.index(seed)
    raise TypeError(f"seed must be an int or None, got {type(seed).__name__} {seed!r}")


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit function of ``x``."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def stream_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the private noise stream of (``seed``, distributed ``rank``, optimizer ``step``).

    Each optimizer step starts a fresh stream, so a run resumed at step k draws the same noise
    as the uninterrupted run did at step k. Step 0 is ``seed + rank * 1_000_003``.
    """
    base = (seed + rank * _RANK_STRIDE) % 2**63
    if step == 0:
        return base
    return _mix64(base + _mix64(step * 0x9E3779B97F4A7C15)) % 2**63


def _distributed_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def check_overflow(alpha: float, dim: int, dtype: torch.dtype, distribution: str) -> None:
    """Raise ``ValueError`` if ``alpha`` makes one token's noise overflow ``dtype``.

    The largest per-element noise is ``alpha / sqrt(d)`` (a one-token sequence) times the
    largest ``|eps|``: 1 for "uniform" and "symmetric", ~6 for "gaussian" (P(|Z| > 6) ~ 2e-9).
    Refused when that exceeds half the dtype's largest finite value (the embeddings add to it).
    """
    if not dtype.is_floating_point or dim <= 0:
        return
    peak = alpha / math.sqrt(dim) * (6.0 if distribution == "gaussian" else 1.0)
    largest = torch.finfo(dtype).max
    if peak > largest / 2:
        raise ValueError(
            f"alpha={alpha:g} is too large for {str(dtype).removeprefix('torch.')} embeddings of width {dim}: "
            f"a one-token sequence would get noise up to {peak:.3g}, and the largest "
            f"{str(dtype).removeprefix('torch.')} is {largest:.3g} (the embeddings would become inf); "
            "use a smaller alpha (the paper used 5, 10 or 15)"
        )


def _compiled_code_exists(modules: list[nn.Module]) -> bool:
    """Whether torch.compile holds compiled code for the forward of any of ``modules``.

    Compiled code does not see forward hooks added or removed after it was compiled
    (``torch._dynamo.config.skip_nnmodule_hook_guards``).
    """
    if "torch._dynamo" not in sys.modules:
        return False  # nothing was ever compiled in this process
    try:
        from torch._C._dynamo.eval_frame import _debug_get_cache_entry_list as cache_entries
    except ImportError:  # pragma: no cover - older torch: assume the worst once dynamo was used
        return True
    codes = {nn.Module._call_impl.__code__}
    for module in modules:
        code = getattr(type(module).forward, "__code__", None)
        if code is not None:
            codes.add(code)
    return any(cache_entries(code) for code in codes)


def _refresh_compiled(modules: list[nn.Module], what: str) -> None:
    """After hooks changed on ``modules``: clear torch.compile's caches if they hold stale code."""
    if _compiled_code_exists(modules):
        torch.compiler.reset()
        warnings.warn(
            f"NEFTune was {what} on a model that torch.compile had already compiled; compiled code "
            "does not see hooks added or removed later, so neftune cleared torch.compile's caches "
            "(torch.compiler.reset()) and the next call recompiles. Activate NEFTune before "
            "compiling (or before the first compiled call) to avoid the recompilation.",
            stacklevel=3,
        )


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
        self.seed = check_seed(self.seed)
        self.resolved_schedule = resolve_schedule(self.schedule)


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
    ):
        self._model = weakref.ref(model)
        self.config = config
        self.schedule = config.resolved_schedule
        self.created_by = created_by
        self.base_alpha = config.alpha
        self.step = 0
        self.total_steps = 0
        self.record_stats = False
        self.last_backend: str | None = None
        self.last_inplace = False
        self._alpha = config.alpha
        self._alpha_tensor = torch.tensor(config.alpha, dtype=torch.float32)
        self._alpha_error: str | None = None
        self._calls = torch.zeros((), dtype=torch.int64)
        self._last_stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self._generators: dict[torch.device, torch.Generator] = {}
        self._stream_step = 0
        self._context: dict[str, torch.Tensor] = {}
        self._depth = 0
        self._warned: set[str] = set()
        self._signatures: dict[type, list[str]] = {}
        self._locator = weakref.ref(locator) if locator is not None else None
        self._targets: list[tuple[str, weakref.ref]] = []
        self._owners: list[weakref.ref] = []
        self._embedding_removables: list[Any] = []
        self._owner_removables: list[Any] = []
        self._hook_ids: dict[int, int] = {}  # id(embedding module) -> id of our forward hook on it
        self._attach(targets, owners)
        self.active = True
        try:
            self._update_alpha()
        except ArithmeticError as exc:  # e.g. a schedule dividing by total_steps, before set_progress
            self._alpha_error = self._schedule_failure(exc)
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
    def alpha(self) -> float:
        return self._alpha

    @property
    def noised_calls(self) -> int:
        return int(self._calls)

    def set_alpha(self, alpha: float) -> None:
        """Change the base alpha (the schedule still multiplies it)."""
        previous = self.base_alpha
        self.base_alpha = check_alpha(alpha)
        try:
            self._update_alpha()
        except ValueError:
            self.base_alpha = previous
            raise

    def set_progress(self, step: int, total_steps: int = 0) -> None:
        """Tell the schedule and the seeded noise where training is (optimizer steps done, total; 0 = unknown).

        ``step`` must not go back (``ValueError``). With ``seed=``, each step's noise comes from
        a stream of its own (:func:`stream_seed`), so a run resumed at step k reproduces the
        uninterrupted run's noise from step k on.
        """
        step, total = _as_steps(step, "step"), _as_steps(total_steps or 0, "total_steps")
        if step < self.step:
            raise ValueError(
                f"set_progress: step went back from {self.step} to {step}; progress only moves forward "
                "(activate NEFTune anew for a new run)"
            )
        self.step, self.total_steps = step, total
        try:
            self._update_alpha()
        except ArithmeticError as exc:
            raise ValueError(self._schedule_failure(exc)) from None
        self._alpha_error = None
        if step != self._stream_step:
            self._stream_step = step
            for gen in self._generators.values():
                gen.manual_seed(stream_seed(self._seed_base(), _distributed_rank(), step))

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
        self._context = {}
        self._generators = {}
        self.active = False
        _refresh_compiled(modules, "deactivated")

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
    def _seed_base(self) -> int:
        # distributed without a seed: differ per rank, follow torch's seed
        return self.config.seed if self.config.seed is not None else torch.initial_seed()

    def generator(self, device: torch.device) -> torch.Generator | None:
        """The private generator for ``device`` (None = torch's default RNG)."""
        rank = _distributed_rank()
        if self.config.seed is None and rank == 0:
            return None
        gen = self._generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(stream_seed(self._seed_base(), rank, self._stream_step))
            self._generators[device] = gen
        return gen

    def _schedule_failure(self, exc: BaseException) -> str:
        return (
            f"NEFTune: schedule {schedule_name(self.schedule)} failed at step {self.step} of "
            f"{self.total_steps} ({type(exc).__name__}: {exc}); total_steps 0 means 'unknown': make the "
            "schedule handle it, or call handle.set_progress(step, total_steps) before training"
        )

    def _update_alpha(self) -> None:
        """Recompute the effective alpha (outside any forward pass) and check it fits the dtype."""
        alpha = self.base_alpha
        if self.schedule is not None:
            alpha *= check_alpha(self.schedule(self.step, self.total_steps), "schedule multiplier")
        for _, module in self.targets:
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.dim() == 2:
                check_overflow(alpha, weight.shape[1], weight.dtype, self.config.distribution)
        self._alpha = alpha
        self._alpha_tensor.fill_(alpha)

    # -- hooks ----------------------------------------------------------------------------
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

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        compiling = torch.compiler.is_compiling()
        outermost = self._depth == 0
        if outermost:
            self._context = {}
            if not compiling and self._locator is not None:
                self._follow_embedding()
        self._depth += 1
        names = self._param_names(module) if args else []
        positional = dict(zip(names, args))
        for key, keys in _BATCH_KEYS.items():
            if key in self._context:
                continue
            for name in keys:
                value = kwargs.get(name, positional.get(name))
                if isinstance(value, torch.Tensor):
                    self._context[key] = value
                    break
        if not outermost or compiling or not (module.training and torch.is_grad_enabled()):
            return None
        embeds = kwargs.get("inputs_embeds", positional.get("inputs_embeds"))
        if not isinstance(embeds, torch.Tensor):
            return None
        pending = getattr(embeds, _PENDING, None)
        if pending is None or pending[0] is not self:
            if kwargs.get("input_ids", positional.get("input_ids")) is None:
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
        index = names.index("inputs_embeds")
        return (*args[:index], rescaled, *args[index + 1 :]), kwargs

    def _post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:
            self._context = {}

    def _rescale_pending(self, embeds: torch.Tensor, pending: tuple) -> torch.Tensor | None:
        """Embeddings noised outside the model's forward (row length), rescaled per sequence now."""
        _, noise, row_scale, alpha = pending
        batch = self._batch_tensors("main", embeds)
        if not batch:
            return None
        scales = token_scales(embeds, alpha, **batch).to(embeds.dtype)
        with torch.no_grad():
            correction = noise * (scales / row_scale - 1.0).unsqueeze(-1)
        return embeds + correction

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

    def _check_single_source(self, watched: tuple[nn.Module, ...]) -> None:
        """Refuse to run beside transformers' own NEFTune hook (it marks the module it hooks)."""
        for module in watched:
            alpha = getattr(module, "neftune_noise_alpha", None)
            if alpha is not None:
                raise ValueError(
                    f"transformers' own NEFTune hook (neftune_noise_alpha={alpha}) was added to "
                    f"{type(module).__name__} while neftune is active: the noise would be added twice. "
                    "Unset neftune_noise_alpha in the trainer arguments (neftune's per-sequence noise "
                    "replaces it), or neftune.deactivate(model) to use transformers' hook instead"
                )

    def _embedding_hook(
        self, role: str, watched: tuple[nn.Module, ...], module: nn.Module, args: tuple, output: Any
    ) -> Any:
        if not (module.training and torch.is_grad_enabled()):
            return None
        self._check_single_source(watched)
        check_embedding_output(module, output)
        if self._alpha_error is not None:
            raise RuntimeError(self._alpha_error)
        compiling = torch.compiler.is_compiling()
        if not compiling:
            if self._alpha == 0.0:
                return None
            if torch._C._current_graph_task_id() != -1 and self.generator(output.device) is not None:
                self._warn_once(
                    "recompute",
                    "NEFTune: the input embedding was recomputed during backward (activation "
                    "checkpointing around the embedding) with a private noise generator (seed=... or "
                    "multi-process), so the recomputed noise differs from the forward's. Checkpoint "
                    "the decoder layers only (transformers' gradient_checkpointing does), or use "
                    "seed=None on a single process (torch.utils.checkpoint restores torch's RNG).",
                )
        outside = self._depth == 0
        if outside and not compiling and self.config.scaling == "per_sequence":
            self._warn_once(
                "outside",
                "NEFTune: the input embedding was called outside the model's forward, so the attention "
                "mask is not known there: the noise is scaled by the row length. Passing the result to "
                "the model as inputs_embeds together with attention_mask rescales it per sequence.",
            )
        batch = self._batch_tensors(role, output)
        alpha: float | torch.Tensor = self._alpha_tensor if compiling else self._alpha
        if compiling and self.config.backend == "auto":
            backend = "torch"  # inductor fuses the torch path itself
        else:
            backend = resolve_backend(self.config.backend, output, scaling=self.config.scaling)
        self.last_backend = backend
        if backend == "triton" and not outside:
            return self._fused_noise(module, output, alpha, batch)
        self.last_inplace = False
        noise = self._torch_noise(output, self._alpha if self.config.scaling == "batch" else alpha, batch)
        self._calls.add_(1)
        if self.record_stats:
            with torch.no_grad():
                self._last_stats = (noise.float().norm(), output.detach().float().norm())
            self.record_stats = False
        noised = output + noise
        if outside and not compiling and self.config.scaling == "per_sequence" and not batch:
            row_scale = self._alpha / math.sqrt(output.shape[-2] * output.shape[-1])
            setattr(noised, _PENDING, (self, noise, row_scale, self._alpha))
        return noised

    def _torch_noise(
        self, output: torch.Tensor, alpha: float | torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The noise tensor by torch ops (no autograd graph)."""
        gen = self.generator(output.device)
        distribution = self.config.distribution
        with torch.no_grad():
            if self.config.scaling == "batch":
                if distribution == "uniform":
                    return batch_scaled_noise_like(output, alpha, gen)
                length, dim = output.shape[-2], output.shape[-1]
                eps = sample_eps(
                    output.shape, distribution, dtype=output.dtype, device=output.device, generator=gen
                )
                return eps * (alpha / math.sqrt(length * dim))
            scales = token_scales(output, alpha, **batch)
            eps = sample_eps(
                output.shape, distribution, dtype=output.dtype, device=output.device, generator=gen
            )
            return eps.mul_(scales.to(output.dtype).unsqueeze(-1))

    def _fused_noise(
        self,
        module: nn.Module,
        output: torch.Tensor,
        alpha: float | torch.Tensor,
        batch: dict[str, torch.Tensor],
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
        self._calls.add_(1)
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


def check_embedding_module(module: nn.Module, path: str) -> None:
    """Refuse modules whose output is not per-token embeddings (``nn.EmbeddingBag`` pools them)."""
    if isinstance(module, nn.EmbeddingBag):
        raise TypeError(
            f"{path or type(module).__name__} is an nn.EmbeddingBag: it returns one pooled vector per bag, "
            "not (batch, sequence, dim) token embeddings, so NEFTune's per-token noise does not apply; "
            "pass embedding= the module that returns the token embeddings"
        )


def check_embedding_output(module: nn.Module, output: Any) -> None:
    """Refuse an embedding output that is not floating-point ``(batch, seq, dim)`` or ``(seq, dim)``."""
    if isinstance(output, torch.Tensor) and output.is_floating_point() and output.dim() in (2, 3):
        return
    described = (
        f"a {output.dtype} tensor of shape {tuple(output.shape)}"
        if isinstance(output, torch.Tensor)
        else type(output).__name__
    )
    raise TypeError(
        f"NEFTune: {type(module).__name__} returned {described}, not floating-point (batch, seq, dim) "
        "token embeddings, so no noise can be added; pass embedding= to neftune.activate() to pick "
        "the module that returns the token embeddings"
    )


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
    created_by: str | None = None,
) -> NEFTuneHandle:
    """Turn NEFTune on for ``model``; returns a handle (pass it, or the model, to :func:`deactivate`).

    ``alpha``: noise magnitude (paper: 5, 10, 15); ``distribution``: "uniform" | "gaussian" |
    "symmetric"; ``scaling``: "per_sequence" (each sequence's true length, no noise on
    padding) or "batch" (transformers' padded-length formula, bit-identical draws);
    ``seed``: private reproducible generator (each distributed rank offset differently, each
    optimizer step its own stream, see :meth:`NEFTuneHandle.set_progress`);
    ``schedule``: name or callable ``(step, total_steps) -> multiplier``; ``embedding``:
    the module to noise, when it cannot be found automatically; ``backend``: "auto" (torch; the
    fused Triton kernel on CUDA once it has passed on a GPU, see ``kernels.backend``), "torch"
    (the reference) or "triton" (forced; raises where it cannot run). The fused kernel
    writes into the embedding output in place when autograd and the other hooks allow.
    Noise is added only while the embedding is in training mode and autograd is enabled.
    ``created_by``: a tag for integrations; an active handle with the same tag on the same
    embedding is a leftover of a run that raised, and is replaced instead of refused.
    """
    config = NEFTuneConfig(alpha, distribution, scaling, seed, schedule, backend)
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
    handle = NEFTuneHandle(model, targets, owners, config, locator=locator, created_by=created_by)
    _refresh_compiled([*(m for _, m in targets), *owners], "activated")
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
    for sub in module.modules():
        if getattr(sub, "neftune_noise_alpha", None) is not None:
            raise ValueError(
                "transformers' own NEFTune hook is active on this embedding (neftune_noise_alpha="
                f"{sub.neftune_noise_alpha}); unset neftune_noise_alpha in the trainer arguments, "
                "or the noise would be added twice"
            )
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
        self.seed = config.seed
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
        if getattr(self, "neftune_noise_alpha", None) is not None:
            raise ValueError(
                "transformers' own NEFTune hook was added to a NEFTuneEmbedding, which adds the noise "
                "itself: the noise would be added twice; unset neftune_noise_alpha in the trainer arguments"
            )
        fused = resolve_backend(self.backend, out) == "triton"
        gen_device = torch.device("cpu") if fused else out.device  # fused: seeds from a CPU generator
        if self.seed is not None and (self._generator is None or self._generator.device != gen_device):
            self._generator = torch.Generator(device=gen_device)
            self._generator.manual_seed(stream_seed(self.seed, _distributed_rank(), 0))
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
