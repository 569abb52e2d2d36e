"""Every figure neftune draws, from data computed elsewhere: the experiment report's (results dict
and :class:`~.stats.Summary`), the answer lengths of its instruction-following section, and the
``neftune analyze`` / ``viz`` pictures (their result dicts).

matplotlib only through :class:`matplotlib.figure.Figure` (rendered by Agg), never pyplot, so
no global figure state is created or leaked. Each ``*_figure`` function returns a Figure or
None when the results hold nothing to draw; :func:`figure_png` renders one as PNG bytes.
"""

from __future__ import annotations

import contextlib
import io
import math
import statistics
import textwrap
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
    "PAPER_BAND",
    "SETTING_PALETTE",
    "analyze_figure",
    "answer_lengths_figure",
    "curve_series",
    "curve_splits",
    "differences_figure",
    "figure_png",
    "forest_figure",
    "learning_curves_figure",
    "make_figures",
    "metric_means_figure",
    "plain_ticks",
    "setting_colors",
    "shade_paper_band",
    "viz_figure",
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


def _panel_title(m: Any) -> str:
    """A metric panel's title: its label (wrapped at 44 characters, so neighbours do not overlap) and direction."""
    return f"{textwrap.fill(sentence_case(m.label), 44)}\n({DIRECTION_TEXT[m.direction]})"


def plain_ticks(ax: Axes) -> None:
    """Tick labels as plain numbers: no offset ("+1.08e1") and no scientific notation on linear axes."""
    for axis in ("x", "y"):
        with contextlib.suppress(AttributeError):  # a log or categorical axis has no ScalarFormatter
            ax.ticklabel_format(axis=axis, style="plain", useOffset=False)


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
    plain_ticks(ax)


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
    """Every learning curve once, vs optimizer step: training loss with noise on (trainer log) and
    off, then each held-out split's noise-off loss and, where it was measured, accuracy. One colour
    per setting, thin lines per seed, thick line = across-seed mean; a panel only for a curve some
    arm has. None when no arm has any curve. ``curves``: :func:`curve_series` of ``results`` when
    the caller already has it."""
    curves = curve_series(results) if curves is None else curves
    colors = setting_colors(i.setting for i in summary.settings)
    panels: list[tuple[Series, str, str]] = []
    if curves.get(TRAIN_LOSS):
        panels.append((curves[TRAIN_LOSS], "Training loss, noise ON (trainer log)", "loss"))
    if curves.get("loss/train"):
        panels.append((curves["loss/train"], "Training loss, noise OFF", "loss"))
    for split in curve_splits(results):
        for kind in ("loss", "accuracy"):
            if curves.get(f"{kind}/{split}"):
                panels.append((curves[f"{kind}/{split}"], _split_title(kind, split) + ", noise off", kind))
    if not panels:
        return None
    rows, cols = _grid(len(panels), 3)
    fig = Figure(figsize=(4.3 * cols, 3.3 * rows + 0.7), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (series, title, ylabel) in zip(axes, panels):
        _panel(ax, series, colors, title, ylabel, "")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    _legend(fig, summary, colors, [p[0] for p in panels])
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
    ax.set_title(_panel_title(m), fontsize=9.5)
    ax.grid(alpha=0.3)
    ax.margins(x=0.12)
    plain_ticks(ax)


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
        ax.set_title(_panel_title(m), fontsize=9.5)
        ax.grid(alpha=0.3, axis="x")
        plain_ticks(ax)
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    pct = confidence_text(summary.confidence)
    fig.suptitle(
        f"Difference from the baseline, paired by seed, with {pct} CI "
        "(green better, red worse, blue changed, grey within seed noise)",
        fontsize=10.5,
    )
    return fig


_UNTRUNCATED_COLOR = "#6b6b6b"


def forest_figure(summary: Summary, metric: str | None = None) -> Figure | None:
    """The report's opening figure: the primary metric's (or ``metric``'s) difference from the
    baseline per setting, paired by seed and prompt, with its interval (coloured by verdict), the
    band of differences the design could not reliably detect (±the 80%-power detectable effect,
    grey), and, for instruction-following metrics, the same difference without the answers cut at
    the generation cap (hollow). None when no setting has a difference."""
    name = metric or summary.primary_metric
    m = summary.metric(name) if name else None
    if m is None:
        return None
    cells = [c for c in m.cells if not c.is_baseline and c.diff is not None and c.diff.mean is not None]
    if not cells:
        return None
    n = len(cells)
    fig = Figure(figsize=(10.5, 0.62 * n + 1.8), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    pct = confidence_text(summary.confidence)
    band_drawn = cut_drawn = False
    for k, c in enumerate(cells):
        d = c.diff
        assert d is not None and d.mean is not None
        if d.detectable is not None:
            ax.fill_betweenx(
                [k - 0.32, k + 0.32], -d.detectable, d.detectable, color="#d9d9d9", alpha=0.6, lw=0,
                label=None if band_drawn else "± detectable effect (80% power)", zorder=0,
            )  # fmt: skip
            band_drawn = True
        color = _VERDICT_COLORS.get(c.verdict, _NEUTRAL)
        if d.lo is not None and d.hi is not None:
            ax.errorbar(
                d.mean,
                k,
                xerr=[[d.mean - d.lo], [d.hi - d.mean]],
                fmt="o",
                color=color,
                capsize=4,
                lw=2.2,
                ms=7,
                zorder=3,
            )
        else:
            ax.plot(d.mean, k, "o", color=color, ms=7, zorder=3)
        u = c.diff_untruncated
        if u is not None and u.mean is not None and u.lo is not None and u.hi is not None:
            ax.errorbar(
                u.mean, k + 0.27, xerr=[[u.mean - u.lo], [u.hi - u.mean]], fmt="o", mfc="white",
                color=_UNTRUNCATED_COLOR, capsize=3, lw=1.2, ms=5, zorder=2,
                label=None if cut_drawn else "without answers cut at the cap",
            )  # fmt: skip
            cut_drawn = True
    ax.axvline(0, color="#444444", lw=1, ls=":")
    ax.set_yticks(range(n), [c.label for c in cells])
    ax.set_ylim(n - 0.45, -0.6)
    ax.set_xlabel(f"difference from training without noise: {m.label} ({DIRECTION_TEXT[m.direction]})")
    ax.grid(alpha=0.3, axis="x")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8))
    plain_ticks(ax)
    handles, names = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color=_NEUTRAL, marker="o", lw=2))
    names.append(f"difference, {pct} CI (green better, red worse, grey within noise)")
    fig.legend(handles, names, loc="outside lower center", ncol=len(names), fontsize=8.5, frameon=False)
    return fig


def make_figures(results: Mapping[str, Any], summary: Summary) -> dict[str, Figure]:
    """All figures that have something to show, by file stem."""
    curves = curve_series(results)
    candidates = {
        "forest": forest_figure(summary),
        "learning_curves": learning_curves_figure(results, summary, curves),
        "metric_means": metric_means_figure(summary),
        "differences": differences_figure(summary),
    }
    return {name: fig for name, fig in candidates.items() if fig is not None}


# --------------------------------------------------------------------------- answer lengths (instruction following)

#: Prompt groups of the answer-length figure, in panel order, and what their prompts are.
_PROMPT_GROUPS = {"ifeval": "instruction prompts", "tasks": "task prompts"}


def answer_lengths_figure(
    lengths: Mapping[str, Mapping[Setting, Sequence[int]]], labels: Mapping[Setting, str]
) -> Figure | None:
    """Box plots of answer lengths (characters, all seeds pooled) per setting, one panel per prompt
    group (``"ifeval"``, ``"tasks"``: group -> setting -> lengths); None when no group has answers."""
    groups = [g for g in _PROMPT_GROUPS if lengths.get(g)]
    if not groups:
        return None
    colors = setting_colors(labels)
    fig = Figure(figsize=(5.2 * len(groups), 3.6), layout="constrained")
    for i, group in enumerate(groups, start=1):
        ax = fig.add_subplot(1, len(groups), i)
        per = lengths[group]
        settings = sorted(per, key=Setting.sort_key)
        parts = ax.boxplot(
            [per[s] for s in settings],
            patch_artist=True,
            showfliers=True,
            medianprops={"color": "black", "linewidth": 1.8},
        )
        for patch, s in zip(parts["boxes"], settings):
            patch.set_facecolor(BASELINE_COLOR if s.is_no_noise else colors.get(s, "#999999"))
            patch.set_alpha(0.55)
        ax.set_xticks(
            range(1, len(settings) + 1), [labels.get(s, str(s.alpha)) for s in settings], rotation=20
        )
        ax.set_ylabel("answer length (characters)")
        ax.set_title(f"Answers to {_PROMPT_GROUPS[group]} (all seeds)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        plain_ticks(ax)
    return fig


# --------------------------------------------------------------------------- neftune analyze

#: The alphas the paper used (5, 10, 15): shaded in the analyze figure.
PAPER_BAND = (5.0, 15.0)


def shade_paper_band(ax: Axes, label: bool = True) -> None:
    """Shade the paper's alpha range (5-15) on an axis whose x is alpha."""
    ax.axvspan(
        *PAPER_BAND, color="#f4d35e", alpha=0.25, lw=0, label="paper's α range (5–15)" if label else None
    )


def _noise_size_panel(ax: Axes, rows: Sequence[Mapping[str, Any]], vocab: Mapping[str, Any]) -> None:
    alpha = [r["alpha"] for r in rows]
    shade_paper_band(ax)
    ax.plot(alpha, [r["noise_l2_mean"] for r in rows], "o-", label="measured mean ‖n_t‖")
    ax.plot(alpha, [r["noise_l2_expected_rms"] for r in rows], "k--", lw=1, label="expected √(α² Var(ε) / L)")
    ax.axhline(vocab["clean_token_norm_median"], color="C2", ls=":", label="median clean ‖x_t‖")
    ax.axhline(
        vocab["half_gap_l2_median"], color="C3", ls=":", label="median ½ distance to nearest other token"
    )
    ax.set_ylabel("noise L2 per token")
    ax.set_title("Noise size per token")
    ax.set_ylim(0, 1.15 * max(vocab["clean_token_norm_median"], *(r["noise_l2_mean"] for r in rows)))
    ax.legend(fontsize=8, loc="lower right")


def _direction_panel(ax: Axes, rows: Sequence[Mapping[str, Any]]) -> None:
    alpha = [r["alpha"] for r in rows]
    shade_paper_band(ax, label=False)
    ax.plot(alpha, [r["cosine_mean"] for r in rows], "o-", label="mean")
    ax.plot(alpha, [r["cosine_p5"] for r in rows], "s--", label="5th percentile")
    ax.set_ylabel("cosine(clean, noisy)")
    ax.set_title("Direction kept")
    ax.legend(fontsize=8, loc="lower left")


def _snr_panel(ax: Axes, rows: Sequence[Mapping[str, Any]]) -> None:
    shade_paper_band(ax, label=False)
    pts = [(r["alpha"], r["snr_db_median"]) for r in rows if r["snr_db_median"] is not None]
    if pts:
        ax.plot(*zip(*pts), "o-", label="median ‖x_t‖/‖n_t‖")
    ax.axhline(0, color="k", lw=0.8, ls=":", label="0 dB: noise as large as the token")
    ax.set_ylabel("signal-to-noise (dB, 20 log10)")
    ax.set_xlabel("alpha")
    ax.set_title("Signal-to-noise ratio")
    ax.legend(fontsize=8, loc="upper right")


def _flip_panel(ax: Axes, rows: Sequence[Mapping[str, Any]]) -> None:
    alpha = [r["alpha"] for r in rows]
    shade_paper_band(ax, label=False)
    flips_l2 = [100 * r["flip_rate_l2"] for r in rows]
    ax.plot(alpha, flips_l2, "o-", label="nearest token changed (L2)")
    ax.plot(alpha, [100 * r["flip_rate_cos"] for r in rows], "s--", label="nearest token changed (cosine)")
    for r, y in zip(rows, flips_l2):
        ax.annotate(
            str(r["n_flips_l2"]), (r["alpha"], y), textcoords="offset points", xytext=(0, 7),
            ha="center", fontsize=7,
        )  # fmt: skip
    top = max(1.0, 1.3 * max(flips_l2 + [100 * r["flip_rate_cos"] for r in rows]))
    ax.set_ylim(-0.03 * top, top)
    ax.set_ylabel("% of tokens whose nearest token changed")
    ax.set_xlabel("alpha")
    ax.set_title(f"Nearest-token flip rate (labels: flipped tokens of {rows[0]['n_tokens']})")
    twin = ax.twinx()
    twin.plot(alpha, [100 * r["flip_possible_rate"] for r in rows], ":", color="gray")
    twin.set_ylim(-3, 105)
    twin.set_ylabel("% with noise ≥ ½ gap (flip possible)", color="gray")
    twin.tick_params(axis="y", colors="gray")
    ax.plot([], [], ":", color="gray", label="noise ≥ ½ gap: flip possible (right axis)")
    ax.legend(fontsize=8, loc="upper left")


def analyze_figure(result: Mapping[str, Any]) -> Figure:
    """2x2 panels vs alpha of a ``neftune analyze`` result (:func:`~.embedding_noise.run_analyze`'s
    dict): noise L2, cosine kept, signal-to-noise (dB) and nearest-token flip rate."""
    rows = result["metrics"]
    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    _noise_size_panel(axes[0, 0], rows, result["vocabulary"])
    _direction_panel(axes[0, 1], rows)
    _snr_panel(axes[1, 0], rows)
    _flip_panel(axes[1, 1], rows)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.text(
            sum(PAPER_BAND) / 2, 0.98, "paper", transform=ax.get_xaxis_transform(), ha="center", va="top",
            fontsize=8, color="#8a6d00",
        )  # fmt: skip
    lengths = result["lengths"]
    fig.suptitle(
        f"NEFTune noise on {result['model']} input embeddings — {result['config']['distribution']} noise, "
        f"{lengths['n_sequences']} sequences, {lengths['n_tokens']} tokens, median length {lengths['median']:g}",
        fontsize=11,
    )
    return fig


# --------------------------------------------------------------------------- neftune viz


def _projection_panel(
    ax: Axes, points: Sequence[Mapping[str, Any]], kind: str, colours: Mapping[str, str], title: str
) -> None:
    """Clean points (filled), noisy copies (hollow) and clean -> noisy arrows of one projection."""
    for group, colour in colours.items():
        members = [p for p in points if p["group"] == group]
        c = [p[f"{kind}_clean"] for p in members]
        n = [p[f"{kind}_noisy"] for p in members]
        ax.quiver(
            [x for x, _ in c], [y for _, y in c], [b[0] - a[0] for a, b in zip(c, n)],
            [b[1] - a[1] for a, b in zip(c, n)], angles="xy", scale_units="xy", scale=1, color=colour,
            alpha=0.45, width=0.0025, headwidth=4, headlength=5,
        )  # fmt: skip
        ax.scatter(*zip(*c), s=36, color=colour, edgecolor="white", linewidth=0.5, zorder=3)
        ax.scatter(*zip(*n), s=36, facecolor="none", edgecolor=colour, linewidth=1.2, zorder=3)
        for p, (x, y) in zip(members, c):
            word = p["text"].strip() or repr(p["text"])
            symbol = not any(ch.isalnum() for ch in word)  # punctuation: larger, bold
            ax.annotate(
                word, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=11 if symbol else 7.5,
                fontweight="bold" if symbol else "normal", color=colour, zorder=4,
            )  # fmt: skip
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def viz_figure(result: Mapping[str, Any]) -> Figure:
    """PCA and t-SNE panels side by side of a ``neftune viz`` result (:func:`~.projection.run_viz`'s dict)."""
    points = result["points"]
    groups = list(dict.fromkeys(p["group"] for p in points))
    colours = {g: f"C{i % 10}" for i, g in enumerate(groups)}
    fig = Figure(figsize=(17, 8), layout="constrained")
    axes = fig.subplots(1, 2)
    explained = sum(result["pca_explained"]) * 100
    titles = {
        "pca": f"PCA fitted on clean points ({explained:.0f}% of their variance), noisy points projected",
        "tsne": f"t-SNE of clean + noisy points together (perplexity {result['tsne_perplexity']:g})",
    }
    for ax, kind in zip(axes, ("pca", "tsne")):
        _projection_panel(ax, points, kind, colours, titles[kind])
    handles = [Line2D([], [], marker="o", ls="", color=colours[g], label=g) for g in groups]
    handles += [
        Line2D([], [], marker="o", ls="", color="gray", label="clean token"),
        Line2D([], [], marker="o", ls="", markerfacecolor="none", color="gray", label="noisy copy"),
        Line2D([], [], ls="-", color="gray", alpha=0.6, label="clean → noisy"),
    ]
    fig.legend(handles=handles, loc="outside right center", fontsize=9, frameon=False)
    noise = statistics.median(p["noise_l2"] for p in points)
    cosine = statistics.median(p["cosine"] for p in points)
    fig.suptitle(
        f"{result['model']}: token embeddings, clean vs NEFTune noise at α = {result['alpha']:g} "
        f"for a length-{result['length']} sequence ({result['config']['distribution']})\n"
        f"median ‖noise‖ {noise:.3g} vs median ‖token‖ {result['token_norm_median']:.3g}, "
        f"median cosine(clean, noisy) {cosine:.3f}; nearest vocabulary token changed for "
        f"{result['n_flipped']} of {len(points)} words",
        fontsize=12,
    )
    return fig
