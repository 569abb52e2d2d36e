"""Alpha schedules: a schedule maps ``(step, total_steps)`` to a multiplier of the base alpha.

``step`` counts optimizer steps from 0; ``total_steps`` <= 0 means "unknown", for which
every built-in schedule returns 1.0. Any callable with that signature returning a finite
number >= 0 is accepted.
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Callable

import torch

from .noise import check_alpha

Schedule = Callable[[int, int], float]


def constant(step: int, total_steps: int) -> float:
    """Always 1.0: the paper's setting."""
    return 1.0


def linear(step: int, total_steps: int) -> float:
    """Linear decay from 1.0 at step 0 to 0.0 at ``total_steps``."""
    if total_steps <= 0:
        return 1.0
    return max(0.0, 1.0 - step / total_steps)


def cosine(step: int, total_steps: int) -> float:
    """Half-cosine decay from 1.0 to 0.0 over ``total_steps``."""
    if total_steps <= 0:
        return 1.0
    progress = min(1.0, max(0.0, step / total_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup(fraction: float = 0.1) -> Schedule:
    """Linear ramp from 0 to 1.0 over the first ``fraction`` of training, then 1.0."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"warm-up fraction must be in (0, 1], got {fraction}")

    def schedule(step: int, total_steps: int) -> float:
        if total_steps <= 0:
            return 1.0
        ramp = fraction * total_steps
        return min(1.0, (step + 1) / ramp) if ramp > 0 else 1.0

    schedule.__name__ = f"warmup({fraction:g})"
    return schedule


NAMED: dict[str, Schedule] = {"constant": constant, "linear": linear, "cosine": cosine, "warmup": warmup()}


def resolve_schedule(spec: str | Schedule | None) -> Schedule | None:
    """Turn ``None``, a name ("constant", "linear", "cosine", "warmup", "warmup:0.2") or a callable
    into a schedule (``None`` stays ``None``: constant alpha)."""
    if spec is None:
        return None
    if callable(spec):
        _check_callable(spec)
        return spec
    if isinstance(spec, str):
        name, _, arg = spec.partition(":")
        if name == "warmup" and arg:
            try:
                fraction = float(arg)
            except ValueError:
                raise ValueError(
                    f"schedule {spec!r}: the warm-up fraction must be a number in (0, 1], like 'warmup:0.2'"
                ) from None
            try:
                return warmup(fraction)
            except ValueError as exc:
                raise ValueError(f"schedule {spec!r}: {exc}") from None
        if name in NAMED and not arg:
            return NAMED[name]
    raise ValueError(
        f"unknown schedule {spec!r}; use one of {', '.join(NAMED)}, 'warmup:<fraction>', "
        "or a callable (step, total_steps) -> multiplier"
    )


def _check_callable(schedule: Schedule) -> None:
    """Call a user schedule once at (0, 100) so a wrong signature or result fails now, not mid-training."""
    try:
        value = schedule(0, 100)
    except TypeError as exc:
        raise TypeError(
            f"schedule {schedule!r} must be callable as schedule(step, total_steps) -> multiplier; "
            f"calling schedule(0, 100) raised: {exc}"
        ) from None
    check_alpha(value, f"the multiplier returned by schedule {schedule!r} for schedule(0, 100)")


def schedule_name(schedule: Schedule | None) -> str:
    """A readable name for logs and status lines."""
    if schedule is None:
        return "constant"
    return getattr(schedule, "__name__", type(schedule).__name__)


def _as_steps(value: object, name: str) -> int:
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


class ScheduledAlpha:
    """The effective alpha, ``base x schedule(step, total_steps)``, recomputed only when they change.

    ``value`` (a float) and ``tensor`` (0-d float32, what compiled code reads, so that no
    per-step Python constant is guarded on) always agree. ``check`` is called with every new
    value before it is taken and may raise ``ValueError`` (e.g. the dtype would overflow).
    ``error``: why the schedule failed before progress was known (e.g. it divides by
    ``total_steps`` while that is 0); the noise must not run while it is set.
    """

    def __init__(self, base: float, schedule: Schedule | None, check: Callable[[float], None]) -> None:
        self.base = check_alpha(base)
        self.schedule = schedule
        self.step = 0
        self.total_steps = 0
        self.value = self.base
        self.error: str | None = None
        self._check = check
        self.tensor = torch.tensor(self.base, dtype=torch.float32)
        try:
            self._update()
        except ArithmeticError as exc:
            self.error = self._failure(exc)

    def set_base(self, alpha: float) -> None:
        """Change the base alpha (the schedule still multiplies it); unchanged if the check refuses it."""
        previous, self.base = self.base, check_alpha(alpha)
        try:
            self._update()
        except ValueError:
            self.base = previous
            raise

    def set_progress(self, step: int, total_steps: int = 0) -> None:
        """Optimizer steps done and planned (0 = unknown); ``step`` never goes back (``ValueError``)."""
        step, total = _as_steps(step, "step"), _as_steps(total_steps or 0, "total_steps")
        if step < self.step:
            raise ValueError(
                f"set_progress: step went back from {self.step} to {step}; progress only moves forward "
                "(activate NEFTune anew for a new run)"
            )
        self.step, self.total_steps = step, total
        try:
            self._update()
        except ArithmeticError as exc:
            raise ValueError(self._failure(exc)) from None
        self.error = None

    def _update(self) -> None:
        alpha = self.base
        if self.schedule is not None:
            alpha *= check_alpha(self.schedule(self.step, self.total_steps), "schedule multiplier")
        self._check(alpha)
        self.value = alpha
        self.tensor.fill_(alpha)

    def _failure(self, exc: BaseException) -> str:
        return (
            f"NEFTune: schedule {schedule_name(self.schedule)} failed at step {self.step} of "
            f"{self.total_steps} ({type(exc).__name__}: {exc}); total_steps 0 means 'unknown': make the "
            "schedule handle it, or call handle.set_progress(step, total_steps) before training"
        )
