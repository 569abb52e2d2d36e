"""``neftune train``: fine-tune a model with NEFTune (TRL's SFTTrainer), with a bar, a header and a summary."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from ..finetune.configfile import CONFIG_NAME
from ..finetune.progress import RichBars
from ..finetune.training import TrainConfig
from . import options as opts
from .common import TRAIN_DEFAULTS as _T
from .common import Config, LibraryLog, console, fail, listing, resume_command, tidy_paths, user_errors

# --------------------------------------------------------------------------- train


class _TrainConsole:
    """What `neftune train` shows: a header, one training bar (loss and alpha in it), a summary."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.bar = None
        self.bars = None
        self.losses: list[float] = []
        self.status = console.status("checking the options, loading the data and the model...")

    def report(self, event: str, info: dict) -> None:
        if event == "start":
            self._header(info)

    def _header(self, info: dict) -> None:
        self.status.stop()
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        c = self.cfg
        kind = f"LoRA r={c.lora_r}" if c.lora else "full fine-tune"
        noise = f"alpha {c.alpha:g} {c.distribution}, {c.scaling}" + (
            f", {c.schedule} schedule" if c.schedule else ""
        )
        if c.alpha == 0:
            noise = "alpha 0 (baseline: no noise)"
        lines = [
            f"[bold]neftune train[/]: {escape(c.model)} ({kind}) on {escape(c.data)}: "
            f"{info['records']} training records, {info['held_out']} held out for `neftune eval`",
            f"  {info['steps']} steps (batch {c.batch_size} x accumulation {c.grad_accum}), lr {info['lr']:g}, "
            f"{noise}, on {info['device']} -> {escape(c.out)}",
        ]
        if info["resume"]:
            lines.append(
                f"  Resuming from step {info['resume_step']} ({escape(info['checkpoint'])})"
                if info["checkpoint"]
                else f"  No checkpoint in {escape(c.out)} yet: starting from step 0"
            )
        if info.get("kept"):
            lines.append(
                f"  Kept (--overwrite removes only what neftune wrote): {escape(listing(info['kept']))}"
            )
        for note in info["warnings"]:
            lines.append(f"  [yellow]Note:[/] {escape(note)}")
        for line in lines:
            console.print(line, soft_wrap=True, highlight=False)
        columns = (
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[loss]} {task.fields[alpha]}"),
        )
        self.bar = Progress(*columns, console=console, transient=False)
        self.bars = RichBars(self.bar, show=_loss_and_alpha)
        self.bars("train", 0, info["steps"])
        self.bar.start()

    def progress(self, stage: str, done: int, total: int | None, **fields) -> None:
        if fields.get("loss") is not None:
            self.losses.append(float(fields["loss"]))
        if self.bars is not None:
            self.bars(stage, done, total, **fields)

    def close(self) -> None:
        self.status.stop()
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _loss_and_alpha(fields: dict) -> dict[str, str]:
    """The training bar's loss and alpha columns (blank until the first logged step; alpha None: no noise)."""
    loss, alpha = fields.get("loss"), fields.get("alpha")
    return {
        "loss": "" if loss is None else f"loss {loss:.4g}",
        "alpha": "" if alpha is None else f"alpha {alpha:.3g}",
    }


def train(
    model: opts.Model = _T.model,
    trust_remote_code: opts.TrustRemoteCode = _T.trust_remote_code,
    data: opts.Data = _T.data,
    data_seed: opts.DataSeed = _T.data_seed,
    field_map: opts.FieldMap = _T.field_map,
    max_length: opts.MaxLength = _T.max_length,
    padding_free: opts.PaddingFree = _T.padding_free,
    assistant_turns: opts.AssistantTurns = _T.assistant_turns,
    alpha: opts.Alpha = _T.alpha,
    distribution: opts.Distribution = _T.distribution,
    scaling: opts.Scaling = _T.scaling,
    schedule: opts.Schedule = _T.schedule,
    backend: opts.Backend = _T.backend,
    epochs: opts.Epochs = _T.epochs,
    max_steps: opts.MaxSteps = _T.max_steps,
    lr: opts.Lr = _T.lr,
    lr_scheduler_type: opts.LrSchedulerType = _T.lr_scheduler_type,
    warmup_ratio: opts.WarmupRatio = _T.warmup_ratio,
    batch_size: opts.BatchSize = _T.batch_size,
    grad_accum: opts.GradAccum = _T.grad_accum,
    seed: opts.Seed = _T.seed,
    bf16: opts.Bf16 = _T.bf16,
    lora: opts.Lora = _T.lora,
    lora_r: opts.LoraR = _T.lora_r,
    lora_alpha: opts.LoraAlpha = _T.lora_alpha,
    lora_dropout: opts.LoraDropout = _T.lora_dropout,
    lora_target_modules: opts.LoraTargetModules = _T.lora_target_modules,
    out: opts.RunOut = Path(_T.out),
    logging_steps: opts.LoggingSteps = _T.logging_steps,
    save_steps: opts.SaveSteps = _T.save_steps,
    report_to: opts.ReportTo = _T.report_to,
    overwrite: opts.RunOverwrite = False,
    resume: opts.Resume = False,
    config: Config = None,
) -> None:
    """Fine-tune MODEL on DATA with NEFTune (TRL SFTTrainer, loss on responses only)."""
    from dataclasses import fields

    from ..finetune.training import RUN_FILE, RunIOError, TrainingInterrupted, is_main_process
    from ..finetune.training import train as run_train

    given = dict(locals())
    given.update(tidy_paths({"model": model, "data": data, "out": str(out)}))
    cfg = TrainConfig(**{f.name: given[f.name] for f in fields(TrainConfig) if f.name in given})
    if not is_main_process():  # under torchrun / accelerate launch: rank 0 prints and reports for all
        try:
            run_train(cfg, overwrite=overwrite, resume=resume)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except (RunIOError, *user_errors()):
            raise typer.Exit(2) from None  # rank 0 printed the error
        return
    ui = _TrainConsole(cfg)
    try:
        with LibraryLog(out, RUN_FILE):
            try:
                ui.status.start()
                metrics = run_train(
                    cfg, overwrite=overwrite, resume=resume, progress=ui.progress, report=ui.report
                )
            finally:
                ui.close()
    except TrainingInterrupted as exc:
        if exc.checkpoint_step:
            saved = f"the checkpoint of step {exc.checkpoint_step} in {out / 'checkpoints'}"
        else:
            saved = f"no checkpoint yet (one every {cfg.save_steps} steps), so a resume starts from step 0"
        console.print(
            f"[yellow]Interrupted[/] at step {exc.step}/{exc.total}; run marked interrupted, saved: "
            f"{escape(saved)}. Resume: {escape(resume_command(out))}",
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted[/] before training started; nothing was written.", highlight=False)
        raise typer.Exit(130) from None
    except RunIOError as exc:
        kept = (
            f"the checkpoint of step {exc.checkpoint_step} is intact"
            if exc.checkpoint_step
            else "no checkpoint was complete"
        )
        fail(f"{exc}; {kept}. Free space (or fix permissions), then resume: {resume_command(out)}", code=1)
    except user_errors() as exc:
        fail(str(exc))
    _train_summary(out, cfg, metrics, ui.losses)


def _train_summary(out: Path, cfg: TrainConfig, metrics: dict, losses: list[float]) -> None:
    import shlex

    logged = f" (logged: first {losses[0]:.4g}, last {losses[-1]:.4g})" if len(losses) > 1 else ""
    resumed = (
        f", resumed from step {metrics['resumed_from_step']}" if metrics.get("resumed_from_step") else ""
    )
    what = f"LoRA adapter for {cfg.model}" if cfg.lora else "full model, safetensors"
    lines = [
        f"[green]Done[/] in {metrics['train_seconds']:.0f} s: {metrics['global_step']} steps{resumed}, "
        f"mean train loss {metrics['train_loss']:.4f}{logged}",
        f"  Model:  {out}  ({what})",
        f"  Config: {out / CONFIG_NAME}  (rerun: neftune train --config {shlex.quote(str(out / CONFIG_NAME))} --out NEW)",
        f"  Logs:   {out / 'train_log.json'}, {out / 'neftune.log'}",
        f"Next: neftune eval --model {shlex.quote(str(out))}",
    ]
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
