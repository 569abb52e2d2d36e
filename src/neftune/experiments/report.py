"""The experiment report: ``DIR/results.json`` -> ``DIR/report/`` (HTML, Markdown, PNGs, summary JSON).

:func:`build_report` is the entry point (``neftune report DIR`` calls it). This module gathers
what the report shows as display strings; the jinja2 templates in ``templates/`` lay it out
(:mod:`.render`). The HTML is self-contained: inline CSS, PNGs embedded as base64 data URIs,
no JavaScript, no external URL. Every file is written atomically. Works on partial results
(status ``running``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..finetune.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from .answers import load_experiment_answers
from .findings import interval_method, summary_to_dict
from .formatting import fmt_estimate, fmt_p, fmt_seconds, fmt_value, two_digit_decimals
from .informative import not_informative_reasons
from .instruction_report import (
    InstructionSection,
    instruction_section,
    section_dict,
    section_view,
)
from .labels import DIRECTION_TEXT, confidence_text, metric_label, sentence_case, setting_text
from .plots import answer_lengths_figure, figure_png, make_figures
from .render import png_data_uri, render, stylesheet
from .stats import (
    BASELINE,
    BETTER,
    HIGHER,
    LOWER,
    NO_DIFFERENCE,
    RESULTS_SCHEMA,
    WORSE,
    MetricSummary,
    PairedDifference,
    Setting,
    Summary,
    summarize,
)

__all__ = ["ReportError", "build_report", "load_results", "render_html", "render_markdown"]

REPORT_DIR = "report"
#: Every file :func:`build_report` may write into ``report/``: what ``--overwrite`` may remove there.
REPORT_FILES = (
    "report.html",
    "summary.md",
    "summary.json",
    "learning_curves.png",
    "heldout_curves.png",
    "metric_means.png",
    "differences.png",
    "answer_lengths.png",
)

_FIGURE_TEXT = {
    "forest": (
        "The primary metric, each setting minus training without noise",
        "Dot and bar: the difference paired by seed and prompt with its confidence interval (green better, "
        "red worse, grey within noise). Grey band: ± the smallest difference this design detects with 80% "
        "power; a difference inside it can be missed. Hollow, for instruction following: the same difference "
        "over the prompts whose answers neither arm cut at the generation cap.",
    ),
    "learning_curves": (
        "Learning curves",
        "One colour per setting; thin lines are single seeds, the thick line their mean. Training loss "
        "with noise ON is what the trainer logged (noise included, so it is higher with more noise); the "
        "noise-OFF training loss and the held-out curves are measured with the noise switched off.",
    ),
    "metric_means": (
        "Mean of every metric per setting",
        "Big markers: across-seed mean with its confidence interval; small dots: single seeds; dashed line "
        "and grey band: the baseline's mean and interval; *: difference from the baseline distinguishable "
        "from noise.",
    ),
    "answer_lengths": (
        "Answer lengths per setting",
        "Box plots of the answers' lengths in characters, all seeds pooled: box from the lower to the upper "
        "quartile, black line at the median, whiskers to 1.5 interquartile ranges, dots beyond.",
    ),
    "differences": (
        "Difference from the baseline, every metric",
        "Each setting minus the baseline on the same seed (and prompt, for metrics scored per answer), mean "
        "and confidence interval. An interval that crosses the dotted zero line is within noise.",
    ),
}
_SIGNATURE_CLASS = {"seen": "s-seen", "partly seen": "s-partly", "opposite": "s-opposite"}
_VERDICT_CLASS = {
    BETTER: "v-better",
    WORSE: "v-worse",
    HIGHER: "v-higher",
    LOWER: "v-lower",
    NO_DIFFERENCE: "v-nd",
    BASELINE: "v-baseline",
}


class ReportError(ValueError):
    """``results.json`` is missing, unreadable or not in the ``neftune.results/1`` schema."""


# --------------------------------------------------------------------------- input


def load_results(folder: str | Path) -> dict[str, Any]:
    """Read and check ``folder/results.json``; raises :class:`ReportError` saying what is wrong."""
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise ReportError(
            f"{path} not found: pass the folder given to `neftune compare/sweep --out`, "
            "or run the experiment first"
        )
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(
            f"{path} is not readable JSON ({exc}); re-run the experiment to rewrite it"
        ) from exc
    if not isinstance(results, dict):
        raise ReportError(f"{path} must hold a JSON object, got {type(results).__name__}")
    if results.get("schema") != RESULTS_SCHEMA:
        raise ReportError(
            f"{path} has schema {results.get('schema')!r}; this report reads {RESULTS_SCHEMA!r}"
        )
    if not isinstance(results.get("arms"), list):
        raise ReportError(f"{path}: 'arms' must be a list of arms")
    return results


def _extra_images(folder: Path) -> list[tuple[str, Path]]:
    """Optional figures from ``neftune analyze`` / ``viz`` in the same experiment folder."""
    found = []
    analyze = folder / "analyze" / "analyze.png"
    if analyze.is_file():
        found.append(("Noise on the real token embeddings (neftune analyze)", analyze))
    viz = folder / "viz"
    if viz.is_dir():
        found += [(f"Embedding projection (neftune viz): {p.stem}", p) for p in sorted(viz.glob("*.png"))]
    return found


# --------------------------------------------------------------------------- shared table content


def _diff_text(d: PairedDifference | None) -> str:
    if d is None or d.mean is None:
        return "–"
    return fmt_estimate(d.mean, d.lo, d.hi, signed=True)


def _detectable_text(d: PairedDifference | None) -> str:
    """``±0.051``: the effect detectable with 80% power, to 2 significant digits."""
    if d is None or d.detectable is None:
        return "–"
    return "±" + fmt_value(d.detectable, two_digit_decimals(d.detectable))


def _metric_rows(m: MetricSummary) -> list[dict[str, Any]]:
    """One metric table's rows: display strings of setting, seeds, mean [CI], diff [CI], detectable
    effect, p, verdict (and, for instruction following, the difference without cut answers), the
    verdict's CSS class and ``is_baseline``."""
    rows = []
    for c in m.cells:
        e = c.estimate
        u = c.diff_untruncated
        rows.append(
            {
                "setting": c.label,
                "seeds": str(e.n),
                "mean": fmt_estimate(e.mean, e.lo, e.hi),
                "diff": "–" if c.is_baseline else _diff_text(c.diff),
                "detectable": "–" if c.is_baseline else _detectable_text(c.diff),
                "p": "–" if c.is_baseline or c.diff is None else fmt_p(c.diff.p),
                "verdict": c.verdict,
                "verdict_class": _VERDICT_CLASS.get(c.verdict, "v-na"),
                "untruncated": "" if u is None else _diff_text(u),
                "verdict_untruncated": c.verdict_untruncated or "",
                "untruncated_class": _VERDICT_CLASS.get(c.verdict_untruncated or "", "v-na"),
                "is_baseline": c.is_baseline,
            }
        )
    return rows


#: Columns of the compact table, in order of preference (the primary metric comes first).
_GLANCE = (
    "ifeval/prompt_strict",
    "ifeval/prompt_strict/heldout_types",
    "ifeval/instruction_strict",
    "length_chars/ifeval",
    "accuracy/eval_heldout_families",
    "accuracy/eval_heldout_templates",
    "length_chars",
    "loss/train",
    "rouge_l_train",
)
_GLANCE_COLUMNS = 5


def _short_label(name: str) -> str:
    """A column header: the metric's label, shortened where it is long."""
    short = {
        "ifeval/prompt_strict": "all instructions followed (strict)",
        "ifeval/prompt_strict/heldout_types": "all followed, held-out types",
        "ifeval/instruction_strict": "instructions followed (strict)",
        "length_chars/ifeval": "length of instruction answers (chars)",
        "loss/train": "training loss, noise off",
        "rouge_l_train": "ROUGE-L vs training answers",
    }
    return short.get(name, metric_label(name))


def _glance(summary: Summary) -> dict[str, Any] | None:
    """The compact table: one row per noisy setting, one column per key metric (the primary first):
    the paired difference, its interval, the verdict as a chip and, when no difference was found,
    the effect that could have been detected."""
    names = [summary.primary_metric] if summary.primary_metric else []
    names += [n for n in _GLANCE if n not in names]
    metrics = [m for m in (summary.metric(n) for n in names) if m is not None and m.compared][
        :_GLANCE_COLUMNS
    ]
    if not metrics:
        return None
    settings = [i for i in summary.settings if not i.is_baseline]
    rows = []
    for info in settings:
        cells = []
        for m in metrics:
            c = m.cell(info.setting)
            d = c.diff if c is not None else None
            if c is None or d is None or d.mean is None:
                cells.append(None)
                continue
            mean, _, ci = _diff_text(d).partition(" ")
            u = c.diff_untruncated
            cells.append(
                {
                    "mean": mean,
                    "ci": ci,
                    "verdict": c.verdict,
                    "css": _VERDICT_CLASS.get(c.verdict, "v-na"),
                    "detectable": _detectable_text(d) if c.verdict == NO_DIFFERENCE else "",
                    # Shown only where leaving the cut answers out changes the verdict.
                    "untruncated": None
                    if u is None or c.verdict_untruncated in (None, c.verdict)
                    else {
                        "verdict": c.verdict_untruncated,
                        "css": _VERDICT_CLASS.get(c.verdict_untruncated, "v-na"),
                    },
                }
            )
        rows.append({"setting": info.label, "cells": cells})
    return {
        "columns": [
            {"title": _short_label(m.name), "name": m.name, "direction": DIRECTION_TEXT[m.direction]}
            for m in metrics
        ],
        "rows": rows,
        "untruncated": any(c.diff_untruncated is not None for m in metrics for c in m.cells),
    }


def _setting_text(d: Any, labels: Mapping[Setting, str]) -> str:
    """The summary's short label of a setting dict, or a full description if it has none."""
    try:
        return setting_text(Setting.from_mapping(d), labels)
    except ValueError:
        return str(d)


def _arm_rows(results: Mapping[str, Any], labels: Mapping[Setting, str]) -> list[dict[str, str]]:
    rows = []
    for arm in results.get("arms") or []:
        train = arm.get("train") or {}
        rows.append(
            {
                "id": str(arm.get("id", "?")),
                "setting": _setting_text(arm.get("setting"), labels),
                "seed": str(arm.get("seed", "?")),
                "status": str(arm.get("status", "?")),
                "seconds": fmt_seconds(arm.get("seconds")),
                "train_seconds": fmt_seconds(train.get("train_seconds")),
                "steps": str(train.get("global_step", "–")),
                "error": str(arm.get("error") or ""),
                "css_class": {"complete": "", "failed": "failed"}.get(str(arm.get("status", "?")), "pending"),
            }
        )
    return rows


def _wall_times(results: Mapping[str, Any]) -> dict[str, str]:
    secs = [
        float(a["seconds"])
        for a in results.get("arms") or []
        if isinstance(a.get("seconds"), (int, float)) and not isinstance(a.get("seconds"), bool)
    ]
    if not secs:
        return {"total": "–", "per_arm": "–"}
    per = f"{fmt_seconds(min(secs))} – {fmt_seconds(max(secs))}, mean {fmt_seconds(sum(secs) / len(secs))}"
    return {"total": f"{fmt_seconds(sum(secs))} over {len(secs)} arms", "per_arm": per}


def _out_dir_of(command: str) -> str:
    match = re.search(r"--out[ =](\S+)", command)
    return match.group(1) if match else "DIR"


def _reproduce_lines(results: Mapping[str, Any]) -> list[str]:
    env = results.get("environment") or {}
    # The local build tag (2.13.0+cpu, +cu128) is dropped: pip picks the build for the machine.
    pins = [
        f"{pkg}=={str(env[pkg]).split('+')[0]}"
        for pkg in ("torch", "transformers", "trl", "peft")
        if env.get(pkg)
    ]
    command = str(results.get("command") or "").strip()
    lines = [
        f"# neftune {env.get('neftune', '?')}, from this repository",
        'pip install -e ".[cli]"' + (f" {' '.join(pins)}" if pins else ""),
    ]
    if command:
        lines.append(command)
    lines.append(f"neftune report {_out_dir_of(command)}    # rebuild this report from results.json")
    return lines


def _how_to_read(summary: Summary) -> list[str]:
    pct = confidence_text(summary.confidence)
    return [
        f"Each setting was trained with several seeds. Mean [{pct} CI]: the across-seed mean and its "
        "confidence interval.",
        "Diff vs baseline: the setting minus the baseline on the same seed (and the same prompt, for "
        "metrics scored per answer; seeds or prompts missing on either side are left out), with its "
        "interval and two-sided p-value. Detectable: the smallest difference this design finds with 80% "
        "power. Without cut answers: the same over the prompts whose answers neither arm cut at the "
        "generation cap (instruction following only).",
        "Verdict: better / worse (or higher / lower for descriptive metrics, which have no better side) "
        "only when that interval excludes 0; otherwise 'no detectable difference', which means the effect, "
        "if any, is smaller than the noise of this design (see 'detectable'), not that it is zero. "
        "'n/a (1 seed)': an interval needs at least 2 paired seeds; 'n/a (no variation)': every paired "
        "value was the same, so the interval has zero width and gives no verdict.",
        interval_method(summary),
        "The training loss with noise off rising with alpha is the paper's 'less overfitting' signature, "
        "so it is described (higher / lower), not judged.",
        "Many metrics times many settings are compared, each at "
        f"{pct} confidence, so a few 'distinguishable' results are expected by chance (see the headline).",
    ]


# --------------------------------------------------------------------------- rendering


def _compact_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _title(results: Mapping[str, Any]) -> str:
    config = results.get("config") or {}
    kind = str(results.get("kind", "compare"))
    return f"NEFTune {kind}: {config.get('model', '?')} on {config.get('data', '?')}"


def _recommendation(doc: Mapping[str, Any], summary: Summary) -> dict[str, str] | None:
    """The recommended setting's box: ``pick`` (headline), ``reason``, ``style`` (``rec`` / ``warn``)."""
    rec = doc.get("recommendation")
    if not rec:
        return None
    label = summary.labels.get(Setting.from_mapping(rec["recommended"])) if rec["recommended"] else None
    return {
        "pick": f"Recommended: {label}" if label else "No setting recommended over training without noise",
        "reason": rec["reason"],
        "style": "rec" if label else "warn",  # nothing recommended is no good news
    }


def _page(
    results: Mapping[str, Any],
    summary: Summary,
    doc: Mapping[str, Any],
    instruction: InstructionSection | None,
) -> dict[str, Any]:
    """What both templates show, as display strings: everything but the figures."""
    config = results.get("config") or {}
    times = _wall_times(results)
    uninformative = not_informative_reasons(results)  # instead of a verdict: no headline, no recommendation
    arms = _arm_rows(results, summary.labels)
    baseline = _setting_text(results["baseline"], summary.labels) if results.get("baseline") else "none"
    environment = results.get("environment") or {}
    view = None if instruction is None else section_view(instruction, summary)
    if view is not None and uninformative:
        # No verdict of any kind under the "not informative" banner: no length sentences, no tables
        # of differences (they would all be of empty answers).
        view = {**view, "sentences": [], "length_control": [], "suppressed": True}
    headline = list(doc.get("headline") or [])
    return {
        "title": _title(results),
        "results": results,
        "summary": summary,
        "doc": doc,
        "pct": confidence_text(summary.confidence),
        "environment": environment,
        "uninformative": uninformative,
        "verdict": doc.get("verdict") or "",
        "headline": headline,
        "more_headline": headline[1:] if headline and headline[0] == doc.get("verdict") else headline,
        "glance": None if uninformative else _glance(summary),
        "recommendation": None if uninformative else _recommendation(doc, summary),
        "signatures": [
            {**sig, "css_class": _SIGNATURE_CLASS.get(sig["status"], "s-not")}
            for sig in doc.get("signatures") or []
        ],
        "instruction": view,
        "how_to_read": _how_to_read(summary),
        "metrics": [
            {
                "name": m.name,
                "title": sentence_case(m.label),
                "direction_text": DIRECTION_TEXT[m.direction],
                "rows": _metric_rows(m),
                "untruncated": any(c.diff_untruncated is not None for c in m.cells),
            }
            for m in summary.metrics
        ],
        "arms": arms,
        "unfinished": [r for r in arms if r["status"] != "complete"],
        "command": str(results.get("command") or "(command not recorded)"),
        "times": times,
        "run_facts": [
            ("kind", results.get("kind", "?")),
            ("model", config.get("model", "?")),
            ("data", config.get("data", "?")),
            ("primary metric", config.get("primary_metric", "–")),
            ("baseline", baseline),
            (
                "evaluation prompts",
                "the same for every seed" if summary.same_prompts else "drawn per seed (data seed = seed)",
            ),
            ("wall time, total", times["total"]),
            ("wall time per arm", times["per_arm"]),
            ("started / last update", f"{results.get('created', '?')} / {results.get('updated', '?')}"),
            *((f"environment: {k}", v) for k, v in environment.items()),
        ],
        "configuration": [(k, _compact_json(v)) for k, v in config.items()],
        "reproduce": _reproduce_lines(results),
    }


def _forest_figure(data: bytes, summary: Summary) -> dict[str, Any]:
    """The forest plot's figure; its caption mentions the hollow markers only when there are any."""
    fig = _figure("forest", data)
    m = summary.metric(summary.primary_metric) if summary.primary_metric else None
    if m is None or not any(c.diff_untruncated is not None for c in m.cells):
        fig["caption"] = fig["caption"].split(" Hollow,")[0]
    return fig


def _figure(name: str, data: bytes) -> dict[str, Any]:
    title, caption = _FIGURE_TEXT.get(name, (name, ""))
    return {"uri": png_data_uri(data), "title": title, "caption": caption, "known": name in _FIGURE_TEXT}


def render_html(
    results: Mapping[str, Any],
    summary: Summary,
    doc: Mapping[str, Any],
    figures: Mapping[str, bytes],
    extras: Sequence[tuple[str, bytes]] = (),
    instruction: InstructionSection | None = None,
    length_png: bytes | None = None,
) -> str:
    """The self-contained report page (``templates/report.html.j2``). ``doc`` is
    :func:`~.findings.summary_to_dict` of ``summary``; ``figures`` maps figure names to PNG bytes;
    ``extras`` are (caption, PNG bytes) to append; ``instruction`` / ``length_png``: the
    length-control section and its answer-length figure."""
    page = _page(results, summary, doc, instruction)
    if page["instruction"] is not None:
        figure = _figure("answer_lengths", length_png) if length_png else None
        page["instruction"] = {**page["instruction"], "figure": figure}
    figures = dict(figures)
    forest = figures.pop("forest", None)
    return render(
        "report.html.j2",
        **page,
        css=stylesheet(),
        forest=None if forest is None or page["uninformative"] else _forest_figure(forest, summary),
        figures={name: _figure(name, data) for name, data in figures.items()},
        extras=[{"caption": caption, "uri": png_data_uri(data)} for caption, data in extras],
    )


def render_markdown(
    results: Mapping[str, Any],
    summary: Summary,
    doc: Mapping[str, Any],
    figure_files: Sequence[str],
    extra_files: Sequence[tuple[str, str]] = (),
    instruction: InstructionSection | None = None,
    length_file: str | None = None,
) -> str:
    """``summary.md`` (``templates/report.md.j2``): headline, recommendation, signatures, one table
    per metric, arms, commands.

    ``figure_files`` are PNG file names beside the Markdown file; ``extra_files`` are
    (caption, relative path) pairs of optional analyze/viz figures.
    """
    page = _page(results, summary, doc, instruction)
    if page["instruction"] is not None:
        page["instruction"] = {**page["instruction"], "figure_file": length_file}
    return render(
        "report.md.j2",
        **page,
        figure_names={Path(f).stem for f in figure_files},
        figure_files=[
            {"name": f, "title": _FIGURE_TEXT.get(Path(f).stem, (Path(f).stem, ""))[0]}
            for f in figure_files
            if Path(f).stem != "forest"
        ],
        extras=[{"caption": caption, "path": path} for caption, path in extra_files],
    )


# --------------------------------------------------------------------------- entry point


def build_report(folder: str | Path) -> dict[str, Path]:
    """Build ``folder/report/`` from ``folder/results.json`` and the arms' stored answers; returns
    what was written.

    Keys: ``html`` (report.html), ``markdown`` (summary.md), ``summary`` (summary.json) and
    one per figure (``forest``, ``learning_curves``, ``metric_means``, ``differences``,
    ``answer_lengths``, when there is something to draw). The instruction answers are re-scored
    with this version's checkers (:mod:`.answers`). Raises :class:`ReportError` on a bad
    results.json.
    """
    folder = Path(folder)
    results = load_results(folder)
    try:
        answers = load_experiment_answers(folder, results)
        summary = summarize(results, answers=answers)
    except ValueError as exc:
        raise ReportError(f"{folder / 'results.json'}: {exc}") from exc
    doc = summary_to_dict(summary)
    out = folder / REPORT_DIR
    pngs = {name: figure_png(fig) for name, fig in make_figures(results, summary).items()}
    written: dict[str, Path] = {
        name: write_bytes_atomic(out / f"{name}.png", data) for name, data in pngs.items()
    }
    instruction = instruction_section(summary)
    length_fig = answer_lengths_figure(instruction.lengths, summary.labels)
    length_png = figure_png(length_fig) if length_fig is not None else None
    if length_png is not None:
        written["answer_lengths"] = write_bytes_atomic(out / "answer_lengths.png", length_png)
    if not instruction.empty:
        doc["instruction_following"] = section_dict(instruction, summary)
        if not_informative_reasons(results):  # no verdict of any kind, here either
            doc["instruction_following"]["verdict"] = []
    extras = _extra_images(folder)
    extra_bytes = [(caption, path.read_bytes()) for caption, path in extras]
    extra_links = [(caption, f"../{path.relative_to(folder).as_posix()}") for caption, path in extras]
    written["summary"] = write_json_atomic(out / "summary.json", doc)
    written["markdown"] = write_text_atomic(
        out / "summary.md",
        render_markdown(
            results,
            summary,
            doc,
            [f"{name}.png" for name in pngs],
            extra_links,
            instruction,
            "answer_lengths.png" if length_png else None,
        ),
    )
    written["html"] = write_text_atomic(
        out / "report.html",
        render_html(results, summary, doc, pngs, extra_bytes, instruction, length_png),
    )
    # A figure an earlier build drew and this one does not (e.g. heldout_curves.png, now drawn inside
    # learning_curves.png) would sit beside the new report as if it belonged to it: remove it. Only
    # neftune's own report files are touched.
    kept = {p.name for p in written.values()}
    for name in REPORT_FILES:
        if name not in kept:
            (out / name).unlink(missing_ok=True)
    return written
