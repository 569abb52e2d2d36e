"""`neftune viz`: 2-D pictures of real token embeddings from a few semantic groups, clean and noisy.

Words that are one token in the model's tokenizer both with and without a leading space
are kept (the rest are listed as dropped, with the reason); their embeddings (the input
embedding's forward output, see :func:`~neftune.experiments.embedding_noise.embedding_table`)
get NEFTune noise at ``alpha`` as tokens of a length-``L`` sequence, through
:func:`neftune.add_noise`. Two projections, side by side:

- PCA fitted on the clean points only, then applied to both: noisy points show where the
  noise moves a token in the clean embedding's main directions.
- t-SNE fitted on clean and noisy points together (fixed seed, perplexity adapted to the
  number of points): neighbourhoods, not distances, are what it preserves.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..finetune.io import write_bytes_atomic, write_json_atomic
from ..finetune.provenance import environment
from ..noise import DISTRIBUTIONS, add_noise, check_alpha, check_choice
from .embedding_noise import (
    AnalyzeError,
    lengths_summary,
    load_embedding_table,
    load_sequences,
    token_geometry,
)
from .nearest import nearest_rows

VIZ_JSON = "viz.json"
VIZ_PNG = "viz.png"
FORMS = ("space", "bare")

#: Semantic groups of common English words (digits are grouped too; tokenizers that split
#: " 7" into a space and a digit drop them, which the result reports).
DEFAULT_GROUPS: dict[str, tuple[str, ...]] = {
    "numbers": ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "7"),
    "colours": ("red", "green", "blue", "yellow", "black", "white", "orange", "purple", "pink"),
    "animals": ("dog", "cat", "horse", "cow", "bird", "fish", "lion", "tiger", "sheep"),
    "countries": ("France", "Germany", "Italy", "Spain", "China", "Japan", "India", "Brazil", "Canada"),
    "days & months": ("Monday", "Tuesday", "Friday", "Sunday", "January", "March", "June", "October"),
    "punctuation": (".", ",", "!", "?", ";", ":", "(", ")", "-"),
}


def single_token_words(
    tokenizer: Any, groups: Mapping[str, Sequence[str]], form: str = "space"
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Words that are one token both as ``"word"`` and ``" word"``, in the chosen ``form``.

    ``form``: "space" (the token of ``" word"``, as inside a sentence) or "bare". Returns
    ``(points, dropped)``: points ``{"group", "word", "text", "token_id"}`` in group order,
    dropped ``{"group", "word", "reason"}``. Duplicates (same token twice) are dropped too.
    """
    check_choice(form, FORMS, "form")
    points, dropped, seen = [], [], set()
    for group, words in groups.items():
        for word in words:
            texts = {"bare": word, "space": " " + word}
            ids = {v: tokenizer.encode(t, add_special_tokens=False) for v, t in texts.items()}
            problems = [f"{texts[v]!r} is {len(ids[v])} tokens" for v in texts if len(ids[v]) != 1]
            if not problems and ids[form][0] in seen:
                problems = ["same token as an earlier word"]
            if problems:
                dropped.append({"group": group, "word": word, "reason": "; ".join(problems)})
                continue
            seen.add(ids[form][0])
            points.append({"group": group, "word": word, "text": texts[form], "token_id": ids[form][0]})
    return points, dropped


def noise_as_in_sequence(
    clean: torch.Tensor,
    alpha: float,
    length: int,
    *,
    distribution: str = "uniform",
    generator: torch.Generator | None = None,
    max_elements: int = 1 << 24,
) -> torch.Tensor:
    """Noisy copies of ``clean`` (P, d): each row noised as one token of a length-``length`` sequence.

    Every point becomes position 0 of its own length-``length`` sequence passed through
    :func:`neftune.add_noise`, so the scale ``alpha / sqrt(length * d)`` is the library's;
    points are processed in chunks of at most ``max_elements`` floats.
    """
    if length < 1:
        raise AnalyzeError(f"length must be >= 1, got {length}")
    points, dim = clean.shape
    rows = max(1, max_elements // (length * dim))
    out = []
    for start in range(0, points, rows):
        block = clean[start : start + rows].float()
        seqs = block.unsqueeze(1).expand(-1, length, -1).contiguous()
        noisy = add_noise(seqs, alpha, distribution=distribution, generator=generator)
        out.append(noisy[:, 0])
    return torch.cat(out)


def tsne_perplexity(n_points: int) -> float:
    """30 (scikit-learn's default) when there are enough points, else (n - 1) / 3, at least 2."""
    return float(min(30.0, max(2.0, (n_points - 1) / 3)))


def project_2d(clean: torch.Tensor, noisy: torch.Tensor, *, seed: int = 0) -> dict[str, Any]:
    """PCA (fit on clean, applied to both) and t-SNE (fit on clean + noisy) coordinates.

    Returns lists of ``[x, y]`` per point: ``pca_clean``, ``pca_noisy``, ``tsne_clean``,
    ``tsne_noisy``; plus ``pca_explained`` (variance ratio of the two components) and
    ``tsne_perplexity``. Needs at least 3 points.
    """
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if clean.shape[0] < 3:
        raise AnalyzeError(f"need at least 3 words to project, got {clean.shape[0]}: add words or groups")
    c = clean.double().numpy()
    n = noisy.double().numpy()
    pca = PCA(n_components=2, random_state=seed).fit(c)
    both = np.concatenate([c, n])
    perplexity = tsne_perplexity(both.shape[0])
    # Exact gradients for the few hundred points this draws: faster than Barnes-Hut at that
    # size and free of its thread pool (which stalls on a busy machine).
    method = "exact" if both.shape[0] <= 1000 else "barnes_hut"
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        random_state=seed,
        method=method,
    )
    emb = tsne.fit_transform(both)
    p = clean.shape[0]
    return {
        "pca_clean": pca.transform(c).tolist(),
        "pca_noisy": pca.transform(n).tolist(),
        "tsne_clean": emb[:p].tolist(),
        "tsne_noisy": emb[p:].tolist(),
        "pca_explained": pca.explained_variance_ratio_.tolist(),
        "tsne_perplexity": perplexity,
    }


@dataclass
class VizConfig:
    """Settings of ``neftune viz``; saved in ``viz.json``. ``length=None``: median length of ``data``."""

    model: str = "smollm2-135m"
    alpha: float = 5.0
    length: int | None = None
    distribution: str = "uniform"
    data: str = "builtin:quick"
    n_sequences: int = 200
    max_length: int = 512
    form: str = "space"
    groups: dict[str, list[str]] | None = None
    seed: int = 0
    out: str = "runs/viz"

    def validate(self) -> None:
        self.alpha = check_alpha(self.alpha, "alpha")
        check_choice(self.distribution, DISTRIBUTIONS, "distribution")
        check_choice(self.form, FORMS, "form")
        if self.length is not None and self.length < 1:
            raise AnalyzeError(f"length must be >= 1 (tokens per sequence), got {self.length}")
        for name in ("n_sequences", "max_length"):
            if getattr(self, name) < 1:
                raise AnalyzeError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.groups is not None and (
            not isinstance(self.groups, Mapping)
            or not all(isinstance(w, str) for ws in self.groups.values() for w in ws)
        ):
            raise AnalyzeError(
                "groups must map a group name to a list of words, e.g. {'colours': ['red', 'blue']}"
            )


def run_viz(cfg: VizConfig) -> dict[str, Any]:
    """Project clean and noisy embeddings of the word groups; write ``viz.png`` and ``viz.json``.

    The JSON holds the config, the length used (and where it came from), every point's
    group, word, token id, coordinates in both projections, noise L2, cosine and the nearest
    token after noise, the dropped words, and versions. Returns the JSON's content.
    """
    cfg.validate()
    started = time.perf_counter()
    table, emb_info, tokenizer = load_embedding_table(cfg.model)
    if cfg.length is None:
        sequences, _ = load_sequences(
            tokenizer, cfg.data, n_sequences=cfg.n_sequences, seed=cfg.seed, max_length=cfg.max_length
        )
        summary = lengths_summary(sequences)
        length, length_source = (
            max(1, round(summary["median"])),
            f"median of {summary['n_sequences']} {cfg.data} sequences",
        )
    else:
        length, length_source = cfg.length, "given"

    groups = {name: list(words) for name, words in (cfg.groups or DEFAULT_GROUPS).items()}
    points, dropped = single_token_words(tokenizer, groups, cfg.form)
    ids = torch.tensor([p["token_id"] for p in points], dtype=torch.long)
    clean = table[ids]
    gen = torch.Generator().manual_seed(cfg.seed)
    noisy = noise_as_in_sequence(clean, cfg.alpha, length, distribution=cfg.distribution, generator=gen)
    coords = project_2d(clean, noisy, seed=cfg.seed)
    geo = token_geometry(clean, noisy)
    nearest_after, _ = nearest_rows(noisy, table)
    for i, point in enumerate(points):
        point.update(
            {
                "noise_l2": float(geo["noise_l2"][i]),
                "cosine": float(geo["cosine"][i]),
                "nearest_after_noise": tokenizer.decode([int(nearest_after[i])]),
                "flipped": bool(nearest_after[i] != ids[i]),
                **{key: coords[key][i] for key in ("pca_clean", "pca_noisy", "tsne_clean", "tsne_noisy")},
            }
        )
    result = {
        "model": cfg.model,
        "config": asdict(cfg),
        "alpha": cfg.alpha,
        "length": length,
        "length_source": length_source,
        "embedding": emb_info,
        "groups": groups,
        "points": points,
        "dropped": dropped,
        "pca_explained": coords["pca_explained"],
        "tsne_perplexity": coords["tsne_perplexity"],
        "n_flipped": sum(p["flipped"] for p in points),
        "token_norm_median": float(clean.norm(dim=1).median()),
        "versions": environment(),
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    out = Path(cfg.out)
    write_json_atomic(out / VIZ_JSON, result)
    from .plots import figure_png, viz_figure  # matplotlib only when a figure is written

    write_bytes_atomic(out / VIZ_PNG, figure_png(viz_figure(result), dpi=110))
    return result


__all__ = [
    "DEFAULT_GROUPS",
    "FORMS",
    "VIZ_JSON",
    "VIZ_PNG",
    "VizConfig",
    "noise_as_in_sequence",
    "project_2d",
    "run_viz",
    "single_token_words",
    "tsne_perplexity",
]
