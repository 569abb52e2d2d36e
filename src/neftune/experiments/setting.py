"""One experimental setting (alpha, distribution, schedule): shared by planning, statistics and plots.

Pure Python, so the statistics and the report can use it without importing torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One experimental setting; arms of the same setting with different seeds are replicates.

    Alpha 0 adds no noise, so every alpha-0 setting is normalised to
    ``Setting(0.0, "uniform", None)`` (the schema's baseline form). ``scaling`` is how the noise
    is scaled ("per_sequence", neftune's default, or "batch", transformers' padded/packed length);
    it is written into the dict only when it is not the default, so older results read the same.
    """

    alpha: float
    distribution: str = "uniform"
    schedule: str | None = None
    scaling: str = "per_sequence"

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> Setting:
        """Build from a ``{"alpha", "distribution", "schedule"}`` dict; ValueError if malformed."""
        if not isinstance(d, Mapping):
            raise ValueError(f"setting must be an object with an 'alpha', got {d!r}")
        alpha = d.get("alpha")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
            raise ValueError(f"setting alpha must be a finite number, got {alpha!r}")
        if alpha == 0:
            return cls(0.0)
        schedule = d.get("schedule")
        return cls(
            float(alpha),
            str(d.get("distribution") or "uniform"),
            None if schedule is None else str(schedule),
            str(d.get("scaling") or "per_sequence"),
        )

    @property
    def is_no_noise(self) -> bool:
        return self.alpha == 0

    def sort_key(self) -> tuple[float, str, str, bool]:
        return (self.alpha, self.distribution, self.schedule or "", self.scaling != "per_sequence")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "alpha": self.alpha,
            "distribution": self.distribution,
            "schedule": self.schedule,
        }
        if self.scaling != "per_sequence":
            out["scaling"] = self.scaling
        return out
