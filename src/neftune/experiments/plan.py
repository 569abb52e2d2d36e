"""What an experiment runs: its config, the presets, and the list of arms (no training here).

An *arm* is one training run plus its evaluation, for one *setting* (alpha, distribution,
schedule) and one seed. Everything else (model, data, steps, learning rate, evaluation) is
identical across the arms of an experiment, so differences come from the setting and the seed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..kernels.backend import check_backend
from ..noise import DISTRIBUTIONS, SCALINGS, check_alpha, check_choice
from ..schedules import resolve_schedule
from ..training import RunError, TrainConfig
from .setting import Setting

#: Train options shared by every arm (everything in TrainConfig but what the arms vary).
ARM_FIELDS = ("alpha", "distribution", "schedule", "seed", "out")
SHARED_TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name not in ARM_FIELDS)


@dataclass(frozen=True)
class Arm:
    setting: Setting
    seed: int

    @property
    def id(self) -> str:
        """Unique, filesystem-safe, e.g. ``a5-uniform-constant-s0``."""
        s = self.setting
        schedule = re.sub(r"[^A-Za-z0-9.]+", "", s.schedule or "constant")
        scaling = "" if s.scaling == "per_sequence" else f"-{s.scaling}"
        return f"a{s.alpha:g}-{s.distribution}-{schedule}{scaling}-s{self.seed}"


@dataclass
class ExperimentConfig:
    """A grid of settings x seeds on one model and data set.

    ``train``: options every arm shares (a :class:`~neftune.training.TrainConfig` whose
    alpha / distribution / schedule / seed / out are ignored). ``eval``: options of
    :class:`~neftune.evaluation.EvalConfig` (``max_new_tokens``, ``n_generate``, ...).
    ``curve_every``: optimizer steps between noise-off curve points (0: no curves).
    ``scalings``: noise scalings of the noisy settings ("per_sequence", "batch"); each noisy
    setting runs once per scaling, at the same alphas and seeds (the baseline once).
    """

    alphas: list[float] = field(default_factory=lambda: [0.0, 5.0, 10.0, 15.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    distributions: list[str] = field(default_factory=lambda: ["uniform"])
    schedules: list[str | None] = field(default_factory=lambda: [None])
    scalings: list[str] = field(default_factory=lambda: ["per_sequence"])
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: dict[str, Any] = field(default_factory=dict)
    curve_every: int = 10
    curve_records: int = 24

    def validate(self) -> None:
        if not self.alphas:
            raise RunError("give at least one alpha (e.g. --alphas 0,5,10,15)")
        if not self.seeds:
            raise RunError("give at least one seed (e.g. --seeds 3)")
        for a in self.alphas:
            check_alpha(a, "alphas")
        if len(set(self.alphas)) != len(self.alphas):
            raise RunError(f"alphas has duplicates: {self.alphas}")
        if len(set(self.seeds)) != len(self.seeds):
            raise RunError(f"seeds has duplicates: {self.seeds}")
        for d in self.distributions:
            check_choice(d, DISTRIBUTIONS, "distributions")
        if not self.scalings or len(set(self.scalings)) != len(self.scalings):
            raise RunError(f"scalings must be a list without duplicates, got {self.scalings}")
        for sc in self.scalings:
            check_choice(sc, SCALINGS, "scalings")
            check_backend(self.train.backend, scaling=sc)
        for s in self.schedules:
            resolve_schedule(s)
        if self.curve_every < 0 or self.curve_records < 1:
            raise RunError("curve-every must be >= 0 and curve-records >= 1")
        replace(self.train, alpha=max(self.alphas)).validate()
        from ..evaluation import EvalConfig, check_eval_config

        allowed = {f.name for f in fields(EvalConfig)} - {"model", "data", "out", "seed"}
        unknown = sorted(set(self.eval) - allowed)
        if unknown:
            raise RunError(f"unknown eval options {unknown}; known: {', '.join(sorted(allowed))}")
        # The values too, before the first arm trains for minutes and only then fails to evaluate.
        check_eval_config(EvalConfig(model="", **self.eval))

    def settings(self) -> list[Setting]:
        """Every distinct setting, baseline first; alpha 0 appears once whatever the grid."""
        out: list[Setting] = []
        for alpha in sorted(self.alphas):
            if alpha == 0.0:
                out.append(Setting(0.0))
                continue
            for dist in self.distributions:
                for schedule in self.schedules:
                    for scaling in self.scalings:
                        out.append(
                            Setting(alpha, dist, None if schedule == "constant" else schedule, scaling)
                        )
        return out

    def arms(self) -> list[Arm]:
        """Seed-major order, so a partial run already has every setting for its first seeds."""
        return [Arm(s, seed) for seed in self.seeds for s in self.settings()]

    def train_config(self, arm: Arm, out: str) -> TrainConfig:
        s = arm.setting
        return replace(
            self.train,
            alpha=s.alpha,
            distribution=s.distribution,
            schedule=s.schedule,
            scaling=s.scaling,
            seed=arm.seed,
            out=out,
        )

    def shared(self) -> dict[str, Any]:
        """What must be identical for arms to be comparable (stored, checked on resume).

        JSON-shaped (lists, not tuples), so it compares equal to what was stored.
        """
        train = asdict(self.train)
        shared = {
            "train": {k: train[k] for k in SHARED_TRAIN_FIELDS},
            "eval": dict(sorted(self.eval.items())),
            "curve_every": self.curve_every,
            "curve_records": self.curve_records,
        }
        return json.loads(json.dumps(shared))


#: ``--preset`` values: data size, grid and training length sized for the machine at hand.
PRESETS: dict[str, dict[str, Any]] = {
    # A first look on a laptop-class CPU: 6 arms of 50 steps on the embedded 135M model.
    "quick": {
        "alphas": [0.0, 10.0],
        "seeds": [0, 1, 2],
        "train": {"data": "builtin:quick", "max_steps": 50},
        "eval": {"n_generate": 60, "max_new_tokens": 48},
        "curve_every": 25,
        "curve_records": 16,
    },
    # The paper's alphas, 3 seeds, one epoch over 4000 records: meant for a GPU.
    "standard": {
        "alphas": [0.0, 5.0, 10.0, 15.0],
        "seeds": [0, 1, 2],
        "train": {"data": "builtin:standard", "epochs": 1.0, "batch_size": 16},
        "eval": {"n_generate": 200, "max_new_tokens": 64},
        "curve_every": 50,
        "curve_records": 48,
    },
    # As standard with 20000 records.
    "full": {
        "alphas": [0.0, 5.0, 10.0, 15.0],
        "seeds": [0, 1, 2],
        "train": {"data": "builtin:full", "epochs": 1.0, "batch_size": 16},
        "eval": {"n_generate": 400, "max_new_tokens": 64},
        "curve_every": 200,
        "curve_records": 64,
    },
}


def from_preset(name: str) -> ExperimentConfig:
    """An :class:`ExperimentConfig` for a preset name (see :data:`PRESETS`)."""
    if name not in PRESETS:
        raise RunError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[name]
    return ExperimentConfig(
        alphas=list(p["alphas"]),
        seeds=list(p["seeds"]),
        train=replace(TrainConfig(), **p["train"]),
        eval=dict(p["eval"]),
        curve_every=p["curve_every"],
        curve_records=p["curve_records"],
    )


def parse_floats(text: str, name: str) -> list[float]:
    """``"0,5,10"`` -> ``[0.0, 5.0, 10.0]``; a clear error naming ``name`` otherwise."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RunError(f"{name} must be comma-separated numbers like 0,5,10; got {text!r}") from None
    if not values or any(math.isnan(v) for v in values):
        raise RunError(f"{name} must be comma-separated numbers like 0,5,10; got {text!r}")
    return values


def parse_seeds(text: str) -> list[int]:
    """``"3"`` -> seeds 0, 1, 2; ``"0,4,7"`` -> those seeds; ``"0"`` -> the seed 0 (no count is 0)."""
    try:
        if "," not in text:
            n = int(text)
            if n < 0:
                raise ValueError
            return list(range(max(n, 1)))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RunError(
            f"seeds must be a count (3 = seeds 0,1,2) or a list like 0,4,7; got {text!r}"
        ) from None


def parse_names(text: str, name: str) -> list[str | None]:
    """``"uniform,gaussian"`` -> ``["uniform", "gaussian"]``; ``constant``/``none`` -> None."""
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise RunError(f"{name} must be a comma-separated list; got {text!r}")
    return [None if n in ("none", "constant") and name == "schedules" else n for n in names]
