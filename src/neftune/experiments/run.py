"""Run an experiment's arms, resumably, and keep ``results.json`` up to date.

The folder's layout is :mod:`.layout`'s; one arm is :func:`.arm.run_arm`.
An arm is finished exactly when its ``arm.json`` exists: it is written atomically, last.
A re-run skips finished arms, resumes an interrupted training from its last checkpoint, redoes
an evaluation that did not finish, and refuses to mix arms trained with different options.
``results.json`` is rebuilt from the arm folders after every arm, so it is never ahead of them.
Where the arms run (here, one after the other, or as Ray tasks) is :mod:`.executors`' job.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from ..finetune.data import DataError
from ..finetune.data.bundle import DataBundle, resolve_data
from ..finetune.io import read_json_object, write_json_atomic
from ..finetune.provenance import environment
from ..finetune.training import RunError, upgrade_train_values
from .arm import ACCURACY_CURVE_SPLIT, ExperimentProgress, NullProgress, arm_record, now, run_arm
from .executors import ArmWork, Executor, LocalExecutor
from .layout import (
    ARM_FILE,
    EXPERIMENT_ENTRIES,
    EXPERIMENT_FILE,
    EXPERIMENT_FILES,
    RESULTS_FILE,
    clear_experiment,
    experiment_files,
)
from .plan import Arm, ExperimentConfig
from .stats import RESULTS_SCHEMA as SCHEMA

#: Names other modules import from here (defined in .arm and .layout).
__all__ = [
    "ACCURACY_CURVE_SPLIT",
    "ARM_FILE",
    "EXPERIMENT_ENTRIES",
    "EXPERIMENT_FILE",
    "EXPERIMENT_FILES",
    "RESULTS_FILE",
    "ExperimentProgress",
    "NullProgress",
    "clear_experiment",
    "collect_results",
    "experiment_files",
    "finished_arms",
    "primary_metric",
    "run_arm",
    "run_experiment",
]


def primary_metric(bundle: DataBundle) -> str:
    """Verifiable instruction following for built-in data (prompt level, strict), else held-out loss."""
    return "ifeval/prompt_strict" if bundle.ifeval else f"loss/{next(iter(bundle.evals))}"


def _check_experiment(folder: Path, cfg: ExperimentConfig, kind: str) -> dict[str, Any]:
    """Write ``experiment.json`` on first use; on a re-run, refuse options that differ."""
    path = folder / EXPERIMENT_FILE
    shared = cfg.shared()
    saved = read_json_object(path)
    if saved is None:
        saved = {"schema": SCHEMA, "kind": kind, "created": now(), "shared": shared}
        write_json_atomic(path, saved)
        return saved
    differences = _differences(_upgraded(saved.get("shared", {})), shared, _default_shared())
    if differences:
        raise RunError(
            f"{folder} holds an experiment run with other options ({'; '.join(differences[:4])}); "
            "rerun with the same options to resume it, choose another --out, or pass --overwrite"
        )
    return saved


_MISSING = object()


def _upgraded(shared: dict[str, Any]) -> dict[str, Any]:
    """A stored ``shared()`` with today's train option names (experiments made by older versions).

    Experiments from before ``data_seeds`` used one data seed for every arm: ``"fixed"``."""
    train = shared.get("train")
    shared = {**shared, "train": upgrade_train_values(train)} if isinstance(train, dict) else dict(shared)
    shared.setdefault("data_seeds", "fixed")
    return shared


def _differences(
    old: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any], prefix: str = ""
) -> list[str]:
    """Options that differ between a stored ``shared()`` and the current one.

    A key absent from the stored side (an option added by a later neftune version) counts as
    its default value, so upgrading neftune does not invalidate finished arms.
    """
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        default = defaults.get(key, _MISSING) if isinstance(defaults, dict) else _MISSING
        if a is _MISSING:
            a = default
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_differences(a, b, default if isinstance(default, dict) else {}, f"{prefix}{key}."))
        elif a != b:
            shown = "unset" if a is _MISSING else repr(a)
            out.append(f"{prefix}{key}: {shown} then, {'unset' if b is _MISSING else repr(b)} now")
    return out


@functools.cache
def _default_shared() -> dict[str, Any]:
    """The defaults of every shared option (read only: cached, one per process)."""
    return ExperimentConfig().shared()


def _finished_arm(folder: Path, arm: Arm, shared: dict[str, Any]) -> dict[str, Any] | None:
    """The stored record of a finished arm trained with ``shared`` options, else None."""
    record = read_json_object(folder / "arms" / arm.id / ARM_FILE)
    if record is None or record.get("status") != "complete":
        return None
    if _differences(_upgraded(record.get("shared") or {}), shared, _default_shared()):
        return None
    return record


def finished_arms(folder: Path, cfg: ExperimentConfig) -> list[Arm]:
    """The arms of ``cfg`` already finished in ``folder`` with its options: those a run skips."""
    shared = cfg.shared()
    return [arm for arm in cfg.arms() if _finished_arm(folder, arm, shared) is not None]


def collect_results(
    folder: Path,
    cfg: ExperimentConfig,
    *,
    kind: str,
    command: str | None,
    created: str,
    primary: str,
    failed: dict[str, str] | None = None,
    env: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble ``results.json`` from the arm folders (finished arms) and the plan (the rest)."""
    shared = cfg.shared()
    failed = failed or {}
    arms = []
    for arm in cfg.arms():
        record = _finished_arm(folder, arm, shared)
        if record is None:
            status = "failed" if arm.id in failed else "pending"
            record = arm_record(arm, status, error=failed.get(arm.id))
        else:
            record = {k: v for k, v in record.items() if k != "shared"}
        arms.append(record)
    settings = cfg.settings()
    baseline = next((s for s in settings if s.is_no_noise), None)
    train = shared["train"]
    return {
        "schema": SCHEMA,
        "kind": kind,
        "status": "complete" if all(a["status"] == "complete" for a in arms) else "running",
        "created": created,
        "updated": now(),
        "command": command,
        "environment": env or environment(),
        "config": {
            "model": train["model"],
            "data": train["data"],
            "alphas": sorted(cfg.alphas),
            "seeds": list(cfg.seeds),
            "distributions": list(cfg.distributions),
            "schedules": list(cfg.schedules),
            "train": {k: v for k, v in train.items() if k not in ("model", "data")},
            "eval": shared["eval"],
            "curve_every": cfg.curve_every,
            "curve_records": cfg.curve_records,
            "data_seeds": cfg.data_seeds,
            "primary_metric": primary,
        },
        "baseline": baseline.to_dict() if baseline else None,
        "arms": arms,
    }


def run_experiment(
    cfg: ExperimentConfig,
    folder: str | Path,
    *,
    kind: str = "compare",
    command: str | None = None,
    overwrite: bool = False,
    progress: ExperimentProgress | None = None,
    report: bool = True,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Run every arm of ``cfg`` in ``folder`` (skipping finished ones); returns the results dict.

    ``executor``: :class:`~.executors.LocalExecutor` (default) stops at the first arm that
    raises, after recording it as failed in ``results.json``; :class:`~.executors.RayExecutor`
    runs the arms concurrently and raises :class:`~.executors.ArmsFailed` at the end if any
    failed. Rerunning resumes, with either executor. With ``report``, builds ``folder/report/``
    at the end (only when every arm finished).
    """
    progress = progress or NullProgress()
    executor = executor or LocalExecutor()
    cfg.validate()
    folder = Path(folder).absolute()  # Ray workers do not share this process's working directory
    if folder.exists() and not folder.is_dir():
        raise RunError(f"--out {folder} is a file; choose a folder")
    replaced = overwrite and (folder / EXPERIMENT_FILE).exists()
    if replaced:
        clear_experiment(folder)  # only what the previous experiment wrote; the user's files stay
    elif folder.exists() and any(folder.iterdir()) and not (folder / EXPERIMENT_FILE).exists():
        raise RunError(
            f"{folder} is not empty and holds no neftune experiment (experiment.json); neftune writes only "
            "into a new or empty folder, and overwrite replaces only a previous experiment: choose another folder"
        )
    # fail fast on bad data
    bundle = resolve_data(cfg.train.data, seed=cfg.train.data_seed, field_map=cfg.train.field_map)
    if not bundle.train:
        raise DataError(f"{cfg.train.data}: no training records")
    folder.mkdir(parents=True, exist_ok=True)
    meta = _check_experiment(folder, cfg, kind)
    primary = "ifeval/prompt_strict" if cfg.eval.get("ifeval") else primary_metric(bundle)  # --ifeval FILE
    env = environment()
    shared = cfg.shared()

    def save(failed: dict[str, str] | None = None) -> dict[str, Any]:
        results = collect_results(
            folder,
            cfg,
            kind=kind,
            command=command,
            created=meta["created"],
            primary=primary,
            failed=failed,
            env=env,
        )
        write_json_atomic(folder / RESULTS_FILE, results)
        return results

    arms = cfg.arms()
    results = save()
    pending = []
    for index, arm in enumerate(arms):
        if _finished_arm(folder, arm, shared) is not None:
            progress.arm_skipped(index, len(arms), arm)
        else:
            pending.append((index, arm))
    failed: dict[str, str] = {}

    def done(index: int, arm: Arm, record: dict[str, Any]) -> None:
        nonlocal results
        progress.arm_finished(index, len(arms), arm, record["seconds"])
        results = save(failed)

    def fail(arm: Arm, message: str) -> None:
        nonlocal results
        failed[arm.id] = message
        results = save(failed)

    work = ArmWork(
        cfg=cfg,
        folder=folder,
        total=len(arms),
        pending=pending,
        progress=progress,
        run_here=lambda arm, p: run_arm(cfg, arm, folder, bundle, p),
        done=done,
        failed=fail,
    )
    executor.run(work)
    if report:
        from .report import build_report

        progress("report", 0, None)
        build_report(folder)
    return results
