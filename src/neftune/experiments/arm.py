"""One arm of an experiment: train it (or resume its training), evaluate it, write its ``arm.json``.

Both executors (:mod:`.executors`) call :func:`run_arm`; :mod:`.run` decides which arms to run.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from ..finetune.data.bundle import DataBundle, resolve_data
from ..finetune.io import read_json_object, write_json_atomic
from ..finetune.progress import Progress
from ..finetune.training import RUN_FILE, run_status
from .layout import ARM_FILE
from .plan import Arm, ExperimentConfig

ACCURACY_CURVE_SPLIT = "eval_heldout_templates"


class ExperimentProgress(Progress, Protocol):
    """What the runner reports; the CLI draws bars from it. Every method is optional to act on.

    Called as a :class:`~neftune.finetune.progress.Progress`, it follows the arm running in this
    process: ``train`` and ``evaluate`` as those report them, ``report`` while the report is
    built. The ``arm_*`` methods follow every arm, wherever it runs.
    """

    def arm_started(self, index: int, total: int, arm: Arm) -> None: ...
    def arm_skipped(self, index: int, total: int, arm: Arm) -> None: ...
    def arm_finished(self, index: int, total: int, arm: Arm, seconds: float) -> None: ...
    def arm_retried(self, index: int, total: int, arm: Arm, attempt: int, where: str) -> None: ...


class NullProgress(ExperimentProgress):
    """Ignores every report (the protocol's methods do nothing)."""

    def __call__(self, stage: str, done: int, total: int | None, **fields: Any) -> None:
        pass


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _curve_callback(cfg: ExperimentConfig, bundle: DataBundle) -> Any:
    from .curves import CurveCallback

    n = cfg.curve_records
    loss_sets = {"train": bundle.train[:n], **{k: v[:n] for k, v in bundle.evals.items()}}
    accuracy = {ACCURACY_CURVE_SPLIT: bundle.evals[ACCURACY_CURVE_SPLIT][:n]} if bundle.builtin else {}
    return CurveCallback(
        cfg.curve_every,
        loss_sets,
        accuracy,
        max_new_tokens=min(32, int(cfg.eval.get("max_new_tokens", 32))),
        batch_size=int(cfg.eval.get("batch_size", 8)),
    )


def arm_record(arm: Arm, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": arm.id,
        "setting": arm.setting.to_dict(),
        "seed": arm.seed,
        "status": status,
        "error": None,
        "dir": f"arms/{arm.id}",
        **extra,
    }


def run_arm(
    cfg: ExperimentConfig,
    arm: Arm,
    folder: Path,
    bundle: DataBundle,
    progress: ExperimentProgress,
) -> dict[str, Any]:
    """Train (or resume) and evaluate one arm; writes and returns its ``arm.json`` record."""
    from ..finetune.evaluation import EvalConfig, evaluate
    from ..finetune.training import train
    from .curves import curves_from_log

    arm_dir = folder / "arms" / arm.id
    data, data_seed = cfg.arm_data(arm)
    if (data, data_seed) != (cfg.train.data, cfg.train.data_seed):
        bundle = resolve_data(data, seed=data_seed, field_map=cfg.train.field_map)  # this seed's own data
    start, started = time.perf_counter(), now()
    if run_status(arm_dir) != "complete":
        progress("train", 0, None)  # while the data and model load
        callbacks = [_curve_callback(cfg, bundle)] if cfg.curve_every > 0 else []
        train(
            cfg.train_config(arm, str(arm_dir)),
            resume=True,
            callbacks=callbacks,
            progress=progress,
            adopt=True,  # the arm folder is the experiment's; an --overwrite may have left the user's files
        )
    eval_file = arm_dir / "eval" / "eval.json"
    metrics = read_json_object(eval_file)
    if metrics is None:
        eval_cfg = EvalConfig(
            model=str(arm_dir),
            data=data,
            out=str(arm_dir / "eval"),
            seed=data_seed,
            trust_remote_code=cfg.train.trust_remote_code,
        )
        eval_cfg = replace(eval_cfg, **cfg.eval)
        metrics = evaluate(eval_cfg, progress=progress)
    run = read_json_object(arm_dir / RUN_FILE) or {}
    log = json.loads((arm_dir / "train_log.json").read_text())
    record = arm_record(
        arm,
        "complete",
        seconds=time.perf_counter() - start,
        train=run.get("metrics", {}),
        eval={k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)},
        curves=curves_from_log(log),
        data=data,
        data_seed=data_seed,
        started=started,
        finished=now(),
        shared=cfg.shared(),
    )
    write_json_atomic(arm_dir / ARM_FILE, record)
    return record
