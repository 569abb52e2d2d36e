"""The report's instruction-following part: length control, answer lengths, per-constraint accuracy.

Read from the arm folders (each finished arm's ``eval/per_prompt.json``); :func:`instruction_section`
gathers it (:func:`~.plots.answer_lengths_figure` draws its answer lengths), and the ``*_html`` /
``*_markdown`` functions render it. Nothing here changes ``results.json``.
"""

from __future__ import annotations

import html
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.instructions import HELDOUT_KINDS
from ..io import read_json_object
from ..metrics import PER_PROMPT_FILE
from .formatting import fmt_estimate, fmt_value
from .labels import metric_label
from .length_control import LengthControlled, arm_rows, length_control
from .setting import Setting
from .stats import BETTER, Summary

__all__ = [
    "InstructionSection",
    "instruction_section",
    "section_dict",
    "section_html",
    "section_markdown",
    "verdict_sentences",
]


@dataclass(frozen=True)
class InstructionSection:
    """What the arm folders hold for the report (empty when no arm wrote ``per_prompt.json``)."""

    length_control: tuple[LengthControlled, ...]
    lengths: Mapping[str, Mapping[Setting, list[int]]]  # "ifeval"/"tasks" -> setting -> answer lengths
    by_kind: Mapping[str, Mapping[Setting, tuple[float, float, int]]]  # kind -> setting -> strict, loose, n

    @property
    def empty(self) -> bool:
        return not self.lengths


def instruction_section(
    folder: str | Path, results: Mapping[str, Any], summary: Summary
) -> InstructionSection:
    """Gather the section from ``folder``'s finished arms."""
    arms = []
    lengths: dict[str, dict[Setting, list[int]]] = {}
    kind_hits: dict[str, dict[Setting, dict[int, list[int]]]] = {}
    for arm in results.get("arms", []):
        if arm.get("status") != "complete":
            continue
        data = read_json_object(Path(folder) / str(arm.get("dir", "")) / "eval" / PER_PROMPT_FILE)
        if not data:
            continue
        setting, seed = Setting.from_mapping(arm["setting"]), int(arm["seed"])
        try:
            arms.append((setting, seed, arm_rows(data)))
            for split, rows in data["splits"].items():
                group = "ifeval" if split.startswith("ifeval") else "tasks"
                lengths.setdefault(group, {}).setdefault(setting, []).extend(
                    int(r["length_chars"]) for r in rows
                )
                for r in rows:
                    for kind, strict, loose in zip(
                        r.get("kinds", ()), r.get("strict", ()), r.get("loose", ())
                    ):
                        acc = (
                            kind_hits.setdefault(kind, {}).setdefault(setting, {}).setdefault(seed, [0, 0, 0])
                        )
                        acc[0] += 1
                        acc[1] += bool(strict)
                        acc[2] += bool(loose)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    lc = length_control(arms, summary.baseline, summary.confidence) if summary.baseline and arms else []
    by_kind: dict[str, dict[Setting, tuple[float, float, int]]] = {}
    for kind, per_setting in sorted(kind_hits.items()):
        for setting, per_seed in per_setting.items():
            # Mean over seeds of each seed's fraction (every seed answers the same prompts).
            strict = statistics.fmean(a[1] / a[0] for a in per_seed.values())
            loose = statistics.fmean(a[2] / a[0] for a in per_seed.values())
            n = round(statistics.fmean(a[0] for a in per_seed.values()))
            by_kind.setdefault(kind, {})[setting] = (strict, loose, n)
    return InstructionSection(tuple(lc), lengths, by_kind)


def _lc_row(lc: LengthControlled, labels: Mapping[Setting, str]) -> dict[str, str]:
    def diff(d) -> str:
        return fmt_estimate(d.mean, d.lo, d.hi, signed=True)

    return {
        "setting": labels.get(lc.setting, f"alpha {lc.setting.alpha:g}"),
        "metric": metric_label(lc.metric),
        "name": lc.metric,
        "length": fmt_value(lc.length_difference, 0, signed=True),
        "raw": diff(lc.raw),
        "raw_verdict": lc.raw_verdict,
        "adjusted": diff(lc.adjusted),
        "adjusted_verdict": lc.adjusted_verdict,
        "slope": "–" if lc.slope_per_100_chars is None else fmt_value(lc.slope_per_100_chars, 3, signed=True),
    }


def _priority(name: str) -> tuple[int, int, int, int, str]:
    """Overall instruction metrics first (prompt before instruction level, strict before loose)."""
    return (
        not name.startswith("ifeval/"),
        name.count("/"),
        "/prompt_" not in name,
        "strict" not in name,
        name,
    )


def _ordered(items: tuple[LengthControlled, ...]) -> list[LengthControlled]:
    return sorted(items, key=lambda lc: (lc.setting.sort_key(), _priority(lc.metric)))


def verdict_sentences(section: InstructionSection, labels: Mapping[Setting, str]) -> list[str]:
    """Plain words per noisy setting: how much longer the answers are, and whether any quality
    gain (a raw difference distinguishable from seed noise) survives length control."""
    if not section.length_control:
        return []
    out = []
    by_setting: dict[Setting, list[LengthControlled]] = {}
    for lc in sorted(section.length_control, key=lambda lc: _priority(lc.metric)):
        by_setting.setdefault(lc.setting, []).append(lc)
    for setting, items in sorted(by_setting.items(), key=lambda kv: kv[0].sort_key()):
        label = labels.get(setting, f"alpha {setting.alpha:g}")
        overall = [lc for lc in items if lc.metric.startswith("ifeval/") and lc.metric.count("/") == 1]
        length = (
            statistics.fmean(lc.length_difference for lc in overall)
            if overall
            else items[0].length_difference
        )
        gains = [lc for lc in items if lc.raw_verdict == BETTER]
        adjusted_gains = [lc for lc in items if lc.adjusted_verdict == BETTER]
        head = f"{label}: answers {fmt_value(abs(length), 0)} characters {'longer' if length >= 0 else 'shorter'}"
        head += " than the baseline's on the same instruction prompts" if overall else " on the same prompts"
        if not gains:
            text = f"{head}; no quality metric improved beyond seed noise, so there is no gain for length to explain"
            if adjusted_gains:
                names = ", ".join(metric_label(lc.metric) for lc in adjusted_gains[:3])
                text += f" (at equal length: better on {names})"
            out.append(text + ".")
            continue
        kept = [lc for lc in gains if lc.survives]
        lost = [lc for lc in gains if not lc.survives]
        parts = []
        if kept:
            parts.append(
                "survives length control on " + ", ".join(metric_label(lc.metric) for lc in kept[:4])
            )
        if lost:
            parts.append("does not survive it on " + ", ".join(metric_label(lc.metric) for lc in lost[:4]))
        out.append(f"{head}; the raw gain " + " but ".join(parts) + ".")
    return out


_SECTION_NOTE = (
    "Each noisy arm is paired with the baseline arm of the same seed, prompt by prompt. Raw: the "
    "score difference (the metric's own difference). Length-adjusted: the score difference at equal "
    "answer length, from the regression of the per-prompt score difference on the per-prompt length "
    "difference (one intercept per seed, a common slope), then across seeds like every other "
    "comparison. Loss metrics are scored on the reference answers and do not depend on answer length."
)


def _kind_rows(section: InstructionSection, summary: Summary) -> tuple[list[Setting], list[list[str]]]:
    settings = sorted({s for per in section.by_kind.values() for s in per}, key=Setting.sort_key)
    rows = []
    for kind, per in section.by_kind.items():
        held = "held-out" if kind in HELDOUT_KINDS else "seen"
        n = max(v[2] for v in per.values())
        cells = [
            f"{fmt_value(per[s][0], 2)} / {fmt_value(per[s][1], 2)}" if s in per else "–" for s in settings
        ]
        rows.append([kind, held, str(n), *cells])
    rows.sort(key=lambda r: (r[1] != "seen", r[0]))
    return settings, rows


def section_html(section: InstructionSection, summary: Summary, figure: str | None, pct: str) -> str:
    """The HTML of the section (``figure``: an ``<figure>`` element or None)."""
    if section.empty:
        return ""
    e = html.escape
    out = ["<h2>Length control</h2>"]
    sentences = verdict_sentences(section, summary.labels)
    if sentences:
        out.append(
            '<div class="box headline"><ul>' + "".join(f"<li>{e(s)}</li>" for s in sentences) + "</ul></div>"
        )
    if figure:
        out.append(figure)
    out.append(f'<div class="box note"><p>{e(_SECTION_NOTE)}</p></div>')
    if section.length_control:
        out.append(
            "<table><tr><th>setting</th><th>metric</th><th class=num>length diff (chars)</th>"
            f"<th class=num>raw diff [{pct} CI]</th><th>verdict</th>"
            f"<th class=num>length-adjusted diff [{pct} CI]</th><th>verdict</th>"
            "<th class=num>score per +100 chars</th></tr>"
        )
        for lc in _ordered(section.length_control):
            r = _lc_row(lc, summary.labels)
            out.append(
                f"<tr><td>{e(r['setting'])}</td><td>{e(r['metric'])} <code>{e(r['name'])}</code></td>"
                f"<td class=num>{e(r['length'])}</td><td class=num>{e(r['raw'])}</td><td>{e(r['raw_verdict'])}</td>"
                f"<td class=num>{e(r['adjusted'])}</td><td>{e(r['adjusted_verdict'])}</td>"
                f"<td class=num>{e(r['slope'])}</td></tr>"
            )
        out.append("</table>")
    if section.by_kind:
        settings, rows = _kind_rows(section, summary)
        out.append("<h2>Instruction following per constraint type</h2>")
        out.append(
            "<p>Fraction of each type's instructions followed, strict / loose, mean over seeds; n is the "
            "number of instructions of that type per arm. Held-out types never appear in training.</p>"
        )
        head = "".join(f"<th class=num>{e(summary.labels.get(s, str(s.alpha)))}</th>" for s in settings)
        out.append(f"<table><tr><th>constraint type</th><th>in training</th><th class=num>n</th>{head}</tr>")
        for r in rows:
            out.append(
                "<tr>"
                + "".join(
                    f"<td>{e(c)}</td>" if i < 2 else f"<td class=num>{e(c)}</td>" for i, c in enumerate(r)
                )
                + "</tr>"
            )
        out.append("</table>")
    return "\n".join(out)


def section_markdown(
    section: InstructionSection, summary: Summary, figure_file: str | None, pct: str
) -> list[str]:
    """The Markdown lines of the section."""
    if section.empty:
        return []
    lines = ["", "## Length control", ""]
    lines += [f"- {s}" for s in verdict_sentences(section, summary.labels)]
    if figure_file:
        lines += ["", f"![Answer lengths per setting]({figure_file})"]
    lines += ["", _SECTION_NOTE, ""]
    if section.length_control:
        lines.append(
            f"| setting | metric | length diff (chars) | raw diff [{pct} CI] | verdict | "
            f"length-adjusted diff [{pct} CI] | verdict | score per +100 chars |"
        )
        lines.append("|---|---|---:|---:|---|---:|---|---:|")
        for lc in _ordered(section.length_control):
            r = _lc_row(lc, summary.labels)
            lines.append(
                f"| {r['setting']} | {r['metric']} (`{r['name']}`) | {r['length']} | {r['raw']} | "
                f"{r['raw_verdict']} | {r['adjusted']} | {r['adjusted_verdict']} | {r['slope']} |"
            )
    if section.by_kind:
        settings, rows = _kind_rows(section, summary)
        lines += ["", "## Instruction following per constraint type", ""]
        lines.append(
            "Fraction of each type's instructions followed, strict / loose, mean over seeds; n: instructions "
            "of that type per arm. Held-out types never appear in training."
        )
        lines.append("")
        lines.append(
            "| constraint type | in training | n | "
            + " | ".join(summary.labels.get(s, str(s.alpha)) for s in settings)
            + " |"
        )
        lines.append("|---|---|---:|" + "---:|" * len(settings))
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def section_dict(section: InstructionSection, summary: Summary) -> dict[str, Any]:
    """JSON-shaped section for ``summary.json``."""

    def diff(d) -> dict[str, Any]:
        return {"seeds": list(d.seeds), "mean": d.mean, "lo": d.lo, "hi": d.hi, "p": d.p}

    return {
        "verdict": verdict_sentences(section, summary.labels),
        "length_control": [
            {
                "metric": lc.metric,
                "setting": lc.setting.to_dict(),
                "length_difference_chars": lc.length_difference,
                "raw": diff(lc.raw),
                "raw_verdict": lc.raw_verdict,
                "adjusted": diff(lc.adjusted),
                "adjusted_verdict": lc.adjusted_verdict,
                "slope_per_100_chars": lc.slope_per_100_chars,
            }
            for lc in section.length_control
        ],
        "by_constraint_type": {
            kind: [
                {"setting": s.to_dict(), "strict": v[0], "loose": v[1], "n": v[2]}
                for s, v in sorted(per.items(), key=lambda kv: kv[0].sort_key())
            ]
            for kind, per in section.by_kind.items()
        },
    }
