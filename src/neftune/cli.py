"""The ``neftune`` command: thin over :mod:`neftune.training` and :mod:`neftune.evaluation`.

Every option is declared once, in :mod:`neftune.cli_options`; the commands here only list
which ones they take, with their defaults.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from . import cli_options as opts
from .cli_frameworks import add_framework_commands
from .cli_options import OUTPUT
from .configfile import CONFIG_NAME, ConfigFileError, load_config_file, read_options, resolve_paths
from .evaluation import EvalConfig
from .progress import RichBars
from .training import TrainConfig

console = Console(stderr=True)


def _one_line(message: str) -> str:
    """``message`` on one line (library messages may hold line breaks)."""
    return " ".join(str(message).split())


def _click():
    """The click typer runs on: its own copy (typer >= 0.20), else the click package."""
    try:
        from typer import _click as vendored

        return vendored
    except ImportError:  # older typer
        import click
        import click.core
        import click.exceptions

        return click


class _OneLineErrors(TyperGroup):
    """The ``neftune`` group: a usage error (a value that is not a number, an unknown option, a missing
    one) prints one ``Error:`` line naming the option and exits 2, instead of typer's boxed usage panel."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        click_errors = _click().exceptions
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError as exc:  # `neftune` alone: the help was printed
            raise SystemExit(exc.exit_code) from None
        except click_errors.ClickException as exc:
            given = kwargs.get("args", args[0] if args else None)
            given = sys.argv[1:] if given is None else list(given)
            command = next((a for a in given if a in self.commands), None)
            message = _usage_message(exc, f"neftune {command}" if command else "neftune")
            console.print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True, highlight=False)
            raise SystemExit(exc.exit_code) from None
        except click_errors.Abort:
            console.print("Aborted.", highlight=False)
            raise SystemExit(1) from None
        raise SystemExit(code if isinstance(code, int) else 0)


def _usage_message(exc, where: str) -> str:
    """A click usage error as one line: the message, where a bad value came from, where the options are
    (``where``: the command, when the error has no context to say it)."""
    message = _one_line(exc.format_message())
    ctx, param = getattr(exc, "ctx", None), getattr(exc, "param", None)
    from_file = _click().core.ParameterSource.DEFAULT_MAP
    if (
        ctx is not None
        and param is not None
        and param.name
        and ctx.get_parameter_source(param.name) is from_file
    ):
        message = message.rstrip(".") + " (the value comes from the --config file)."
    return f"{message.rstrip('.')}. Options: {ctx.command_path if ctx is not None else where} -h"


app = typer.Typer(
    name="neftune",
    cls=_OneLineErrors,
    help="NEFTune fine-tuning with per-sequence noise, and honest evaluation of whether it helps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _fit_help_to_the_terminal() -> None:
    """``-h`` at any width: option names are never cut (typer ends them in ``…`` at 80 columns:
    ``--epochs,--num-train-epoc…``) and a long word of help text folds instead of being cut. Typer's
    option tables get a space after each comma between spellings (so they wrap there) and columns
    and help texts that fold."""
    from rich.columns import Columns
    from rich.table import Table as RichTable
    from rich.text import Text
    from typer import rich_utils

    class OptionsTable(RichTable):
        def add_row(self, *renderables, **kwargs) -> None:
            cells = list(renderables)
            for i, cell in enumerate(cells[:-1]):  # names and type; the last cell is the help
                if isinstance(cell, Text) and "," in cell.plain:
                    cells[i] = rich_utils.highlighter(Text(cell.plain.replace(",", ", "), style=cell.style))
            super().add_row(*cells, **kwargs)
            for cell, column in zip(cells[:-1], self.columns):
                # As wide as its longest spelling: wraps between spellings, never inside one.
                longest = (
                    max((len(w) for w in cell.plain.split()), default=0) if isinstance(cell, Text) else 0
                )
                if longest:
                    column.width = max(column.width or 0, longest)
            for column in self.columns:
                column.overflow = "fold"

    class HelpColumns(Columns):
        def __init__(self, renderables=None, *args, **kwargs) -> None:
            for item in renderables or ():
                if isinstance(item, Text):
                    item.overflow = "fold"
            super().__init__(renderables, *args, **kwargs)

    if getattr(rich_utils, "Table", None) is RichTable and getattr(rich_utils, "Columns", None) is Columns:
        rich_utils.Table = OptionsTable
        rich_utils.Columns = HelpColumns


_fit_help_to_the_terminal()

_T = TrainConfig()  # the one definition of every training default
_E = EvalConfig(model="")  # ... and of every evaluation default


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]Error:[/] {escape(_one_line(message))}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    from .data import DataError
    from .models import ModelError
    from .training import RunError

    return (DataError, ModelError, RunError, ValueError, TypeError, FileNotFoundError, PermissionError)


def _version(value: bool) -> None:
    if value:
        from .__main__ import version_line

        print(version_line())
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_version, help="Print the version and exit.")
    ] = False,
) -> None:
    """NEFTune fine-tuning with per-sequence noise, and honest evaluation of whether it helps."""


def _option_names(command) -> dict[str, str]:
    """Every spelling a config file may use for the command's options -> the parameter name."""
    names: dict[str, str] = {}
    for param in command.params:
        if param.name in ("config", "help") or not param.expose_value:
            continue
        names[param.name] = param.name
        for opt in param.opts:
            if opt.startswith("--"):
                names[opt[2:].replace("-", "_")] = param.name
    return names


def _config_value(value):
    """A list from a config file as the comma-separated text the option takes (``[0, 5]`` -> ``0,5``)."""
    if isinstance(value, list | tuple):
        text = ",".join(
            "constant" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in value
        )
        return text + ("," if len(value) == 1 else "")  # "3," is the seed 3, "3" would be three seeds
    return value


def _load_config(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """``--config FILE``: its values become the defaults of the other options (which the command line
    overrides), through click's ``default_map``; unknown names are an error naming them. Relative paths
    in the file are read from the file's folder. ``compare`` and ``sweep`` take a run's config.yaml:
    its alpha becomes the grid's noisy alpha beside the baseline."""
    if value is None or ctx.resilient_parsing:
        return value
    try:
        raw = load_config_file(value)
        values, notes = read_options(
            raw, _option_names(ctx.command), source=f"--config {value}", command=ctx.info_name
        )
        values = resolve_paths(values, Path(value).parent)
    except ConfigFileError as exc:
        _fail(str(exc))
    for note in notes:
        console.print(f"Note: {escape(note)}", soft_wrap=True, highlight=False)
    ctx.default_map = {**(ctx.default_map or {}), **{k: _config_value(v) for k, v in values.items()}}
    return value


def _tidy_paths(values: dict) -> dict:
    """Relative paths among ``values`` (the out folder, and a model or data that exists) in one spelling
    (``./qa.csv`` -> ``qa.csv``), so that a run's config.yaml read back gives the same settings (a
    resume compares them); what does not exist stays as typed, for the error message."""
    tidy = resolve_paths(values, ".")
    return {
        k: tidy[k] if k == "out" or (isinstance(v, str) and Path(v).exists()) else v
        for k, v in values.items()
    }


_Config = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help=opts.CONFIG_HELP,
        is_eager=True,
        callback=_load_config,
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]


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
                f"  Kept (--overwrite removes only what neftune wrote): {escape(_listing(info['kept']))}"
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


def _quiet_libraries() -> None:
    """Our bars replace the libraries' own progress bars and chatter."""
    import warnings

    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="trl")


class _LibraryLog:
    """Keeps the libraries' log records and warnings off the console; writes them to ``FOLDER/neftune.log``
    at the end when FOLDER is a neftune run or experiment (a refused run writes nothing)."""

    LOGGERS = ("transformers", "trl", "peft", "datasets", "accelerate", "torch", "neftune", "py.warnings")

    def __init__(self, folder: Path, marker: str) -> None:
        import logging
        import logging.handlers

        self.folder, self.marker = folder, marker
        self.memory = logging.handlers.MemoryHandler(capacity=10**6, flushLevel=logging.CRITICAL + 1)
        self.memory.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.saved: list = []
        self.filters: list = []

    def __enter__(self) -> _LibraryLog:
        import logging
        import warnings

        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_default_handler()
        datasets.disable_progress_bars()
        datasets.utils.logging.disable_propagation()
        self.filters = warnings.filters[:]
        logging.captureWarnings(True)
        warnings.simplefilter("default")
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            self.saved.append((logger, logger.level, logger.propagate))
            logger.addHandler(self.memory)
            logger.propagate = False
            if name in ("transformers", "trl", "peft", "neftune"):
                logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc) -> None:
        import logging
        import warnings

        logging.captureWarnings(False)
        warnings.filters[:] = self.filters
        for logger, level, propagate in self.saved:
            logger.removeHandler(self.memory)
            logger.setLevel(level)
            logger.propagate = propagate
        if (self.folder / self.marker).exists() and self.memory.buffer:
            try:
                with open(self.folder / "neftune.log", "a", encoding="utf-8") as fh:
                    fh.writelines(self.memory.format(r) + "\n" for r in self.memory.buffer)
            except OSError:
                pass
        self.memory.buffer.clear()


def _listing(paths: list[str], limit: int = 8) -> str:
    """``a, b, c and 4 more`` for a message line."""
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _resume_command(out: Path, kind: str = "train") -> str:
    import shlex

    flag = " --resume" if kind == "train" else ""
    return f"neftune {kind} --config {shlex.quote(str(out / CONFIG_NAME))}{flag}"


@app.command()
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
    config: _Config = None,
) -> None:
    """Fine-tune MODEL on DATA with NEFTune (TRL SFTTrainer, loss on responses only)."""
    from dataclasses import fields

    from .training import RUN_FILE, RunIOError, TrainingInterrupted, is_main_process
    from .training import train as run_train

    given = dict(locals())
    given.update(_tidy_paths({"model": model, "data": data, "out": str(out)}))
    cfg = TrainConfig(**{f.name: given[f.name] for f in fields(TrainConfig) if f.name in given})
    if not is_main_process():  # under torchrun / accelerate launch: rank 0 prints and reports for all
        try:
            run_train(cfg, overwrite=overwrite, resume=resume)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except (RunIOError, *_user_errors()):
            raise typer.Exit(2) from None  # rank 0 printed the error
        return
    ui = _TrainConsole(cfg)
    try:
        with _LibraryLog(out, RUN_FILE):
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
            f"{escape(saved)}. Resume: {escape(_resume_command(out))}",
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
        _fail(f"{exc}; {kept}. Free space (or fix permissions), then resume: {_resume_command(out)}", code=1)
    except _user_errors() as exc:
        _fail(str(exc))
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


# --------------------------------------------------------------------------- eval


@app.command("eval")
def eval_(
    model: opts.RunOrModel,
    trust_remote_code: opts.TrustRemoteCode = False,
    data: opts.shown(opts.Data, "what MODEL was trained on") = None,
    seed: opts.SplitSeed = None,
    field_map: opts.shown(opts.FieldMap, "the run's, on its own data") = None,
    max_new_tokens: opts.MaxNewTokens = _E.max_new_tokens,
    repetition_penalty: opts.RepetitionPenalty = _E.repetition_penalty,
    n_generate: opts.NGenerate = _E.n_generate,
    n_train_loss: opts.NTrainLoss = _E.n_train_loss,
    batch_size: opts.EvalOnlyBatchSize = _E.batch_size,
    out: opts.EvalOut = None,
    overwrite: opts.EvalOverwrite = False,
    as_json: opts.AsJson = False,
    ifeval: opts.IfevalFile = None,
    config: _Config = None,
) -> None:
    """Evaluate MODEL with the noise off: losses, accuracy, lengths, repetition, ROUGE-L, AlpacaEval export."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .evaluation import EvalConfig, check_eval_config, check_eval_out, evaluate

    paths = _tidy_paths(
        {
            "model": model,
            "data": data,
            "out": str(out) if out else None,
            "ifeval": str(ifeval) if ifeval else None,
        }
    )
    cfg = EvalConfig(
        model=paths["model"],
        data=paths["data"],
        out=paths["out"],
        max_new_tokens=max_new_tokens,
        repetition_penalty=repetition_penalty,
        batch_size=batch_size,
        n_generate=n_generate,
        n_train_loss=n_train_loss,
        seed=seed,
        field_map=field_map,
        trust_remote_code=trust_remote_code,
        ifeval=paths["ifeval"],
    )
    try:
        check_eval_config(cfg)
        folder, note = check_eval_out(cfg, overwrite=overwrite)
    except ValueError as exc:
        _fail(str(exc))
    if note:
        console.print(f"Note: {escape(note)}", highlight=False, soft_wrap=True)
    _quiet_libraries()
    columns = (TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            metrics = evaluate(cfg, progress=RichBars(bar))
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted[/]; nothing was written (an evaluation is written at its end).")
        raise typer.Exit(130) from None
    except _user_errors() as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(metrics, indent=2))
    else:
        counts = metrics.get("records") or {}
        table = Table(title=f"neftune eval: {model}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_column("records", justify="right")
        for key, value in metrics.items():
            if isinstance(value, float):
                table.add_row(key, f"{value:.4f}", str(counts.get(key, "")))
        Console().print(table)
    if metrics.get("length_chars") == 0:
        console.print(
            "[yellow]Note:[/] every generated answer was empty: the length, repetition, ROUGE-L and accuracy "
            "figures say nothing about this model (train longer, or check the chat template).",
            soft_wrap=True,
            highlight=False,
        )
    written = ", ".join(
        n for n in ("eval.json", "generations.json", "alpaca_eval.json") if (folder / n).exists()
    )
    console.print(f"Written to {folder}: {written}", soft_wrap=True, highlight=False)


@app.command()
def export(
    model: opts.ExportModel,
    out: opts.ExportOut,
    merge: opts.Merge = True,
    trust_remote_code: opts.TrustRemoteCode = False,
) -> None:
    """Write a run as a plain transformers folder (safetensors + tokenizer), a LoRA adapter merged in.

    The result loads anywhere with AutoModelForCausalLM.from_pretrained(OUT), without neftune or PEFT.
    """
    import shlex

    from .outdirs import creation_problem, entries

    path = Path(model)
    if not path.is_dir():
        _fail(f"--model {model}: no such run folder")
    is_adapter = (path / "adapter_config.json").exists()
    if is_adapter and not merge:
        _fail(
            f"{model} holds a LoRA adapter: it is already usable as is (PeftModel.from_pretrained); "
            "export it with --merge for a standalone model"
        )
    problem = creation_problem(out)
    if problem or entries(out):
        _fail(f"--out {out}: {problem or 'is not empty'}; export writes only into a new or empty folder")
    from .evaluation import load_for_eval

    _quiet_libraries()
    try:
        with console.status("loading" + (" and merging the adapter" if is_adapter else "")):
            loaded, tokenizer = load_for_eval(model, trust_remote_code=trust_remote_code)
            loaded.save_pretrained(out, safe_serialization=True)
            tokenizer.save_pretrained(out)
    except _user_errors() as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}", code=1)
    kind = "base model with the LoRA adapter merged in" if is_adapter else "full model"
    console.print(
        f"[green]Exported[/] {kind} to {out}. Load it with: "
        f"AutoModelForCausalLM.from_pretrained({shlex.quote(str(out))!r})",
        soft_wrap=True,
        highlight=False,
    )


# --------------------------------------------------------------------------- experiments


class _ExperimentBars:
    """Rich bars for :func:`neftune.experiments.run.run_experiment`: one across arms, one per run."""

    def __init__(self, bar, total: int, on_first=None) -> None:
        self.bar = bar
        self.on_first = on_first  # called once, when run_experiment has marked the folder as its own
        self.durations: list[float] = []
        self.done = 0
        self.total = total
        self.overall = bar.add_task("arms", total=total, eta="ETA after the first arm")
        self.arm = ""
        # One bar per stage of the arm running in this process (`ARM: start`, `ARM: train`, ...),
        # blank before the first; only the bar across arms fills the ETA column.
        self.run = RichBars(
            bar,
            describe=lambda stage: f"{self.arm}: {stage}" if stage else "",
            replace=True,
            show=lambda fields: {"eta": ""},
        )
        self.run("", 0, None)
        self.first_start = 0.0

    def _eta(self) -> str:
        if not self.durations:
            return "ETA after the first arm"
        # Wall time per finished arm since the first one started: right whether arms run one
        # after the other or several at once (--executor ray).
        per_arm = (time.monotonic() - self.first_start) / len(self.durations)
        left = (self.total - self.done) * per_arm
        return f"ETA {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"

    def _first(self) -> None:
        if self.on_first is not None:
            self.on_first()
            self.on_first = None

    def arm_started(self, index: int, total: int, arm) -> None:
        self._first()
        self.first_start = self.first_start or time.monotonic()
        self.arm = arm.id
        self.run("start", 0, None)

    def arm_skipped(self, index: int, total: int, arm) -> None:
        self._first()
        self.done += 1
        self.bar.update(self.overall, advance=1, eta=self._eta())

    def arm_finished(self, index: int, total: int, arm, seconds: float) -> None:
        self.done += 1
        self.durations.append(seconds)
        self.bar.update(self.overall, advance=1, eta=self._eta())
        console.print(f"finished {arm.id} in {seconds:.0f} s")

    def arm_retried(self, index: int, total: int, arm, attempt: int, where: str) -> None:
        console.print(f"[yellow]retrying[/] {arm.id} (attempt {attempt}, {where}): its previous worker died")

    def __call__(self, stage: str, done: int, total: int | None, **fields) -> None:
        self.run(stage, done, total)


def _prepare_experiment_folder(out: Path, overwrite: bool, protect: list[Path], cfg, kind: str) -> None:
    """Refuse a folder with other content; with ``overwrite``, remove only a previous experiment's entries."""
    from .experiments.run import clear_experiment
    from .outdirs import creation_problem, entries

    problem = creation_problem(out)
    if problem:
        _fail(f"cannot use --out {out}: {problem}")
    present = entries(out)
    if not present:
        return
    if "experiment.json" not in present:
        did = (
            "--overwrite replaces only a previous neftune experiment, so nothing was deleted; "
            if overwrite
            else ""
        )
        _fail(
            f"--out {out} is not empty and holds no neftune experiment (experiment.json); {did}neftune writes only "
            f"into a new or empty folder: choose another --out (e.g. {out / 'experiment'})"
        )
    if overwrite:
        kept = clear_experiment(out, protect)
        if kept:
            console.print(
                f"Kept (--overwrite removes only what neftune wrote): {escape(_listing(kept))}",
                highlight=False,
                soft_wrap=True,
            )
        if entries(out):
            # The user's own files stay; mark the folder as a new experiment (experiments.run's own
            # record) so that run_experiment, which refuses a non-empty unmarked folder, takes it.
            from .experiments.run import _check_experiment

            _check_experiment(out, cfg, kind)


def _grid_values(kind: str, preset: str, cfg, out: Path, report: bool, names: set[str]) -> dict:
    """Every option of this experiment as resolved (preset filled in): what its config.yaml holds,
    so that ``--config`` of it runs (resumes) the same experiment. ``names``: the command's options."""
    from dataclasses import asdict

    from .experiments.plan import SHARED_TRAIN_FIELDS

    values: dict = {"preset": preset, "alphas": list(cfg.alphas), "seeds": list(cfg.seeds)}
    if kind == "sweep":
        values["distributions"] = list(cfg.distributions)
        values["schedules"] = [s or "constant" for s in cfg.schedules]
    else:
        values["distribution"] = cfg.distributions[0]
        values["schedule"] = cfg.schedules[0] or "constant"
    values["scalings"] = ",".join(cfg.scalings)
    if "fixed_data" in names:
        values["fixed_data"] = cfg.data_seeds == "fixed"
    train = asdict(cfg.train)
    values.update({k: train[k] for k in SHARED_TRAIN_FIELDS if k in names})
    values.pop("epochs" if cfg.train.max_steps > 0 else "max_steps", None)  # the one not in effect
    for key, value in sorted(cfg.eval.items()):
        name = _EVAL_OPTION.get(key, key)
        if name in names:
            values[name] = value
    values.update(curve_every=cfg.curve_every, report=report, out=str(out))
    return values


#: ``ExperimentConfig.eval`` keys whose option has another name in compare and sweep.
_EVAL_OPTION = {"batch_size": "eval_batch_size"}


def _given(ctx: typer.Context, options: dict) -> dict:
    """The options the user set (command line or ``--config``), not left at their defaults."""
    ParameterSource = _click().core.ParameterSource
    return {
        k: v for k, v in options.items() if ctx.get_parameter_source(k) not in (None, ParameterSource.DEFAULT)
    }


def _experiment_config(preset: str, given: dict):
    """The :class:`~neftune.experiments.plan.ExperimentConfig` of ``--preset`` with every given option
    applied: grid options, training options (all of train's but what the arms vary) and evaluation ones."""
    from dataclasses import fields, replace

    from .evaluation import EvalConfig
    from .experiments.plan import ARM_FIELDS, from_preset, parse_floats, parse_names, parse_seeds

    cfg = from_preset(preset)
    if "alphas" in given:
        cfg.alphas = parse_floats(given["alphas"], "alphas")
    if "seeds" in given:
        cfg.seeds = parse_seeds(given["seeds"])
    if "distribution" in given:
        cfg.distributions = parse_names(given["distribution"], "distributions")[:1]
    if "distributions" in given:
        cfg.distributions = parse_names(given["distributions"], "distributions")
    if "schedule" in given:
        cfg.schedules = (
            [None] if given["schedule"] is None else parse_names(given["schedule"], "schedules")[:1]
        )
    if "schedules" in given:
        cfg.schedules = parse_names(given["schedules"], "schedules")
    if given.get("scalings") is not None:
        cfg.scalings = [str(x) for x in parse_names(given["scalings"], "scalings")]
    if given.get("curve_every") is not None:
        cfg.curve_every = given["curve_every"]
    if given.get("fixed_data"):
        cfg.data_seeds = "fixed"
    train_fields = {f.name for f in fields(TrainConfig)} - {*ARM_FIELDS, "scaling"}
    train = {k: v for k, v in given.items() if k in train_fields}
    if "epochs" in train and "max_steps" not in train:
        train["max_steps"] = -1  # --epochs given: train by epochs, not the preset's steps
    # None (compare's default of data, epochs, max_steps, batch_size): the preset's or TrainConfig's.
    required = ("model", "data", "lora", "epochs", "max_steps", "batch_size", "max_length")
    train = {k: v for k, v in train.items() if not (v is None and k in required)}
    cfg.train = replace(cfg.train, **train)
    eval_fields = {f.name for f in fields(EvalConfig)} - {"model", "data", "out", "seed", "field_map"}
    eval_fields -= {"trust_remote_code", "batch_size"}
    evals = {k: v for k, v in given.items() if k in eval_fields and v is not None}
    if given.get("eval_batch_size") is not None:
        evals["batch_size"] = given["eval_batch_size"]
    if evals.get("ifeval") is not None:  # the arms read it from their own folders: one absolute path
        evals["ifeval"] = str(Path(evals["ifeval"]).resolve())
    cfg.eval.update(evals)
    return cfg


def _run_grid(kind: str, ctx: typer.Context, options: dict, always: tuple[str, ...] = ()) -> None:
    """compare / sweep: check everything, prepare ``--out``, run the arms, print the verdicts.

    ``always``: options applied even at their default (sweep's grid)."""
    import shlex

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .configfile import write_config
    from .data.bundle import resolve_data
    from .experiments.executors import make_executor
    from .experiments.run import run_experiment
    from .models import check_model
    from .training import TrainingInterrupted

    out: Path = options["out"]
    try:
        runner = make_executor(
            options["executor"],
            address=options["ray_address"],
            cpus_per_arm=options["cpus_per_arm"],
            gpus_per_arm=options["gpus_per_arm"],
            max_retries=options["max_retries"],
        )
        given = _tidy_paths({**_given(ctx, options), **{k: options[k] for k in always}})
        cfg = _experiment_config(options["preset"], given)
        cfg.validate()
        if 0.0 not in cfg.alphas:
            _fail(
                f"--alphas {','.join(f'{a:g}' for a in cfg.alphas)} has no baseline: add 0 (no noise), "
                f"e.g. --alphas 0,{','.join(f'{a:g}' for a in cfg.alphas)}; without it, {kind} cannot say "
                "whether the noise helped"
            )
        t = cfg.train
        # Bad data or model: refused before any folder changes.
        resolve_data(t.data, seed=t.data_seed, field_map=t.field_map)
        check_model(t.model)
    except _user_errors() as exc:
        _fail(str(exc))
    if options.get("dry_run"):
        _print_plan(kind, cfg, out, options.get("pilot"))
        return
    protect = [Path(p) for p in (cfg.train.data, cfg.train.model) if Path(p).exists()]
    _prepare_experiment_folder(out, options["overwrite"], protect, cfg, kind)
    n_arms = len(cfg.arms())
    console.print(
        f"neftune {kind}: {n_arms} arms ({len(cfg.settings())} settings x {len(cfg.seeds)} seeds) "
        f"of {cfg.train.model}{' (LoRA)' if cfg.train.lora else ''} on {cfg.train.data} -> {out}",
        soft_wrap=True,
        highlight=False,
    )
    values = _grid_values(kind, options["preset"], cfg, out, options["report"], set(options))
    command = f"{_resume_command(out, kind)} --out {shlex.quote(str(out))}"
    _quiet_libraries()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
    )
    try:
        with _LibraryLog(out, "experiment.json"), Progress(*columns, console=console) as bar:
            bars = _ExperimentBars(
                bar, n_arms, on_first=lambda: write_config(out / CONFIG_NAME, values, command=kind)
            )
            results = run_experiment(
                cfg,
                out,
                kind=kind,
                command=command,
                overwrite=False,
                progress=bars,
                report=options["report"],
                executor=runner,
            )
    except KeyboardInterrupt as exc:
        where = ""
        if isinstance(exc, TrainingInterrupted):
            saved = (
                f"checkpoint of step {exc.checkpoint_step}" if exc.checkpoint_step else "no checkpoint yet"
            )
            where = f" (arm {exc.out.name} at step {exc.step}/{exc.total}, {saved})"
        console.print(
            f"[yellow]Interrupted[/]{escape(where)}; finished arms are kept in {escape(str(out))}. "
            f"Resume: {escape(_resume_command(out, kind))}",
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(130) from None
    except _user_errors() as exc:
        _fail(str(exc))
    except Exception as exc:  # an arm crashed: say where, keep what finished
        _fail(
            f"an arm failed ({type(exc).__name__}: {exc}); finished arms are kept in {out}. "
            f"Fix the cause and resume: {_resume_command(out, kind)}",
            code=1,
        )
    write_config(out / CONFIG_NAME, values, command=kind)
    _print_experiment_summary(out, results, options["report"])


def _print_plan(kind: str, cfg, out: Path, pilot: Path | None) -> None:
    """``--dry-run``: what would run, how long it may take, and the effect it could detect."""
    import statistics

    from .experiments.answers import load_experiment_answers
    from .experiments.labels import setting_labels
    from .experiments.plan import detectable_before_run
    from .experiments.report import load_results
    from .experiments.stats import summarize

    settings = cfg.settings()
    labels = setting_labels(settings)
    n_arms = len(cfg.arms())
    design = (
        "every seed on the same data and evaluation prompts"
        if cfg.data_seeds == "fixed"
        else "seed s on data seed s (its own training data and evaluation prompts)"
    )
    lines = [
        f"neftune {kind} --dry-run: nothing is trained or written.",
        f"{n_arms} arms = {len(settings)} settings ({', '.join(labels[s] for s in settings)}) x {len(cfg.seeds)} seeds "
        f"({', '.join(map(str, cfg.seeds))}) of {cfg.train.model} on {cfg.train.data} -> {out}",
        f"Data: {design}.",
    ]
    source = pilot if pilot is not None else (out if (out / "results.json").is_file() else None)
    summary = None
    if source is not None:
        try:
            results = load_results(source)
            summary = summarize(results, answers=load_experiment_answers(source, results))
        except (ValueError, OSError) as exc:
            _fail(f"--pilot {source}: {exc}")
        secs = [a["seconds"] for a in results["arms"] if isinstance(a.get("seconds"), (int, float))]
        if secs and summary.n_complete:
            median = statistics.median(secs)
            lines.append(
                f"Time: about {n_arms * median / 60:.0f} min ({n_arms} arms x the median {median:.0f} s of the "
                f"{len(secs)} arms of {source}; the same preset and machine are assumed)."
            )
        if not summary.n_complete:
            summary = None
        else:
            from .evaluation import EvalConfig

            caps = {a.caps.get("ifeval") for a in summary.answers.values()} - {None}
            cap = int(cfg.eval.get("ifeval_max_new_tokens", EvalConfig(model="").ifeval_max_new_tokens))
            if caps and max(caps) < cap:
                lines.append(
                    f"Note: the pilot capped instruction answers at {max(caps)} new tokens, this run at {cap}: "
                    "its evaluations generate longer answers and take longer than the pilot's."
                )
    lines.append(detectable_before_run(cfg, summary, str(source)))
    for line in lines:
        console.print(escape(line), soft_wrap=True, highlight=False)


def _print_experiment_summary(out: Path, results: dict, report: bool) -> None:
    done = sum(a["status"] == "complete" for a in results["arms"])
    console.print(f"[green]Done:[/] {done}/{len(results['arms'])} arms in {out}")
    _print_headline(results, out)
    if report:
        console.print(
            f"Report: {out / 'report' / 'report.html'}  (Markdown: {out / 'report' / 'summary.md'})"
        )
    else:
        console.print(f"Report: neftune report {out}")


def _print_headline(results: dict, folder: Path | None = None) -> None:
    """The statistics' plain-words verdicts (and, for sweeps, the recommendation) on stdout; with
    ``folder``, from the arms' stored answers too, as the report computes them."""
    from .experiments.answers import load_experiment_answers
    from .experiments.findings import headline_sentences, recommend, status_sentence
    from .experiments.informative import not_informative_reasons
    from .experiments.stats import summarize

    summary = summarize(results, answers=load_experiment_answers(folder, results) if folder else None)
    reasons = not_informative_reasons(results)
    if reasons:
        lines = [
            status_sentence(summary),
            "Not informative, no verdict: "
            + "; ".join(reasons)
            + ". Train longer or on more data, then rerun.",
        ]
    else:
        lines = [status_sentence(summary), *headline_sentences(summary)]
    if results.get("kind") == "sweep" and summary.primary_metric and not reasons:
        lines.append("Recommendation: " + recommend(summary).reason)
    out = Console()
    for line in lines:
        if line:
            out.print("- " + escape(line), highlight=False)


# Options of compare and sweep whose default comes from --preset.
_GridAlphas = opts.shown(opts.Alphas, opts.FROM_PRESET)
_GridSeeds = opts.shown(opts.Seeds, opts.FROM_PRESET)
_GridData = opts.shown(opts.Data, opts.FROM_PRESET)
_GridEpochs = opts.shown(opts.Epochs, opts.FROM_PRESET)
_GridMaxSteps = opts.shown(opts.MaxSteps, opts.FROM_PRESET)
_GridBatchSize = opts.shown(opts.BatchSize, f"{opts.FROM_PRESET}, else {_T.batch_size}")
_GridNGenerate = opts.shown(opts.NGenerate, opts.FROM_PRESET)
_GridMaxNewTokens = opts.shown(opts.MaxNewTokens, opts.FROM_PRESET)
_GridCurveEvery = opts.shown(opts.CurveEvery, opts.FROM_PRESET)


@app.command()
def compare(
    ctx: typer.Context,
    preset: opts.Preset = "quick",
    model: opts.Model = _T.model,
    data: _GridData = None,
    alphas: _GridAlphas = None,
    seeds: _GridSeeds = None,
    distribution: opts.Distribution = _T.distribution,
    scalings: opts.Scalings = None,
    out: opts.ExperimentOut = Path("runs/compare"),
    lora: opts.Lora = _T.lora,
    epochs: _GridEpochs = None,
    max_steps: _GridMaxSteps = None,
    lr: opts.Lr = _T.lr,
    batch_size: _GridBatchSize = None,
    max_length: opts.MaxLength = _T.max_length,
    n_generate: _GridNGenerate = None,
    max_new_tokens: _GridMaxNewTokens = None,
    repetition_penalty: opts.RepetitionPenalty = _E.repetition_penalty,
    curve_every: _GridCurveEvery = None,
    eval_batch_size: opts.EvalBatchSize = _E.batch_size,
    ifeval: opts.IfevalFile = None,
    overwrite: opts.ExperimentOverwrite = False,
    report: opts.Report = True,
    config: _Config = None,
    executor: opts.Executor = "local",
    ray_address: opts.RayAddress = None,
    cpus_per_arm: opts.CpusPerArm = 1.0,
    gpus_per_arm: opts.GpusPerArm = None,
    max_retries: opts.MaxRetries = 2,
    fixed_data: opts.FixedData = False,
    dry_run: opts.DryRun = False,
    pilot: opts.Pilot = None,
    # Every other option of train and eval (what the arms vary aside), the same in every arm.
    schedule: opts.Schedule = _T.schedule,
    trust_remote_code: opts.TrustRemoteCode = _T.trust_remote_code,
    data_seed: opts.DataSeed = _T.data_seed,
    field_map: opts.FieldMap = _T.field_map,
    padding_free: opts.PaddingFree = _T.padding_free,
    assistant_turns: opts.AssistantTurns = _T.assistant_turns,
    backend: opts.Backend = _T.backend,
    lr_scheduler_type: opts.LrSchedulerType = _T.lr_scheduler_type,
    warmup_ratio: opts.WarmupRatio = _T.warmup_ratio,
    grad_accum: opts.GradAccum = _T.grad_accum,
    bf16: opts.Bf16 = _T.bf16,
    lora_r: opts.LoraR = _T.lora_r,
    lora_alpha: opts.LoraAlpha = _T.lora_alpha,
    lora_dropout: opts.LoraDropout = _T.lora_dropout,
    lora_target_modules: opts.LoraTargetModules = _T.lora_target_modules,
    n_train_loss: opts.NTrainLoss = _E.n_train_loss,
    logging_steps: opts.LoggingSteps = _T.logging_steps,
    save_steps: opts.SaveSteps = _T.save_steps,
    report_to: opts.ReportTo = _T.report_to,
) -> None:
    """Train and evaluate every (alpha, seed) arm, everything else identical; report what differs beyond
    seed noise. Takes every option of train and eval; --config RUN/config.yaml compares that run's setting
    (LoRA, learning rate, data, field map, ...) with the baseline."""
    options = dict(locals())
    del options["ctx"]
    _run_grid("compare", ctx, options)


@app.command()
def sweep(
    ctx: typer.Context,
    preset: opts.Preset = "quick",
    model: opts.Model = _T.model,
    data: _GridData = None,
    alphas: opts.Alphas = "0,5,10,15",
    distributions: opts.Distributions = "uniform,gaussian",
    schedules: opts.Schedules = "constant,linear",
    seeds: _GridSeeds = None,
    out: opts.ExperimentOut = Path("runs/sweep"),
    lora: opts.Lora = _T.lora,
    epochs: _GridEpochs = None,
    max_steps: _GridMaxSteps = None,
    lr: opts.Lr = _T.lr,
    batch_size: _GridBatchSize = None,
    max_length: opts.MaxLength = _T.max_length,
    n_generate: _GridNGenerate = None,
    max_new_tokens: _GridMaxNewTokens = None,
    repetition_penalty: opts.RepetitionPenalty = _E.repetition_penalty,
    curve_every: _GridCurveEvery = None,
    overwrite: opts.ExperimentOverwrite = False,
    report: opts.Report = True,
    config: _Config = None,
    executor: opts.Executor = "local",
    ray_address: opts.RayAddress = None,
    cpus_per_arm: opts.CpusPerArm = 1.0,
    gpus_per_arm: opts.GpusPerArm = None,
    max_retries: opts.MaxRetries = 2,
    # Every other option of train and eval (what the arms vary aside), the same in every arm.
    scalings: opts.Scalings = None,
    eval_batch_size: opts.EvalBatchSize = _E.batch_size,
    ifeval: opts.IfevalFile = None,
    trust_remote_code: opts.TrustRemoteCode = _T.trust_remote_code,
    data_seed: opts.DataSeed = _T.data_seed,
    field_map: opts.FieldMap = _T.field_map,
    padding_free: opts.PaddingFree = _T.padding_free,
    assistant_turns: opts.AssistantTurns = _T.assistant_turns,
    backend: opts.Backend = _T.backend,
    lr_scheduler_type: opts.LrSchedulerType = _T.lr_scheduler_type,
    warmup_ratio: opts.WarmupRatio = _T.warmup_ratio,
    grad_accum: opts.GradAccum = _T.grad_accum,
    bf16: opts.Bf16 = _T.bf16,
    lora_r: opts.LoraR = _T.lora_r,
    lora_alpha: opts.LoraAlpha = _T.lora_alpha,
    lora_dropout: opts.LoraDropout = _T.lora_dropout,
    lora_target_modules: opts.LoraTargetModules = _T.lora_target_modules,
    n_train_loss: opts.NTrainLoss = _E.n_train_loss,
    logging_steps: opts.LoggingSteps = _T.logging_steps,
    save_steps: opts.SaveSteps = _T.save_steps,
    report_to: opts.ReportTo = _T.report_to,
) -> None:
    """Grid over alpha x distribution x schedule (x seeds); recommends a setting and says why. Takes every
    option of train and eval."""
    options = dict(locals())
    del options["ctx"]
    _run_grid("sweep", ctx, options, always=("alphas", "distributions", "schedules"))


@app.command()
def analyze(
    model: opts.Model = _T.model,
    alphas: opts.MeasuredAlphas = "0,1,5,10,15,20,30",
    distribution: opts.Distribution = _T.distribution,
    data: opts.SampleData = _T.data,
    n_sequences: opts.NSequences = 300,
    max_length: opts.CutLength = _T.max_length,
    seed: opts.SampleSeed = 0,
    out: opts.AnalyzeOut = Path("runs/analyze"),
) -> None:
    """What the noise does to the model's real token embeddings: L2, cosine, SNR, nearest-token flips."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .experiments.embedding_noise import AnalyzeConfig, run_analyze
    from .experiments.plan import parse_floats

    try:
        cfg = AnalyzeConfig(
            model=model,
            alphas=tuple(parse_floats(alphas, "alphas")),
            distribution=distribution,
            data=data,
            n_sequences=n_sequences,
            max_length=max_length,
            seed=seed,
            out=str(out),
        )
        cfg.validate()
    except _user_errors() as exc:  # AnalyzeError is a ValueError
        _fail(str(exc))
    _quiet_libraries()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            result = run_analyze(cfg, progress=RichBars(bar))
    except _user_errors() as exc:  # AnalyzeError is a ValueError
        _fail(str(exc))
    lengths = result["lengths"]
    table = Table(
        title=f"neftune analyze: {model}, {result['data']['used']} sequences of {data} "
        f"(median {lengths['median']:g} tokens)"
    )
    for column in ("alpha", "noise L2/tok (expected)", "cos mean (p5)", "SNR dB", "flips L2", "flips cos"):
        table.add_column(column, justify="right")
    table.add_column("can flip", justify="right")
    for row in result["metrics"]:
        snr_db = row.get("snr_db_median")
        table.add_row(
            f"{row['alpha']:g}",
            f"{row['noise_l2_rms']:.3f} ({row['noise_l2_expected_rms']:.3f})",
            f"{row['cosine_mean']:.3f} ({row['cosine_p5']:.3f})",
            "-" if snr_db is None else f"{snr_db:.1f}",
            f"{100 * row['flip_rate_l2']:.2f}%",
            f"{100 * row['flip_rate_cos']:.2f}%",
            f"{100 * row['flip_possible_rate']:.0f}%",
        )
    Console().print(table)
    console.print(f"Written: {out / 'analyze.json'}, {out / 'analyze.png'}  ({result['wall_seconds']:.0f} s)")


@app.command()
def viz(
    model: opts.Model = _T.model,
    alpha: opts.Alpha = _T.alpha,
    length: opts.NoiseLength = None,
    distribution: opts.Distribution = _T.distribution,
    data: opts.LengthData = _T.data,
    seed: opts.VizSeed = 0,
    out: opts.VizOut = Path("runs/viz"),
) -> None:
    """2-D projections (PCA, t-SNE) of real token embeddings from a few word groups, clean vs noisy."""
    from .experiments.projection import VizConfig, run_viz

    cfg = VizConfig(
        model=model, alpha=alpha, length=length, distribution=distribution, data=data, seed=seed, out=str(out)
    )
    try:
        cfg.validate()
        _quiet_libraries()
        with console.status("projecting embeddings..."):
            result = run_viz(cfg)
    except _user_errors() as exc:  # AnalyzeError is a ValueError
        _fail(str(exc))
    dropped = ", ".join(d["word"] if isinstance(d, dict) else str(d) for d in result["dropped"]) or "none"
    console.print(
        f"{len(result['points'])} tokens at alpha {result['alpha']:g}, L={result['length']} "
        f"({result['length_source']}); nearest token changed for {result['n_flipped']}; "
        f"dropped (not one token): {dropped}"
    )
    console.print(f"Written: {out / 'viz.png'}, {out / 'viz.json'}")


@app.command("report")
def report_(
    folder: opts.ExperimentFolder,
) -> None:
    """Rebuild report.html, summary.md and the plots of an experiment from its results.json."""
    from .experiments.report import build_report, load_results

    try:
        paths = build_report(folder)
        _print_headline(load_results(folder), folder)
    except _user_errors() as exc:  # ReportError is a ValueError
        _fail(str(exc))
    console.print(f"Report: {paths['html']}  (Markdown: {paths['markdown']})")


add_framework_commands(app)  # neftune llamafactory train, neftune trl sft

from .cli_ifeval import ifeval as _ifeval_command  # noqa: E402  (its own module; registered here)

app.command("ifeval")(_ifeval_command)


def main() -> None:
    """Console-script entry point: user errors exit 2 with a message, never a traceback.

    Ctrl-C exits 130: train, eval, compare and sweep catch it themselves and say what was saved
    and how to resume (typer turns any other Ctrl-C into a silent exit 130).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    main()
