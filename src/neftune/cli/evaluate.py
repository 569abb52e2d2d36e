"""``neftune eval``: evaluate a model or run with the noise off and print its metrics."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..finetune.evaluation import EvalConfig
from ..finetune.progress import RichBars
from . import options as opts
from .common import EVAL_DEFAULTS as _E
from .common import Config, console, fail, quiet_libraries, tidy_paths, user_errors


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
    config: Config = None,
) -> None:
    """Evaluate MODEL with the noise off: losses, accuracy, lengths, repetition, ROUGE-L, AlpacaEval export."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..finetune.evaluation import check_eval_config, check_eval_out, evaluate

    paths = tidy_paths(
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
        fail(str(exc))
    if note:
        console.print(f"Note: {escape(note)}", highlight=False, soft_wrap=True)
    quiet_libraries()
    columns = (TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            metrics = evaluate(cfg, progress=RichBars(bar))
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted[/]; nothing was written (an evaluation is written at its end).")
        raise typer.Exit(130) from None
    except user_errors() as exc:
        fail(str(exc))
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
