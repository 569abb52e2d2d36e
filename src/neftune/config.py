"""``NEFTuneConfig``: the one object that holds the noise settings and travels.

It goes, unchanged, from ``TrainConfig.noise`` (or the user) into
``neftune.integrations.attach`` / ``NEFTuneCallback`` and on into ``neftune.activate``, the
way a ``LoraConfig`` goes into ``get_peft_model``. It is validated once, when it is made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import torch

from .kernels.backend import check_backend
from .noise import DISTRIBUTIONS, SCALINGS, check_alpha, check_choice
from .schedules import Schedule, resolve_schedule
from .streams import check_seed


@dataclass
class NEFTuneConfig:
    """The noise settings of one activation.

    ``alpha``: noise magnitude (paper: 5, 10, 15); ``distribution``: "uniform" | "gaussian" |
    "symmetric"; ``scaling``: "per_sequence" (each sequence's true length, no noise on padding)
    or "batch" (transformers' padded-length formula, bit-identical draws); ``seed``: a private,
    reproducible noise stream (see :mod:`neftune.streams`); ``schedule``: a name or a callable
    ``(step, total_steps) -> multiplier`` of alpha; ``backend``: "auto" | "torch" | "triton"
    (see :mod:`neftune.kernels.backend`); ``ignore_token_ids``: token ids that get no noise and
    do not count in ``L`` (a vision-language model's image / video / audio placeholders, whose
    embeddings it replaces by features), None to read them from the model's config at
    ``activate`` (see :func:`neftune.activation.discovery.placeholder_token_ids`), ``()`` for none; they
    apply to ``scaling="per_sequence"``; ``pad_token_id``: a sequence made only of this token
    id is padding (packers that give a row's padded tail position ids of its own, e.g. Axolotl's
    multipack); None: off. Every field is checked here, once.
    """

    alpha: float = 5.0
    distribution: str = "uniform"
    scaling: str = "per_sequence"
    seed: int | None = None
    schedule: str | Schedule | None = None
    backend: str = "auto"
    ignore_token_ids: tuple[int, ...] | None = None
    pad_token_id: int | None = None
    #: ``schedule`` as a function of (step, total_steps), or None.
    resolved_schedule: Schedule | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.alpha = check_alpha(self.alpha)
        check_choice(self.distribution, DISTRIBUTIONS, "distribution")
        check_choice(self.scaling, SCALINGS, "scaling")
        check_backend(self.backend, scaling=self.scaling)
        self.seed = check_seed(self.seed)
        self.resolved_schedule = resolve_schedule(self.schedule)
        self.ignore_token_ids = check_token_ids(self.ignore_token_ids, "ignore_token_ids")
        if self.ignore_token_ids and self.scaling == "batch":
            raise ValueError(
                "ignore_token_ids needs scaling='per_sequence': scaling='batch' reproduces transformers' "
                "formula, which noises every position; drop one of the two"
            )
        if self.pad_token_id is not None and (
            isinstance(self.pad_token_id, bool)
            or not isinstance(self.pad_token_id, int)
            or self.pad_token_id < 0
        ):
            raise ValueError(
                f"pad_token_id must be a token id (an int >= 0) or None, got {self.pad_token_id!r}"
            )


def check_token_ids(value: object, name: str) -> tuple[int, ...] | None:
    """``value`` as a sorted tuple of distinct token ids (ints >= 0), or None.

    Accepts one int, or a list / tuple / set / 1-D integer tensor of them (numpy integers too).
    """
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.dim() > 1 or value.dtype.is_floating_point or value.dtype == torch.bool:
            raise TypeError(
                f"{name} must be token ids (ints), got a {value.dtype} tensor of shape {tuple(value.shape)}"
            )
        value = value.reshape(-1).tolist()
    items = [value] if not isinstance(value, list | tuple | set | frozenset) else list(value)
    ids = []
    for item in items:
        try:
            token = check_seed(item)  # ints, numpy integers and 0-d integer tensors; no bools or floats
        except TypeError:
            token = None
        if token is None:
            raise TypeError(f"{name} must be token ids (ints >= 0), got {type(item).__name__} {item!r}")
        if token < 0:
            raise ValueError(f"{name} must be token ids >= 0, got {token}")
        ids.append(token)
    return tuple(sorted(set(ids)))


#: The settings a ``NEFTuneConfig`` takes, in order.
FIELDS = tuple(f.name for f in dataclasses.fields(NEFTuneConfig) if f.init)


def make_config(config: NEFTuneConfig | float | None = None, **overrides: Any) -> NEFTuneConfig:
    """A checked :class:`NEFTuneConfig` from ``config`` (or the defaults) with ``overrides`` applied.

    A bare number is read as ``alpha`` (``activate(model, 5.0)``). Unknown keywords raise a
    ``TypeError`` naming the settings there are.
    """
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise TypeError(
            f"unknown NEFTune setting{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"the settings are {', '.join(FIELDS)}"
        )
    if config is None:
        return NEFTuneConfig(**overrides)
    if isinstance(config, NEFTuneConfig):
        return dataclasses.replace(config, **overrides) if overrides else config
    if isinstance(config, Real | torch.Tensor) and not isinstance(config, bool):
        if "alpha" in overrides:
            raise TypeError("alpha given twice: as the config argument and as alpha=")
        return NEFTuneConfig(alpha=config, **overrides)
    raise TypeError(
        f"config must be a NEFTuneConfig, alpha (a real number >= 0) or None, got {type(config).__name__} "
        f"{config!r}"
    )
