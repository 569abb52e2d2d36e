"""Figures of a compare / sweep experiment, from its results dict and :class:`~.stats.Summary`.

matplotlib only through :class:`matplotlib.figure.Figure` (rendered by Agg), never pyplot, so
no global figure state is created or leaked. Each ``*_figure`` function returns a Figure or
None when the results hold nothing to draw; :func:`figure_png` renders one as PNG bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .labels import DIRECTION_TEXT, confidence_text, metric_label, sentence_case
from .stats import BETTER, HIGHER, LOWER, WORSE, MetricSummary, Setting, Summary

__all__ = [
    "BASELINE_COLOR",
    "DPI",
    "SETTING_PALETTE",
    "curve_series",
    "curve_splits",
    "differences_figure",
    "figure_png",
    "heldout_curves_figure",
    "learning_curves_figure",
    "make_figures",
    "metric_means_figure",
    "setting_colors",
]

DPI = 110
#: The no-noise baseline is always drawn in this dark grey.
BASELINE_COLOR = "#3a3a3a"
#: Okabe-Ito colour-blind-safe colours (yellow left out: too pale on white), then tab10 extras.
SETTING_PALETTE = (
    "#E69F00",
    "#0072B2",
    "#009E73",
    "#D55E00",
    "#56B4E9",
    "#CC79A7",
    "#8C564B",
    "#882255",
    "#BCBD22",
    "#17BECF",
)
_VERDICT_COLORS = {BETTER: "#2E8B3D", WORSE: "#C0392B", HIGHER: "#3D5A98", LOWER: "#3D5A98"}
_NEUTRAL = "#9A9A9A"
_PREFERRED_SPLITS = ("eval_heldout_templates", "eval", "eval_heldout_families", "eval_seen_templates")


# --------------------------------------------------------------------------- output


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """PNG bytes of ``fig`` rendered by Agg at ``dpi``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


# --------------------------------------------------------------------------- colours and data


def setting_colors(settings: Iterable[Setting]) -> dict[Setting, str]:
    """One colour per setting: the baseline dark grey, the others from :data:`SETTING_PALETTE` in order."""
    settings = list(settings)
    out = {}
    noisy = [s for s in settings if not s.is_no_noise]
    for s in settings:
        if s.is_no_noise:
            out[s] = BASELINE_COLOR
    for i, s in enumerate(sorted(noisy, key=Setting.sort_key)):
        out[s] = SETTING_PALETTE[i % len(SETTING_PALETTE)]
    return out


Series = dict[Setting, dict[int, list[tuple[float, float]]]]  # setting -> seed -> [(step, value)]


def _complete_arms(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [a for a in results.get("arms") or [] if isinstance(a, Mapping) and a.get("status") == "complete"]


def _finite_point(step: Any, value: Any) -> tuple[float, float] | None:
    try:
        x, y = float(step), float(value)
    except (TypeError, ValueError):
        return None
    return (x, y) if math.isfinite(x) and math.isfinite(y) else None


#: Key of the trainer-logged training loss (noise on) in :func:`curve_series`.
TRAIN_LOSS = "train_loss"


def curve_series(results: Mapping[str, Any]) -> dict[str, Series]:
    """Every curve of the complete arms, in one pass: :data:`TRAIN_LOSS` (trainer log, noise on) and
    each noise-off eval key (``loss/train``, ``loss/<split>``, ``accuracy/<split>``). Finite points
    only; a key or setting without any is absent."""
    out: dict[str, Series] = {}
    for arm in _complete_arms(results):
        curves = arm.get("curves") or {}
        found: dict[str, list[tuple[float, float]]] = {}
        for item in curves.get(TRAIN_LOSS) or []:
            p = _finite_point(*item[:2]) if isinstance(item, Sequence) and len(item) >= 2 else None
            if p:
                found.setdefault(TRAIN_LOSS, []).append(p)
        for point in curves.get("eval") or []:
            if not isinstance(point, Mapping):
                continue
            for key, value in point.items():
                p = _finite_point(point.get("step"), value) if key != "step" else None
                if p:
                    found.setdefault(str(key), []).append(p)
        if found:
            setting = Setting.from_mapping(arm["setting"])
            for key, pts in found.items():
                out.setdefault(key, {}).setdefault(setting, {})[arm["seed"]] = sorted(pts)
    return out


def curve_splits(results: Mapping[str, Any]) -> list[str]:
    """Held-out split names with a noise-off curve (``loss/<split>`` or ``accuracy/<split>``), preferred first."""
    splits = set()
    for arm in _complete_arms(results):
        for point in (arm.get("curves") or {}).get("eval") or []:
            for key in point if isinstance(point, Mapping) else ():
                kind, _, split = str(key).partition("/")
                if kind in ("loss", "accuracy") and split and split != "train":
                    splits.add(split)
    rank = {s: i for i, s in enumerate(_PREFERRED_SPLITS)}
    return sorted(splits, key=lambda s: (rank.get(s, len(rank)), s))


def _mean_curve(per_seed: Mapping[int, list[tuple[float, float]]]) -> tuple[list[float], list[float]]:
    """Across-seed mean at the steps every seed has."""
    common = set.intersection(*({x for x, _ in pts} for pts in per_seed.values()))
    steps = sorted(common)
    lookup = [dict(pts) for pts in per_seed.values()]
    return steps, [sum(d[s] for d in lookup) / len(lookup) for s in steps]


# --------------------------------------------------------------------------- learning curves


def _draw_series(ax: Axes, series: Series, colors: Mapping[Setting, str]) -> None:
    for setting in sorted(series, key=Setting.sort_key):
        per_seed = series[setting]
        color = colors.get(setting, _NEUTRAL)
        if len(per_seed) > 1:
            for pts in per_seed.values():
                ax.plot([x for x, _ in pts], [y for _, y in pts], color=color, lw=0.8, alpha=0.35)
        steps, mean = _mean_curve(per_seed)
        ax.plot(steps, mean, color=color, lw=2.4, marker="o" if len(steps) <= 12 else None, ms=3.5)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666666", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _panel(
    ax: Axes, series: Series, colors: Mapping[Setting, str], title: str, ylabel: str, missing: str
) -> None:
    ax.set_title(title, fontsize=11)
    if not series:
        _empty(ax, missing)
        return
    _draw_series(ax, series, colors)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _legend(fig: Figure, summary: Summary, colors: Mapping[Setting, str], series: Iterable[Series]) -> None:
    present = set().union(*(set(s) for s in series))
    handles, names = [], []
    for info in summary.settings:
        if info.setting in present:
            handles.append(Line2D([], [], color=colors[info.setting], lw=2.4))
            names.append(f"{info.label} (mean of {len(info.seeds_complete)})")
    handles.append(Line2D([], [], color=_NEUTRAL, lw=0.8, alpha=0.6))
    names.append("one seed")
    fig.legend(handles, names, loc="outside upper center", ncol=min(len(names), 6), frameon=False, fontsize=9)


def _split_title(kind: str, split: str | None) -> str:
    """``Held-out loss`` for the user-data split ``eval``, else ``Accuracy on held-out templates``."""
    if split in (None, "eval"):
        return f"Held-out {kind}"
    return metric_label(f"{kind}/{split}").capitalize()


def learning_curves_figure(
    results: Mapping[str, Any], summary: Summary, curves: Mapping[str, Series] | None = None
) -> Figure | None:
    """Four panels vs optimizer step: training loss with noise on (trainer log), training loss with
    noise off, held-out loss and held-out accuracy (preferred held-out split); one colour per setting,
    thin lines per seed, thick line = across-seed mean. None when no arm has any curve.
    ``curves``: :func:`curve_series` of ``results`` when the caller already has it."""
    curves = curve_series(results) if curves is None else curves
    colors = setting_colors(i.setting for i in summary.settings)
    splits = curve_splits(results)
    loss_split = next((s for s in splits if curves.get(f"loss/{s}")), None)
    acc_split = next((s for s in splits if curves.get(f"accuracy/{s}")), None)
    series = [
        curves.get(TRAIN_LOSS, {}),
        curves.get("loss/train", {}),
        curves.get(f"loss/{loss_split}", {}) if loss_split else {},
        curves.get(f"accuracy/{acc_split}", {}) if acc_split else {},
    ]
    if not any(series):
        return None
    fig = Figure(figsize=(12, 8), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    _panel(
        axes[0], series[0], colors, "Training loss, noise ON (trainer log)", "loss", "no trainer loss logged"
    )
    _panel(
        axes[1], series[1], colors, "Training loss, noise OFF", "loss", "no noise-off curve (curve_every 0?)"
    )
    _panel(axes[2], series[2], colors, _split_title("loss", loss_split), "loss", "no held-out loss curve")
    _panel(
        axes[3],
        series[3],
        colors,
        _split_title("accuracy", acc_split),
        "accuracy",
        "no accuracy curve (user data has no answers)",
    )
    _legend(fig, summary, colors, series)
    return fig


def heldout_curves_figure(
    results: Mapping[str, Any], summary: Summary, curves: Mapping[str, Series] | None = None
) -> Figure | None:
    """Loss (top row) and accuracy (bottom row) for every held-out split; None with fewer than 2 splits.
    ``curves``: :func:`curve_series` of ``results`` when the caller already has it."""
    splits = curve_splits(results)
    if len(splits) < 2:
        return None
    curves = curve_series(results) if curves is None else curves
    colors = setting_colors(i.setting for i in summary.settings)
    fig = Figure(figsize=(4.2 * len(splits), 7), layout="constrained")
    axes = fig.subplots(2, len(splits), squeeze=False)
    all_series = []
    for j, split in enumerate(splits):
        for i, kind in enumerate(("loss", "accuracy")):
            s = curves.get(f"{kind}/{split}", {})
            all_series.append(s)
            _panel(axes[i][j], s, colors, _split_title(kind, split), kind, f"no {kind} on this split")
    _legend(fig, summary, colors, all_series)
    return fig


# --------------------------------------------------------------------------- per-metric summaries


def _grid(n: int, cols: int = 4) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def _x_positions(summary: Summary) -> tuple[dict[Setting, float], list[str] | None]:
    """Alpha on the x axis for a plain alpha compare; category index otherwise (with tick labels)."""
    settings = [i.setting for i in summary.settings]
    if summary.only_alpha_varies:
        return {s: s.alpha for s in settings}, None
    return {s: float(i) for i, s in enumerate(settings)}, [summary.labels[s] for s in settings]


def _mean_panel(
    ax: Axes, m: MetricSummary, xs: Mapping[Setting, float], colors: Mapping[Setting, str]
) -> None:
    span = (max(xs.values()) - min(xs.values())) or 1.0
    base = next((c for c in m.cells if c.is_baseline), None)
    if base is not None:
        ax.axhline(base.estimate.mean, color=BASELINE_COLOR, lw=1, ls="--", zorder=1)
        if base.estimate.lo is not None:
            ax.axhspan(base.estimate.lo, base.estimate.hi, color=BASELINE_COLOR, alpha=0.08, lw=0, zorder=0)
    for c in m.cells:
        x, color = xs[c.setting], colors.get(c.setting, _NEUTRAL)
        seeds = sorted(c.values)
        for k, seed in enumerate(seeds):  # per-seed values, spread a little sideways
            dx = (k - (len(seeds) - 1) / 2) * 0.018 * span
            ax.plot(x + 0.04 * span + dx, c.values[seed], "o", ms=3, color=color, alpha=0.45, zorder=2)
        e = c.estimate
        if e.lo is not None:
            ax.errorbar(
                x, e.mean, yerr=[[e.mean - e.lo], [e.hi - e.mean]], color=color, capsize=4, lw=1.6, zorder=3
            )
        distinct = c.diff is not None and c.diff.distinguishable
        ax.plot(x, e.mean, "D" if c.is_baseline else "o", ms=7, color=color, zorder=4)
        if distinct:
            ax.annotate("*", (x, e.hi if e.hi is not None else e.mean), ha="center", va="bottom", fontsize=14)
    ax.set_title(f"{sentence_case(m.label)}\n({DIRECTION_TEXT[m.direction]})", fontsize=9.5)
    ax.grid(alpha=0.3)
    ax.margins(x=0.12)


def metric_means_figure(summary: Summary) -> Figure | None:
    """One panel per metric: each setting's mean (big marker) with its CI, per-seed values (small
    dots), the baseline mean dashed with its CI shaded; ``*`` = distinguishable from the baseline."""
    chosen = list(summary.metrics)
    if not chosen:
        return None
    rows, cols = _grid(len(chosen))
    fig = Figure(figsize=(3.6 * cols, 3.1 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    xs, ticklabels = _x_positions(summary)
    colors = setting_colors(i.setting for i in summary.settings)
    for ax, m in zip(axes, chosen):
        _mean_panel(ax, m, xs, colors)
        if ticklabels is None:
            ax.set_xticks(sorted(set(xs.values())))
            ax.set_xlabel("alpha")
        else:  # categorical settings: colours identify them (legend), tick labels would not fit
            ax.set_xticks(list(xs.values()), [""] * len(xs))
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    if ticklabels is not None:
        handles = [
            Line2D([], [], color=colors[i.setting], marker="D" if i.is_baseline else "o", ls="", ms=7)
            for i in summary.settings
        ]
        fig.legend(handles, ticklabels, loc="outside lower center", ncol=min(5, len(handles)), frameon=False)
    pct = confidence_text(summary.confidence)
    fig.suptitle(
        f"Mean per setting with {pct} CI across seeds (dots: single seeds; dashed: baseline; "
        "* distinguishable from baseline)",
        fontsize=10.5,
    )
    return fig


def differences_figure(summary: Summary) -> Figure | None:
    """One panel per metric: each setting's difference from the baseline, paired by seed, with its CI.

    Green = better, red = worse, blue = descriptive change, grey = within seed noise; an interval
    crossing the dotted zero line is not distinguishable from seed noise. None when nothing was compared.
    """
    chosen = [m for m in summary.metrics if m.compared]
    if not chosen:
        return None
    rows, cols = _grid(len(chosen))
    shown = {c.setting for m in chosen for c in m.compared}
    settings = [i.setting for i in summary.settings if i.setting in shown]  # one shared y axis
    ypos = {s: k for k, s in enumerate(settings)}
    fig = Figure(figsize=(3.3 * cols + 1.5, (0.42 * len(settings) + 1.5) * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    axes[0].set_yticks(range(len(settings)), [summary.labels[s] for s in settings])
    axes[0].set_ylim(len(settings) - 0.4, -0.6)  # first setting on top
    for ax, m in zip(axes, chosen):
        for c in m.compared:
            d = c.diff
            assert d is not None and d.mean is not None and d.lo is not None and d.hi is not None
            color = _VERDICT_COLORS.get(c.verdict, _NEUTRAL)
            ax.errorbar(
                d.mean,
                ypos[c.setting],
                xerr=[[d.mean - d.lo], [d.hi - d.mean]],
                fmt="o",
                color=color,
                capsize=3,
                lw=1.8,
            )
        ax.axvline(0, color="#555555", lw=1, ls=":")
        ax.tick_params(axis="y", labelsize=8.5)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.set_title(f"{sentence_case(m.label)}\n({DIRECTION_TEXT[m.direction]})", fontsize=9.5)
        ax.grid(alpha=0.3, axis="x")
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    pct = confidence_text(summary.confidence)
    fig.suptitle(
        f"Difference from the baseline, paired by seed, with {pct} CI "
        "(green better, red worse, blue changed, grey within seed noise)",
        fontsize=10.5,
    )
    return fig


def make_figures(results: Mapping[str, Any], summary: Summary) -> dict[str, Figure]:
    """All figures that have something to show, by file stem."""
    curves = curve_series(results)
    candidates = {
        "learning_curves": learning_curves_figure(results, summary, curves),
        "heldout_curves": heldout_curves_figure(results, summary, curves),
        "metric_means": metric_means_figure(summary),
        "differences": differences_figure(summary),
    }
    return {name: fig for name, fig in candidates.items() if fig is not None}
