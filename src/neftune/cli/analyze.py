"""``neftune analyze``: what the noise does to a model's real token embeddings."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..finetune.progress import RichBars
from . import options as opts
from .common import TRAIN_DEFAULTS as _T
from .common import console, fail, quiet_libraries, user_errors


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

    from ..experiments.embedding_noise import AnalyzeConfig, run_analyze
    from ..experiments.plan import parse_floats

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
    except user_errors() as exc:  # AnalyzeError is a ValueError
        fail(str(exc))
    quiet_libraries()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            result = run_analyze(cfg, progress=RichBars(bar))
    except user_errors() as exc:  # AnalyzeError is a ValueError
        fail(str(exc))
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
