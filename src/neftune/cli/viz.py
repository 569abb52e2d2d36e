"""``neftune viz``: 2-D projections of clean and noisy token embeddings."""

from __future__ import annotations

from pathlib import Path

from . import options as opts
from .common import TRAIN_DEFAULTS as _T
from .common import console, fail, quiet_libraries, user_errors


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
    from ..experiments.projection import VizConfig, run_viz

    cfg = VizConfig(
        model=model, alpha=alpha, length=length, distribution=distribution, data=data, seed=seed, out=str(out)
    )
    try:
        cfg.validate()
        quiet_libraries()
        with console.status("projecting embeddings..."):
            result = run_viz(cfg)
    except user_errors() as exc:  # AnalyzeError is a ValueError
        fail(str(exc))
    dropped = ", ".join(d["word"] if isinstance(d, dict) else str(d) for d in result["dropped"]) or "none"
    console.print(
        f"{len(result['points'])} tokens at alpha {result['alpha']:g}, L={result['length']} "
        f"({result['length_source']}); nearest token changed for {result['n_flipped']}; "
        f"dropped (not one token): {dropped}"
    )
    console.print(f"Written: {out / 'viz.png'}, {out / 'viz.json'}")
