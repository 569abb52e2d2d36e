"""Alpha schedules: a schedule maps ``(step, total_steps)`` to a multiplier of the base alpha.

``step`` counts optimizer steps from 0; ``total_steps`` <= 0 means "unknown", for which
every built-in schedule returns 1.0. Any callable with that signature returning a finite
number >= 0 is accepted.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
    from .noise import check_alpha

    check_alpha(value, f"the multiplier returned by schedule {schedule!r} for schedule(0, 100)")


def schedule_name(schedule: Schedule | None) -> str:
    """A readable name for logs and status lines."""
    if schedule is None:
        return "constant"
    return getattr(schedule, "__name__", type(schedule).__name__)
