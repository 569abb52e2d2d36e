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

from ..finetune.training import RunError, TrainConfig
from ..kernels.backend import check_backend
from ..noise import DISTRIBUTIONS, SCALINGS, check_alpha, check_choice
from ..schedules import resolve_schedule
from .setting import Setting

#: How the arms' data seeds are chosen (:attr:`ExperimentConfig.data_seeds`).
DATA_SEEDS = ("per_seed", "fixed")

#: Train options shared by every arm (everything in TrainConfig but what the arms vary).
ARM_FIELDS = ("alpha", "distribution", "schedule", "seed", "out")
SHARED_TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name not in ARM_FIELDS)


def _ifeval_cap() -> int:
    from ..finetune.evaluation import IFEVAL_MAX_NEW_TOKENS

    return IFEVAL_MAX_NEW_TOKENS


def split_scaling(text: str) -> tuple[str, tuple[float, ...] | None]:
    """``"batch@10+15"`` -> ``("batch", (10.0, 15.0))``; ``"batch"`` -> ``("batch", None)`` (every alpha)."""
    name, sep, at = str(text).partition("@")
    if not sep:
        return name, None
    try:
        alphas = tuple(float(a) for a in at.split("+") if a.strip())
    except ValueError:
        raise RunError(
            f"scalings {text!r}: write a scaling at some alphas as batch@10 or batch@5+15"
        ) from None
    if not alphas:
        raise RunError(f"scalings {text!r}: no alpha after '@' (e.g. batch@10)")
    return name, alphas


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

    ``train``: options every arm shares (a :class:`~neftune.finetune.training.TrainConfig` whose
    alpha / distribution / schedule / seed / out are ignored). ``eval``: options of
    :class:`~neftune.finetune.evaluation.EvalConfig` (``max_new_tokens``, ``n_generate``, ...).
    ``curve_every``: optimizer steps between noise-off curve points (0: no curves).
    ``scalings``: noise scalings of the noisy settings ("per_sequence", "batch"); each noisy
    setting runs once per scaling, at the same alphas and seeds (the baseline once). A scaling
    written ``batch@10`` (or ``batch@5+15``) runs at those alphas only.
    ``data_seeds``: ``"per_seed"`` (default): the arms of seed ``s`` use data seed ``s`` — their
    own generated built-in data (training records and evaluation prompts) or their own held-out
    split of a user file — so the intervals cover how the data and prompts were drawn, and the
    arms of one seed still share everything; ``"fixed"``: every arm uses ``train.data_seed``.
    A built-in spec with an explicit ``@seed`` keeps its data for every seed.
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
    data_seeds: str = "per_seed"

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
            name, at = split_scaling(sc)
            check_choice(name, SCALINGS, "scalings")
            check_backend(self.train.backend, scaling=name)
            missing = [a for a in at or () if a not in self.alphas or a == 0]
            if missing:
                raise RunError(
                    f"scalings {sc!r}: alpha {', '.join(f'{a:g}' for a in missing)} is not a noisy alpha of "
                    f"--alphas {','.join(f'{a:g}' for a in self.alphas)}"
                )
        for s in self.schedules:
            resolve_schedule(s)
        if self.data_seeds not in DATA_SEEDS:
            raise RunError(f"data_seeds must be one of {', '.join(DATA_SEEDS)}, got {self.data_seeds!r}")
        if self.curve_every < 0 or self.curve_records < 1:
            raise RunError("curve-every must be >= 0 and curve-records >= 1")
        replace(self.train, alpha=max(self.alphas)).validate()
        from ..finetune.evaluation import EvalConfig, check_eval_config

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
                        name, at = split_scaling(scaling)
                        if at is not None and alpha not in at:
                            continue
                        out.append(Setting(alpha, dist, None if schedule == "constant" else schedule, name))
        return out

    def arms(self) -> list[Arm]:
        """Seed-major order, so a partial run already has every setting for its first seeds."""
        return [Arm(s, seed) for seed in self.seeds for s in self.settings()]

    def arm_data(self, arm: Arm) -> tuple[str, int]:
        """``(data spec, data seed)`` of ``arm`` (see ``data_seeds``)."""
        spec = self.train.data
        if self.data_seeds == "fixed":
            return spec, self.train.data_seed
        if spec == "builtin":
            spec = "builtin:quick"
        if spec.startswith("builtin:") and "@" not in spec:
            spec = f"{spec}@{arm.seed}"  # the built-in data's seed is in its spec
        return spec, arm.seed

    def train_config(self, arm: Arm, out: str) -> TrainConfig:
        s = arm.setting
        data, data_seed = self.arm_data(arm)
        return replace(
            self.train,
            alpha=s.alpha,
            distribution=s.distribution,
            schedule=s.schedule,
            scaling=s.scaling,
            seed=arm.seed,
            data=data,
            data_seed=data_seed,
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
            "data_seeds": self.data_seeds,
        }
        return json.loads(json.dumps(shared))


#: The instruction cap, written into the presets so that an experiment records it (resuming one
#: evaluated with another cap is refused instead of mixing caps); see neftune.finetune.evaluation.
IFEVAL_MAX_NEW_TOKENS = _ifeval_cap()

#: ``--preset`` values: data size, grid and training length sized for the machine at hand.
PRESETS: dict[str, dict[str, Any]] = {
    # A first look on a laptop-class CPU: 6 arms of 50 steps on the embedded 135M model.
    "quick": {
        "alphas": [0.0, 10.0],
        "seeds": [0, 1, 2],
        "train": {"data": "builtin:quick", "max_steps": 50},
        "eval": {"n_generate": 60, "max_new_tokens": 48, "ifeval_max_new_tokens": IFEVAL_MAX_NEW_TOKENS},
        "curve_every": 25,
        "curve_records": 16,
    },
    # The paper's alphas, 3 seeds, one epoch over 4000 records: meant for a GPU.
    "standard": {
        "alphas": [0.0, 5.0, 10.0, 15.0],
        "seeds": [0, 1, 2],
        "train": {"data": "builtin:standard", "epochs": 1.0, "batch_size": 16},
        "eval": {"n_generate": 200, "max_new_tokens": 64, "ifeval_max_new_tokens": IFEVAL_MAX_NEW_TOKENS},
        "curve_every": 50,
        "curve_records": 48,
    },
    # As standard with 20000 records.
    "full": {
        "alphas": [0.0, 5.0, 10.0, 15.0],
        "seeds": [0, 1, 2],
        "train": {"data": "builtin:full", "epochs": 1.0, "batch_size": 16},
        "eval": {"n_generate": 400, "max_new_tokens": 64, "ifeval_max_new_tokens": IFEVAL_MAX_NEW_TOKENS},
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


# --------------------------------------------------------------------------- power, before the run


def _prompts_per_seed(cfg: ExperimentConfig, metric: str) -> int | None:
    """Evaluation prompts per seed behind ``metric`` (instruction or task prompts), from the data."""
    from ..finetune.data.bundle import resolve_data
    from ..finetune.data.instructions import IFEVAL_SPLIT_SUFFIX

    n_generate = int(cfg.eval.get("n_generate", 60))
    try:
        bundle = resolve_data(cfg.train.data, seed=cfg.train.data_seed)
    except Exception:  # checked elsewhere; here it only sizes the estimate
        return None
    if metric.startswith("ifeval/"):
        suffix = metric.split("/")[2] if metric.count("/") > 1 else None
        splits = [
            r for k, r in bundle.ifeval.items() if suffix is None or IFEVAL_SPLIT_SUFFIX.get(k) == suffix
        ]
        return sum(min(n_generate, len(r)) for r in splits) or None
    if metric.startswith("accuracy/"):
        split = metric.partition("/")[2]
        return min(n_generate, len(bundle.evals.get(split, []))) or None
    return None


def detectable_before_run(cfg: ExperimentConfig, pilot: Any, pilot_name: str) -> str:
    """One sentence: the smallest difference in the pilot's primary metric that ``cfg`` will detect
    with 80% power, predicted from the pilot's variance components (``pilot``: a
    :class:`~.stats.Summary` of an earlier experiment with per-prompt answers, or None), or why
    it cannot be said. :func:`~.intervals.planned_interval` does the arithmetic."""
    from dataclasses import replace as dc_replace

    from .formatting import fmt_value
    from .intervals import planned_interval
    from .labels import metric_label

    how = (
        "pass --pilot DIR (an earlier compare of the same model and data, with at least 2 seeds), "
        "or run 2 seeds first and read the report"
    )
    if pilot is None:
        return f"Detectable effect: cannot be said before the run without a pilot; {how}."
    metric = pilot.primary_metric
    m = pilot.metric(metric) if metric else None
    found = [
        c.diff.interval
        for c in (m.compared if m is not None else ())
        if c.diff is not None and c.diff.interval is not None and c.diff.interval.seed_var is not None
    ]
    if not found:
        return (
            f"Detectable effect: cannot be said: the pilot {pilot_name} has no paired interval of its "
            f"primary metric ({metric or 'none'}); {how}."
        )
    pooled = dc_replace(
        found[0],
        seed_var=sum(i.seed_var for i in found) / len(found),
        prompt_var=sum(i.prompt_var or 0.0 for i in found) / len(found),
    )
    explicit_seed = cfg.train.data.startswith("builtin") and "@" in cfg.train.data
    crossed = cfg.data_seeds == "fixed" or explicit_seed
    prompts = _prompts_per_seed(cfg, metric) if pooled.n_prompts else None
    planned = planned_interval(
        pooled, seeds=len(cfg.seeds), crossed=crossed, prompts=prompts, confidence=pilot.confidence
    )
    if planned is None:
        return (
            f"Detectable effect: cannot be said: {len(cfg.seeds)} seed(s) give no interval (run at least 2)."
        )
    se, detectable = planned
    design = f"{len(cfg.seeds)} seeds" + (
        f" x {prompts} prompts {'shared by every seed' if crossed else 'drawn per seed'}" if prompts else ""
    )
    pilot_design = f"{pooled.n_seeds} seeds" + (
        f" x {pooled.n_prompts} prompts {'shared' if pooled.crossed else 'drawn per seed'}"
        if pooled.n_prompts
        else ""
    )
    return (
        f"Detectable effect on {metric_label(metric)} ({metric}): about ±{fmt_value(detectable, 3)} or larger "
        f"per setting (80% power, {100 * pilot.confidence:g}% intervals, standard error {fmt_value(se, 3)}) with "
        f"{design}; predicted from the pilot {pilot_name} ({pilot_design}, {len(found)} comparison"
        f"{'s' if len(found) != 1 else ''} with its baseline)."
    )
