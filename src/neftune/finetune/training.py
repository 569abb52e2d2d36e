"""Fine-tuning runs: TRL ``SFTTrainer`` plus neftune's callback, loss on responses only.

Reads top to bottom: config -> data -> model -> trainer -> train (noise on) -> save.
A run folder holds the model (or LoRA adapter), the tokenizer, ``config.yaml`` (the resolved
options: ``neftune train --config`` reruns it), ``neftune_run.json`` (config + metrics, written
atomically and last: its ``status`` says whether the run finished) and ``train_log.json``.
Checkpoints live in ``checkpoints/`` for ``--resume``. ``neftune_run.json`` lists the entries the
run wrote, and ``--overwrite`` removes those and nothing else.

Under ``torchrun`` / ``accelerate launch`` every rank runs :func:`train`; rank 0 alone checks and
writes the run folder, the others wait for its verdict, and the reported loss is the mean over ranks.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import NEFTuneConfig
from .configfile import CONFIG_NAME, write_config
from .data import DataError, Record
from .data.bundle import resolve_data
from .data.formats import parse_field_map
from .data.turns import ASSISTANT_TURNS, training_rows
from .io import read_json_object, write_json_atomic
from .models import chat_token_ids, resolve_model
from .outdirs import creation_problem, entries, eval_files, files_under, remaining, remove_files
from .progress import Progress

RUN_FILE = "neftune_run.json"
#: Statuses of a run that did not finish and that ``--resume`` continues.
RESUMABLE = ("running", "interrupted", "failed")
STATUSES = ("complete", *RESUMABLE)
#: Names a run of neftune < 0.2 wrote (its run file lists nothing): what ``--overwrite`` may remove.
_LEGACY_RUN_NAMES = (
    RUN_FILE, CONFIG_NAME, "train_log.json", "neftune.log", "checkpoints", "eval", "config.json",
    "generation_config.json", "model.safetensors", "model.safetensors.index.json", "adapter_config.json",
    "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "chat_template.jinja", "vocab.json", "merges.txt", "added_tokens.json",
)  # fmt: skip


class RunError(ValueError):
    """A run cannot start (bad option, folder in use); the message says what to change."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the run is marked ``interrupted``; says what a ``--resume`` starts from.

    ``step``: the optimizer steps done; ``checkpoint_step``: the newest complete checkpoint
    (None: none yet, a resume starts over).
    """

    def __init__(self, out: Path, step: int, total: int | None, checkpoint_step: int | None) -> None:
        super().__init__(f"interrupted at step {step}")
        self.out, self.step, self.total, self.checkpoint_step = out, step, total, checkpoint_step


class RunIOError(RuntimeError):
    """An ``OSError`` while the run wrote its files (disk full, permissions); the run is ``failed``.

    ``checkpoint_step``: the newest complete checkpoint, left intact for ``--resume``.
    """

    def __init__(self, out: Path, error: OSError, checkpoint_step: int | None) -> None:
        where = f" ({error.filename})" if error.filename else ""
        super().__init__(f"cannot write the run in {out}: {error.strerror or error}{where}")
        self.out, self.error, self.checkpoint_step = out, error, checkpoint_step


@dataclass
class TrainConfig:
    """Everything that defines a run; saved with it. ``alpha=0`` is the baseline."""

    model: str = "smollm2-135m"
    data: str = "builtin:quick"
    out: str = "runs/neftune"
    alpha: float = 5.0
    distribution: str = "uniform"
    scaling: str = "per_sequence"
    schedule: str | None = None
    lora: bool = False
    lora_r: int = 16
    epochs: float = 1.0
    max_steps: int = -1
    lr: float | None = None  # default: 5e-5 full fine-tune, 2e-4 LoRA
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    seed: int = 0
    data_seed: int = 0  # held-out split of user data files (fixed, so every seed evaluates the same records)
    padding_free: bool = True
    logging_steps: int = 5
    save_steps: int = 50
    bf16: bool | None = None  # default: on for CUDA with bf16 support
    backend: str = (
        "auto"  # noise op: "auto" (torch: the fused kernel was not faster on an H200) | "torch" | "triton"
    )
    trust_remote_code: bool = False  # run a hub model's own Python code; only for models you trust
    warmup_ratio: float = 0.03  # fraction of the steps with a linear learning-rate warm-up
    lr_scheduler_type: str = "cosine"  # a transformers SchedulerType value
    report_to: str = "none"  # logging backends, comma-separated: tensorboard, wandb, ... (when installed)
    lora_alpha: int | None = None  # LoRA scaling (not the noise alpha); default 2 * lora_r
    lora_dropout: float = 0.0
    lora_target_modules: str = "all-linear"  # or comma-separated module names, e.g. q_proj,v_proj
    field_map: str | None = None  # data fields under other names, e.g. "instruction=question,output=answer"
    assistant_turns: str = (
        "all"  # multi-turn records: train every assistant turn ("all") or the last ("last")
    )

    @property
    def noise(self) -> NEFTuneConfig:
        """The noise settings of this run (checked), as they go to ``attach`` and ``activate``.

        The run's ``seed`` seeds the noise stream too. The settings stay flat fields here
        because they are command-line options and ``config.yaml`` keys.
        """
        return NEFTuneConfig(
            alpha=self.alpha,
            distribution=self.distribution,
            scaling=self.scaling,
            seed=self.seed,
            schedule=self.schedule,
            backend=self.backend,
        )

    def validate(self) -> None:
        noise = self.noise
        if noise.alpha > 100:
            raise RunError(
                f"alpha {self.alpha} is far outside the useful range (the paper used 5-15); max 100"
            )
        for name in ("batch_size", "grad_accum", "max_length", "logging_steps", "save_steps", "lora_r"):
            if getattr(self, name) < 1:
                raise RunError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not math.isfinite(self.epochs):
            raise RunError(f"epochs must be a finite number, got {self.epochs}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise RunError("give epochs > 0 or max_steps > 0")
        if self.max_steps == 0 or self.max_steps < -1:
            raise RunError(f"max_steps must be >= 1, or -1 to train by epochs; got {self.max_steps}")
        if not (0 <= self.warmup_ratio < 1):
            raise RunError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not (0 <= self.lora_dropout < 1):
            raise RunError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise RunError(f"lora_alpha must be > 0, got {self.lora_alpha}")
        if not [m for m in self.lora_target_modules.split(",") if m.strip()]:
            raise RunError("lora_target_modules is empty; give all-linear or module names like q_proj,v_proj")
        parse_field_map(self.field_map)
        if self.assistant_turns not in ASSISTANT_TURNS:
            raise RunError(
                f"assistant_turns must be one of {', '.join(ASSISTANT_TURNS)}, got {self.assistant_turns!r}"
            )
        _check_scheduler(self.lr_scheduler_type)
        _check_report_to(self.report_to)
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise RunError(f"lr must be a finite number > 0, got {self.lr}")
        for name in ("seed", "data_seed"):
            if not 0 <= getattr(self, name) < 2**32:
                raise RunError(f"{name} must be in [0, 2**32), got {getattr(self, name)}")
        if not str(self.model).strip():
            resolve_model(self.model)  # raises ModelError: model is empty


def _check_scheduler(name: str) -> None:
    from transformers.trainer_utils import SchedulerType

    choices = [s.value for s in SchedulerType]
    if name not in choices:
        raise RunError(f"unknown lr_scheduler_type {name!r}; choose one of {', '.join(choices)}")


def _check_report_to(value: str) -> None:
    """``none``, ``all`` or backends transformers knows and that are installed here."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    if names in ([], ["none"], ["all"]):
        return
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    available = set(get_available_reporting_integrations())
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            raise RunError(
                f"unknown report_to {name!r}; choose none or some of {', '.join(sorted(INTEGRATION_TO_CALLBACK))}"
            )
        if name not in available:
            raise RunError(
                f"report_to {name!r}: the {name} package is not installed here (pip install {name}); "
                f"installed: {', '.join(sorted(available)) or 'none'}"
            )


def run_status(out: str | Path) -> str | None:
    """'complete', 'running', 'interrupted', 'failed', 'corrupt' (unreadable ``neftune_run.json``),
    or None (no run there)."""
    path = Path(out) / RUN_FILE
    if not path.exists():
        return None
    status = (read_json_object(path) or {}).get("status")
    return status if status in STATUSES else "corrupt"


def run_entries(out: Path) -> set[str]:
    """The top-level entries of ``out`` that this run created (its files may sit beside the user's).

    The run file lists them (``files`` once finished; ``preexisting``, what was there before,
    while running); evaluation folders (``eval*/`` holding ``eval.json``) count too. A run file
    that lists nothing (older neftune, or damaged) counts only the names neftune writes.
    """
    record = read_json_object(out / RUN_FILE) or {}
    present = entries(out)
    if isinstance(record.get("files"), list):
        owned = {str(n) for n in record["files"]}
    elif isinstance(record.get("preexisting"), list):
        owned = present - {str(n) for n in record["preexisting"]}
    else:
        owned = set(_LEGACY_RUN_NAMES)
    owned |= {n for n in present if n.startswith("eval") and eval_files(out / n)}
    return (owned | {RUN_FILE}) & present


def run_files(out: Path) -> set[str]:
    """The files (relative paths, any depth) that the run in ``out`` and its evaluations wrote.

    Only these may be removed by ``--overwrite``. A run records every file it wrote
    (``written``, updated at the start, at each checkpoint and at the end); a file added
    afterwards, even inside ``eval/`` or ``checkpoints/``, is the user's. An evaluation folder
    contributes the files an evaluation writes (:data:`~neftune.finetune.outdirs.EVAL_FILES`). A
    ``checkpoint-N`` folder the run left half-written (killed while saving) is the run's. Runs of
    older neftune versions recorded no ``written``: inside their folders only files older than
    the run file count.
    """
    record = read_json_object(out / RUN_FILE) or {}
    owned_entries = run_entries(out)
    evals = {n for n in owned_entries if n.startswith("eval") and eval_files(out / n)}
    others = owned_entries - evals
    present = files_under(out, others)
    if isinstance(record.get("written"), list):
        owned = {str(p) for p in record["written"]} & present
    else:  # older neftune: the run's entries, minus files the user put there after the run file
        stamp = (out / RUN_FILE).stat().st_mtime_ns if (out / RUN_FILE).is_file() else 0
        owned = {p for p in present if "/" not in p or (out / p).lstat().st_mtime_ns <= stamp}
    for name in evals:
        owned |= {f"{name}/{f}" for f in eval_files(out / name)}
    for checkpoint in _unfinished_checkpoints(out / "checkpoints"):
        owned |= {p for p in present if p.startswith(f"checkpoints/{checkpoint.name}/")}
    return owned | ({RUN_FILE} & present)


def _unfinished_checkpoints(folder: Path) -> list[Path]:
    """``checkpoint-N`` folders in ``folder`` that the trainer did not finish writing."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    return [p for p in folder.iterdir() if _checkpoint_step(p) is not None and not _checkpoint_complete(p)]


def clear_run(out: Path, protect: tuple[Path, ...] = ()) -> list[str]:
    """Remove what the run in ``out`` (and its evaluations) wrote; returns the files kept (relative paths).

    Kept: anything the run did not write, at any depth, and paths in ``protect``.
    """
    touched = run_entries(out)
    remove_files(out, run_files(out), protect)
    return remaining(out, touched)


def check_out_dir(out: str | Path, *, overwrite: bool, resume: bool, adopt: bool = False) -> Path:
    """Raise :class:`RunError` unless ``out`` may hold this run; creates and deletes nothing.

    Accepted: a new or empty folder; a previous run with ``--overwrite``; an unfinished run with
    ``--resume``. A folder with other content is refused whatever the flags: neftune writes into
    (and deletes from) only folders it created. ``adopt``: a folder neftune created whose earlier
    run was cleared but that still holds the user's files (an experiment's arm folder) is accepted
    too, unless one of those files has a name the run writes.
    """
    out = Path(out)
    if overwrite and resume:
        raise RunError("--overwrite and --resume contradict each other: choose one")
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder; choose a folder")
    problem = creation_problem(out)
    if problem:
        raise RunError(f"cannot create --out {out}: {problem}")
    status = run_status(out)
    if status is None and adopt:
        clashes = sorted(entries(out) & (set(_LEGACY_RUN_NAMES) - {"eval"}))
        if clashes:
            raise RunError(
                f"{out} holds {', '.join(clashes)}, which no neftune run wrote there and which this run would "
                "replace; move them elsewhere, then rerun"
            )
        return out
    if status is None:
        if out.exists() and any(out.iterdir()):
            did = (
                "--overwrite replaces only a previous neftune run, so nothing was deleted; "
                if overwrite
                else ""
            )
            raise RunError(
                f"--out {out} is not empty and holds no neftune run ({RUN_FILE}); {did}neftune writes only "
                f"into a new or empty folder: choose another --out (e.g. {out / 'run'})"
            )
        return out
    if status == "complete" and not overwrite:
        raise RunError(f"{out} already holds a finished run; pass --overwrite to replace it, or choose --out")
    if status == "corrupt" and not overwrite:
        raise RunError(
            f"{out / RUN_FILE} is unreadable (not a run record); pass --overwrite to start over "
            "(removes only the files a neftune run writes), or choose --out"
        )
    if status in RESUMABLE and not (resume or overwrite):
        raise RunError(
            f"{out} holds an interrupted run; pass --resume to continue it, --overwrite to start over, "
            "or choose --out"
        )
    return out


@dataclass
class OutDir:
    """A run folder made ready by :func:`prepare_out_dir`.

    ``preexisting``: top-level names that were there before this run (the user's);
    ``preexisting_files``: every file (relative path) that was there before it;
    ``kept``: files ``--overwrite`` left in place because the previous run did not write them.
    """

    path: Path
    preexisting: list[str]
    preexisting_files: list[str]
    kept: list[str]

    def written(self) -> list[str]:
        """The files (relative paths) this run has written so far, and the log the CLI appends."""
        before = set(self.preexisting_files)
        found = files_under(self.path) - before
        return sorted(found | ({"neftune.log", RUN_FILE} - before))


def prepare_out_dir(
    out: str | Path, *, overwrite: bool, resume: bool, protect: tuple[Path, ...] = (), adopt: bool = False
) -> OutDir:
    """:func:`check_out_dir`, then remove the previous run's files (``overwrite``) and create ``out``.

    Call it after every other pre-flight check, so a refused run creates and deletes nothing.
    ``protect``: paths never deleted (the data, the model); ``adopt``: see :func:`check_out_dir`.
    """
    out = check_out_dir(out, overwrite=overwrite, resume=resume, adopt=adopt)
    record = read_json_object(out / RUN_FILE) or {}
    kept: list[str] = []
    if overwrite and run_status(out) is not None:
        kept = clear_run(out, protect)
        record = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create --out {out}: {exc.strerror or exc}") from None
    before, before_files = record.get("preexisting"), record.get("preexisting_files")
    preexisting = [str(n) for n in before] if isinstance(before, list) else sorted(entries(out) - {RUN_FILE})
    if resume and not isinstance(before, list) and record:
        preexisting = sorted(entries(out) - run_entries(out))
    if isinstance(before_files, list):
        preexisting_files = [str(p) for p in before_files]
    elif record:  # resuming a run of an older neftune: what it did not write was there before
        preexisting_files = sorted(files_under(out) - run_files(out))
    else:
        preexisting_files = sorted(files_under(out) - {RUN_FILE})
    return OutDir(out, preexisting, preexisting_files, kept)


def _comparable(cfg: TrainConfig | dict[str, Any]) -> dict[str, Any]:
    """A run's settings as JSON would store them, without ``out`` (the folder itself)."""
    data = json.loads(json.dumps(asdict(cfg) if isinstance(cfg, TrainConfig) else cfg))
    data.pop("out", None)
    return data


def check_resume_config(out: Path, cfg: TrainConfig) -> None:
    """Refuse to resume an interrupted run with different settings (the result would mix two runs)."""
    if run_status(out) not in RESUMABLE:
        return
    saved = (read_json_object(out / RUN_FILE) or {}).get("config")
    if not isinstance(saved, dict):
        raise RunError(f"{out / RUN_FILE} has no config; pass --overwrite to start over")
    # Settings the saved run predates (fields added since) count as their defaults.
    new, defaults = _comparable(cfg), _comparable(TrainConfig())
    old = {**defaults, **_comparable(upgrade_train_values(saved))}
    changed = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
    if changed:
        raise RunError(
            f"--resume with other settings than the interrupted run in {out} ({'; '.join(changed)}); "
            "rerun with the same options, or pass --overwrite to start over"
        )


def check_prompt_lengths(records: list[Record], tokenizer: Any, max_length: int, source: str) -> None:
    """Refuse records whose prompt alone fills ``max_length`` (no response token would be trained on)."""
    for i, record in enumerate(records):
        n = len(chat_token_ids(tokenizer, record.prompt_messages, add_generation_prompt=True))
        if n >= max_length:
            raise RunError(
                f"{source} record {i}: the prompt is {n} tokens, not shorter than max length {max_length}; "
                "raise --max-length or shorten the prompt"
            )


def _progress_callback(progress: Progress) -> Any:
    """A ``TrainerCallback`` reporting ``progress("train", step, total_steps)`` at the start and
    after each step, with the ``loss`` and noise ``alpha`` at each logged step."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            progress("train", state.global_step, state.max_steps)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            progress("train", state.global_step, state.max_steps)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and logs.get("loss") is not None:
                alpha = logs.get("neftune/alpha")
                progress("train", state.global_step, state.max_steps, loss=logs["loss"], alpha=alpha)

    return StepProgress()


def _record_on_save(record: Callable[[], None]) -> Any:
    """A ``TrainerCallback`` calling ``record()`` after each checkpoint: the run file then lists it."""
    from transformers import TrainerCallback

    class RecordOnSave(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            record()

    return RecordOnSave()


#: Weight files we write (safetensors) and pickle-based ones we never load from a run folder.
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "adapter_model.bin")


def _checkpoint_step(path: Path) -> int | None:
    name, _, step = path.name.partition("-")
    return int(step) if name == "checkpoint" and step.isdigit() and path.is_dir() else None


def _checkpoint_complete(path: Path) -> bool:
    """Written to the end: the Trainer writes ``trainer_state.json`` last, after weights and optimizer."""
    state = read_json_object(path / "trainer_state.json")
    return state is not None and state.get("global_step") == _checkpoint_step(path)


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest fully written ``checkpoint-N`` in ``folder``; newer, half-written ones are deleted.

    A run killed while saving leaves a ``checkpoint-N`` without (or with a truncated)
    ``trainer_state.json``; resuming from it would fail or load half a file.
    """
    if not folder.is_dir():
        return None
    found = sorted(((s, p) for p in folder.iterdir() if (s := _checkpoint_step(p)) is not None), reverse=True)
    for _, path in found:
        if _checkpoint_complete(path):
            return path
        shutil.rmtree(path, ignore_errors=True)
    return None


def check_checkpoint_files(path: Path) -> None:
    """Refuse a checkpoint whose weights are pickles: we write safetensors, so those are not ours."""
    names = {p.name for p in path.iterdir()}
    if not names & set(SAFE_WEIGHTS) and names & set(PICKLE_WEIGHTS):
        pickled = ", ".join(sorted(names & set(PICKLE_WEIGHTS)))
        raise RunError(
            f"checkpoint {path} holds pickle weights ({pickled}) and no safetensors; neftune writes "
            "safetensors only and does not load pickled weights (unpickling can run code). Delete that "
            "checkpoint to restart from the previous one, or pass --overwrite"
        )


def refused_pickle_message(checkpoint: Path | None) -> str:
    """Name the checkpoint file that ``torch.load(weights_only=True)`` refuses, and why."""
    import torch
    from transformers.trainer_pt_utils import safe_globals  # the numpy types the Trainer allows

    culprit, reason = "a pickle file", ""
    files = sorted(p for p in checkpoint.iterdir() if p.suffix in (".pt", ".pth")) if checkpoint else []
    for path in files:  # rng_state*.pth, optimizer.pt, scheduler.pt, scaler.pt (not training_args.bin)
        try:
            with safe_globals():
                torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            culprit = path.name
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
            reason = f" (it would call {found.group(1)})" if found else ""
            break
    return (
        f"refused to load checkpoint {checkpoint}: {culprit} holds objects other than tensors{reason}, "
        "which torch.load(weights_only=True) does not unpickle because unpickling can run code. "
        "neftune did not write it; delete that checkpoint folder to resume from an earlier one, or pass --overwrite"
    )


def logged_mean_loss(log_history: list[dict[str, Any]]) -> float | None:
    """Mean training loss over the logged steps: each ``loss`` entry averages the steps since the last."""
    total, steps, last = 0.0, 0, 0
    for row in log_history:
        if "loss" in row and "step" in row and row["step"] > last:
            total += float(row["loss"]) * (row["step"] - last)
            steps += row["step"] - last
            last = row["step"]
    return total / steps if steps else None


def planned_steps(n_records: int, cfg: TrainConfig) -> int:
    """Optimizer steps the Trainer will run on one device (its own formula): ``max_steps`` or epochs."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    per_epoch = max(1, math.ceil(n_records / cfg.batch_size) // cfg.grad_accum)
    return max(1, math.ceil(cfg.epochs * per_epoch))


def plan_warnings(n_records: int, cfg: TrainConfig, steps: int) -> list[str]:
    """Settings that run but probably not as meant (printed before training starts)."""
    notes = []
    per_step = cfg.batch_size * cfg.grad_accum
    if per_step > n_records:
        notes.append(
            f"a step takes {per_step} sequences (batch {cfg.batch_size} x accumulation {cfg.grad_accum}) but "
            f"there are only {n_records} training records: each step sees all of them"
        )
    if cfg.save_steps > steps:
        notes.append(
            f"save_steps {cfg.save_steps} > {steps} steps: no checkpoint before the end, "
            "so an interrupted run restarts from step 0"
        )
    return notes


def _adapter_base_name(cfg: TrainConfig) -> str:
    """What a LoRA adapter's ``base_model_name_or_path`` should say: loadable beyond this cache."""
    from .models import PRESETS

    if cfg.model in PRESETS or cfg.model == "default":
        return cfg.model  # neftune resolves presets on any machine (`neftune eval`, `neftune export`)
    path = Path(cfg.model).expanduser()
    return str(path.resolve()) if path.is_dir() else cfg.model  # a hub id stays a hub id


def _fix_adapter_config(out: Path, cfg: TrainConfig) -> None:
    path = out / "adapter_config.json"
    adapter = read_json_object(path)
    if adapter is not None:
        adapter["base_model_name_or_path"] = _adapter_base_name(cfg)
        write_json_atomic(path, adapter)


def train_config_values(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as ``config.yaml`` stores it: every option under its command-line name."""
    return asdict(cfg)


#: Settings older neftune versions stored under another name, and ones they stored that are gone.
RENAMED_TRAIN_FIELDS = {"noise_backend": "backend"}
REMOVED_TRAIN_FIELDS = ("extra",)


def upgrade_train_values(values: dict[str, Any]) -> dict[str, Any]:
    """A stored run configuration with today's field names (runs and experiments made by older versions)."""
    out = {RENAMED_TRAIN_FIELDS.get(k, k): v for k, v in values.items()}
    for key in REMOVED_TRAIN_FIELDS:
        out.pop(key, None)
    return out


def world() -> tuple[int, int]:
    """(rank, number of processes) as set by ``torchrun`` / ``accelerate launch`` / ``deepspeed``."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in a single-process run and on rank 0 of a multi-process one."""
    return world()[0] == 0


def _distributed_state(cuda: bool) -> Any:
    """accelerate's process state (it starts the process group: gloo on CPU), or None for one process."""
    if world()[1] <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=not cuda)


def _on_main(state: Any, fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0 only; every rank returns its result or raises its error (no rank hangs)."""
    if state is None:
        return fn()
    from accelerate.utils import broadcast_object_list

    outcome: list[Any] = [None, None]
    if state.is_main_process:
        try:
            outcome = [fn(), None]
        except Exception as exc:
            outcome = [None, exc]
    broadcast_object_list(outcome, from_process=0)
    if outcome[1] is not None:
        raise outcome[1]
    return outcome[0]


def _mean_over_ranks(trainer: Any, value: float) -> float:
    """``value`` averaged over the ranks (the Trainer's own figure leaves unlogged steps per rank)."""
    import torch

    if world()[1] <= 1:
        return value
    tensor = torch.tensor(float(value), dtype=torch.float64, device=trainer.accelerator.device)
    return float(trainer.accelerator.reduce(tensor, reduction="mean").item())


def train(
    cfg: TrainConfig,
    *,
    overwrite: bool = False,
    resume: bool = False,
    callbacks: list[Any] | None = None,
    progress: Progress | None = None,
    report: Callable[[str, dict[str, Any]], None] | None = None,
    adopt: bool = False,
) -> dict[str, Any]:
    """Run one fine-tuning job; returns the metrics stored in ``neftune_run.json``.

    ``callbacks``: extra ``transformers.TrainerCallback`` objects for the trainer.
    ``progress``: called as ``progress("train", step, total_steps)`` after every optimizer
    step, with ``loss=`` and ``alpha=`` (None without noise) at every logged step
    (:mod:`neftune.finetune.progress`); when given, the trainer's own progress bar and log printing
    are turned off.
    ``report``: called as ``report("start", info)`` once the data and model are loaded (record
    counts, steps, device, the step a resume starts from, warnings, files ``overwrite`` kept).
    ``adopt``: ``cfg.out`` may hold files of the user's and no run (see :func:`check_out_dir`).

    Nothing is created or deleted before every check passed (options, folder, data, model,
    prompt lengths). Ctrl-C raises :class:`TrainingInterrupted` (run marked ``interrupted``); an
    ``OSError`` while writing raises :class:`RunIOError` (run marked ``failed``); either way the
    last complete checkpoint stays for ``resume=True``.
    """
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from ..integrations.transformers import attach
    from .models import load_model_and_tokenizer

    cfg.validate()
    cuda = torch.cuda.is_available()
    state = _distributed_state(cuda)  # None in a single-process run
    main = state is None or state.is_main_process

    def check_out() -> Path:
        out = check_out_dir(cfg.out, overwrite=overwrite, resume=resume, adopt=adopt)
        if resume:
            check_resume_config(out, cfg)
        model_dir = Path(cfg.model).expanduser()
        if model_dir.is_dir() and out.resolve() == model_dir.resolve():
            raise RunError(
                f"--out {out} is the folder of the model being trained (--model); choose another --out"
            )
        return out

    out = _on_main(state, check_out)
    bundle = resolve_data(cfg.data, seed=cfg.data_seed, field_map=cfg.field_map)
    if not bundle.train:
        raise DataError(f"{cfg.data}: no training records")
    steps = planned_steps(len(bundle.train), cfg)

    bf16 = cfg.bf16 if cfg.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
    model, tokenizer = load_model_and_tokenizer(
        cfg.model, dtype=torch.bfloat16 if bf16 else torch.float32, trust_remote_code=cfg.trust_remote_code
    )
    check_prompt_lengths(bundle.train, tokenizer, cfg.max_length, cfg.data)
    # Tokenized here (TRL takes them as they are): every assistant turn, or the last (cfg.assistant_turns).
    rows = training_rows(bundle.train, tokenizer, cfg.assistant_turns)
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        targets = [m.strip() for m in cfg.lora_target_modules.split(",") if m.strip()]
        model = get_peft_model(
            model,
            LoraConfig(
                r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha if cfg.lora_alpha is not None else 2 * cfg.lora_r,
                lora_dropout=cfg.lora_dropout,
                target_modules=targets[0] if targets == ["all-linear"] else targets,
                task_type="CAUSAL_LM",
            ),
        )

    protect = tuple(Path(p).expanduser() for p in (cfg.data, cfg.model) if Path(p).expanduser().exists())
    folder = _on_main(
        state,
        lambda: prepare_out_dir(out, overwrite=overwrite, resume=resume, protect=protect, adopt=adopt),
    )
    out = folder.path
    ckpt_dir = out / "checkpoints"
    record: dict[str, Any] = {
        "status": "running",
        "config": asdict(cfg),
        "preexisting": folder.preexisting,
        "preexisting_files": folder.preexisting_files,
    }

    def save_record(status: str, **info: Any) -> None:
        """Rewrite the run file: ``status``, ``info`` and every file the run has written so far."""
        write_json_atomic(out / RUN_FILE, {**record, "status": status, **info, "written": folder.written()})

    if main:
        write_config(out / CONFIG_NAME, train_config_values(cfg), command="train")
        save_record("running")

    def mark(status: str, **info: Any) -> None:
        if not main:
            return
        with contextlib.suppress(OSError):  # a full disk: the run stays "running", which resumes too
            save_record(status, **info)

    def newest_checkpoint_step() -> int | None:
        found = last_complete_checkpoint(ckpt_dir)
        return _checkpoint_step(found) if found else None

    trainer = None
    try:
        lr = cfg.lr if cfg.lr is not None else (2e-4 if cfg.lora else 5e-5)
        args = SFTConfig(
            output_dir=str(ckpt_dir),
            num_train_epochs=cfg.epochs,
            max_steps=cfg.max_steps,
            learning_rate=lr,
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum,
            # TRL does not truncate padding-free batches; prompts were checked against max_length above.
            max_length=None if cfg.padding_free else cfg.max_length,
            padding_free=cfg.padding_free,
            completion_only_loss=True,
            # Short runs still log their loss a few times.
            logging_steps=min(cfg.logging_steps, max(1, steps // 4)),
            save_steps=cfg.save_steps,
            save_total_limit=1,
            seed=cfg.seed,
            data_seed=cfg.seed,
            bf16=bf16,
            use_cpu=not cuda,
            report_to=cfg.report_to,
            lr_scheduler_type=cfg.lr_scheduler_type,
            warmup_steps=cfg.warmup_ratio,  # transformers >= 5: a float < 1 is a fraction of the steps
            dataset_num_proc=None,
            disable_tqdm=progress is not None,
            activation_checkpointing=False,  # small models: speed over memory
        )
        extra_callbacks = [_progress_callback(progress)] if progress else []
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[*(callbacks or []), *extra_callbacks, _record_on_save(lambda: mark("running"))],
        )
        if progress is not None:
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
        attach(trainer, cfg.noise)

        def find_checkpoint() -> Path | None:
            checkpoint = last_complete_checkpoint(ckpt_dir) if resume else None
            if checkpoint is not None:
                check_checkpoint_files(checkpoint)
            return checkpoint

        checkpoint = _on_main(state, find_checkpoint)  # rank 0 deletes half-written ones
        resumed_from = (_checkpoint_step(checkpoint) or 0) if checkpoint is not None else 0
        if report:
            report(
                "start",
                {
                    "records": len(bundle.train),
                    "held_out": sum(len(v) for v in bundle.evals.values()),
                    "steps": steps,
                    "device": "cuda" if cuda else "cpu",
                    "lr": lr,
                    "resume": resume,
                    "resume_step": resumed_from,
                    "checkpoint": str(checkpoint) if checkpoint else None,
                    "warnings": plan_warnings(len(bundle.train), cfg, steps),
                    "kept": folder.kept,
                },
            )
        start = time.perf_counter()
        try:
            result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        except pickle.UnpicklingError:  # torch.load(weights_only=True) refused a file of the checkpoint
            raise RunError(refused_pickle_message(checkpoint)) from None
        seconds = time.perf_counter() - start

        if state is None and not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
            trainer.model.save_pretrained(out, safe_serialization=True)
            tokenizer.save_pretrained(out)
        else:  # every rank takes part (FSDP / DeepSpeed gather the weights); the main process writes
            trainer.save_model(str(out))

            def check_saved() -> None:
                (out / "training_args.bin").unlink(missing_ok=True)  # a pickle; the config is in RUN_FILE
                if not any((out / name).exists() for name in SAFE_WEIGHTS):
                    raise RunError(
                        f"the trainer saved no safetensors weights in {out} (FSDP with a sharded state dict, "
                        "or DeepSpeed ZeRO-3 without stage3_gather_16bit_weights_on_model_save); set "
                        "fsdp_state_dict_type FULL_STATE_DICT or that DeepSpeed option, then rerun with --resume"
                    )

            _on_main(state, check_saved)
        if main:
            if cfg.lora:
                _fix_adapter_config(out, cfg)
            write_json_atomic(out / "train_log.json", trainer.state.log_history)
    except KeyboardInterrupt:
        step = trainer.state.global_step if trainer is not None else 0
        total = trainer.state.max_steps if trainer is not None and trainer.state.max_steps else steps
        saved = newest_checkpoint_step()
        mark("interrupted", step=step, checkpoint_step=saved)
        raise TrainingInterrupted(out, step, total, saved) from None
    except OSError as exc:
        saved = newest_checkpoint_step()
        mark("failed", error=f"{type(exc).__name__}: {exc}", checkpoint_step=saved)
        raise RunIOError(out, exc, saved) from None
    # After a resume the trainer's own figure covers only the steps of this call; the log covers all.
    logged = logged_mean_loss(trainer.state.log_history) if resumed_from else None
    train_loss = _mean_over_ranks(trainer, logged if logged is not None else result.training_loss)
    metrics = {
        "train_loss": train_loss,
        "resumed_from_step": resumed_from,
        "train_seconds": seconds,
        "global_step": trainer.state.global_step,
        "train_records": len(bundle.train),
        "learning_rate": lr,
        "bf16": bf16,
        "device": "cuda" if cuda else "cpu",
        "world_size": world()[1],
    }
    if main:
        if (ckpt_dir / "runs").is_dir():  # TensorBoard's event files: keep them when checkpoints go
            shutil.move(ckpt_dir / "runs", out / "tensorboard")
        # neftune.log: the command line writes it when the run returns.
        record["files"] = sorted(entries(out) - set(folder.preexisting) | {RUN_FILE, "neftune.log"})
        save_record("complete", metrics=metrics)
        # The checkpoints served --resume; only files the run wrote go (a user's file there stays).
        remove_files(out, [p for p in folder.written() if p.startswith("checkpoints/")])
    if state is not None:
        state.wait_for_everyone()  # no rank reports done before the run files are written
    return metrics
