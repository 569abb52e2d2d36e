"""Fine-tuning runs: TRL ``SFTTrainer`` plus neftune's callback, loss on responses only.

Reads top to bottom: config -> data -> model -> trainer -> train (noise on) -> save.
A run folder holds the model (or LoRA adapter), the tokenizer, ``neftune_run.json``
(resolved config + metrics, written atomically and last: its ``status`` says whether the
run finished) and ``train_log.json``. Checkpoints live in ``checkpoints/`` for ``--resume``.

Under ``torchrun`` / ``accelerate launch`` every rank runs :func:`train`; rank 0 alone checks and
writes the run folder, the others wait for its verdict, and the reported loss is the mean over ranks.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .data import DataError, Record
from .data.bundle import resolve_data
from .io import read_json_object, write_json_atomic
from .kernels.backend import check_backend
from .models import chat_token_ids, resolve_model
from .noise import DISTRIBUTIONS, SCALINGS, check_alpha, check_choice
from .schedules import resolve_schedule

RUN_FILE = "neftune_run.json"


class RunError(ValueError):
    """A run cannot start (bad option, folder in use); the message says what to change."""


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
    noise_backend: str = "auto"  # "auto" (fused Triton kernel on CUDA when available) | "torch" | "triton"
    trust_remote_code: bool = False  # run a hub model's own Python code; only for models you trust
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        check_alpha(self.alpha, "alpha")
        if self.alpha > 100:
            raise RunError(
                f"alpha {self.alpha} is far outside the useful range (the paper used 5-15); max 100"
            )
        check_choice(self.distribution, DISTRIBUTIONS, "distribution")
        check_choice(self.scaling, SCALINGS, "scaling")
        resolve_schedule(self.schedule)
        check_backend(self.noise_backend, scaling=self.scaling)
        for name in ("batch_size", "grad_accum", "max_length", "logging_steps", "save_steps", "lora_r"):
            if getattr(self, name) < 1:
                raise RunError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not math.isfinite(self.epochs):
            raise RunError(f"epochs must be a finite number, got {self.epochs}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise RunError("give epochs > 0 or max_steps > 0")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise RunError(f"lr must be a finite number > 0, got {self.lr}")
        for name in ("seed", "data_seed"):
            if not 0 <= getattr(self, name) < 2**32:
                raise RunError(f"{name} must be in [0, 2**32), got {getattr(self, name)}")
        if not str(self.model).strip():
            resolve_model(self.model)  # raises ModelError: model is empty


def run_status(out: str | Path) -> str | None:
    """'complete', 'running', 'corrupt' (unreadable ``neftune_run.json``), or None (no run there)."""
    path = Path(out) / RUN_FILE
    if not path.exists():
        return None
    status = (read_json_object(path) or {}).get("status")
    return status if status in ("complete", "running") else "corrupt"


def prepare_out_dir(out: str | Path, *, overwrite: bool, resume: bool) -> Path:
    """Check that ``out`` may hold this run (see the messages) and create it."""
    out = Path(out)
    if overwrite and resume:
        raise RunError("--overwrite and --resume contradict each other: choose one")
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder; choose a folder")
    status = run_status(out)
    if status == "complete" and not overwrite:
        raise RunError(f"{out} already holds a finished run; pass --overwrite to replace it, or choose --out")
    if overwrite and out.exists():
        shutil.rmtree(out)
    elif status == "corrupt":
        raise RunError(
            f"{out / RUN_FILE} is unreadable (not a run record); pass --overwrite to start over, or choose --out"
        )
    elif status == "running" and not resume:
        raise RunError(
            f"{out} holds an interrupted run; pass --resume to continue it, --overwrite to start over, "
            "or choose --out"
        )
    elif status is None and out.exists() and any(out.iterdir()) and not resume:
        raise RunError(f"{out} exists and is not empty; pass --overwrite to replace it, or choose --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create --out {out}: {exc.strerror or exc}") from None
    return out


def _comparable(cfg: TrainConfig | dict[str, Any]) -> dict[str, Any]:
    """A run's settings as JSON would store them, without ``out`` (the folder itself)."""
    data = json.loads(json.dumps(asdict(cfg) if isinstance(cfg, TrainConfig) else cfg))
    data.pop("out", None)
    return data


def check_resume_config(out: Path, cfg: TrainConfig) -> None:
    """Refuse to resume an interrupted run with different settings (the result would mix two runs)."""
    if run_status(out) != "running":
        return
    saved = (read_json_object(out / RUN_FILE) or {}).get("config")
    if not isinstance(saved, dict):
        raise RunError(f"{out / RUN_FILE} has no config; pass --overwrite to start over")
    # Settings the saved run predates (fields added since) count as their defaults.
    new, defaults = _comparable(cfg), _comparable(TrainConfig())
    old = {**defaults, **_comparable(saved)}
    changed = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
    if changed:
        raise RunError(
            f"--resume with other settings than the interrupted run in {out} ({'; '.join(changed)}); "
            "rerun with the same options, or pass --overwrite to start over"
        )


def _to_prompt_completion(records: list[Record]) -> list[dict[str, Any]]:
    return [{"prompt": r.prompt_messages, "completion": [r.messages[-1]]} for r in records]


def check_prompt_lengths(records: list[Record], tokenizer: Any, max_length: int, source: str) -> None:
    """Refuse records whose prompt alone fills ``max_length`` (no response token would be trained on)."""
    for i, record in enumerate(records):
        n = len(chat_token_ids(tokenizer, record.prompt_messages, add_generation_prompt=True))
        if n >= max_length:
            raise RunError(
                f"{source} record {i}: the prompt is {n} tokens, not shorter than max length {max_length}; "
                "raise --max-length or shorten the prompt"
            )


def _step_progress_callback(report: Callable[[int, int], None]) -> Any:
    """A ``TrainerCallback`` calling ``report(step, total_steps)`` at the start and after each step."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            report(state.global_step, state.max_steps)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            report(state.global_step, state.max_steps)

    return StepProgress()


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
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run one fine-tuning job; returns the metrics stored in ``neftune_run.json``.

    ``callbacks``: extra ``transformers.TrainerCallback`` objects for the trainer.
    ``progress``: called as ``progress(step, total_steps)`` after every optimizer step; when
    given, the trainer's own progress bar and log printing are turned off.
    """
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from .integrations.transformers import attach
    from .models import load_model_and_tokenizer

    cfg.validate()
    cuda = torch.cuda.is_available()
    state = _distributed_state(cuda)  # None in a single-process run

    def prepare() -> Path:
        out = prepare_out_dir(cfg.out, overwrite=overwrite, resume=resume)
        if resume:
            check_resume_config(out, cfg)
        return out

    out = _on_main(state, prepare)
    main = state is None or state.is_main_process
    bundle = resolve_data(cfg.data, seed=cfg.data_seed)
    if not bundle.train:
        raise DataError(f"{cfg.data}: no training records")

    bf16 = cfg.bf16 if cfg.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
    model, tokenizer = load_model_and_tokenizer(
        cfg.model, dtype=torch.bfloat16 if bf16 else torch.float32, trust_remote_code=cfg.trust_remote_code
    )
    check_prompt_lengths(bundle.train, tokenizer, cfg.max_length, cfg.data)
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, target_modules="all-linear", task_type="CAUSAL_LM"
            ),
        )

    if main:
        write_json_atomic(out / RUN_FILE, {"status": "running", "config": asdict(cfg)})
    lr = cfg.lr if cfg.lr is not None else (2e-4 if cfg.lora else 5e-5)
    ckpt_dir = out / "checkpoints"
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
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=1,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=bf16,
        use_cpu=not cuda,
        report_to="none",
        lr_scheduler_type="cosine",
        warmup_steps=0.03,
        dataset_num_proc=None,
        disable_tqdm=progress is not None,
        activation_checkpointing=False,  # small models: speed over memory
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(_to_prompt_completion(bundle.train)),
        processing_class=tokenizer,
        callbacks=[*(callbacks or []), *([_step_progress_callback(progress)] if progress else [])],
    )
    if progress is not None:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    attach(
        trainer,
        cfg.alpha,
        distribution=cfg.distribution,
        scaling=cfg.scaling,
        schedule=cfg.schedule,
        seed=cfg.seed,
        backend=cfg.noise_backend,
    )

    def find_checkpoint() -> Path | None:
        checkpoint = last_complete_checkpoint(ckpt_dir) if resume else None
        if checkpoint is not None:
            check_checkpoint_files(checkpoint)
        return checkpoint

    checkpoint = _on_main(state, find_checkpoint)  # rank 0 deletes half-written ones
    resumed_from = (_checkpoint_step(checkpoint) or 0) if checkpoint is not None else 0
    start = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except pickle.UnpicklingError:  # torch.load(weights_only=True) refused a file of the checkpoint
        raise RunError(refused_pickle_message(checkpoint)) from None
    seconds = time.perf_counter() - start

    if state is None and not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        model = trainer.model
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    else:  # every rank takes part (FSDP / DeepSpeed gather the weights); the main process writes
        trainer.save_model(str(out))

        def check_saved() -> None:
            (out / "training_args.bin").unlink(missing_ok=True)  # a pickle; the config is in RUN_FILE
            if not any((out / name).exists() for name in SAFE_WEIGHTS):
                raise RunError(
                    f"the trainer saved no safetensors weights in {out} (FSDP with a sharded state dict, or "
                    "DeepSpeed ZeRO-3 without stage3_gather_16bit_weights_on_model_save); set "
                    "fsdp_state_dict_type FULL_STATE_DICT or that DeepSpeed option, then rerun with --resume"
                )

        _on_main(state, check_saved)
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
        write_json_atomic(out / "train_log.json", trainer.state.log_history)
        write_json_atomic(out / RUN_FILE, {"status": "complete", "config": asdict(cfg), "metrics": metrics})
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    if state is not None:
        state.wait_for_everyone()  # no rank reports done before the run files are written
    return metrics
