"""The report's per-answer part: truncation, length control, answer lengths, per-constraint accuracy.

Built from the per-prompt answers the statistics used (``summary.answers``, :mod:`.answers`);
:func:`instruction_section` gathers it (:func:`~.plots.answer_lengths_figure` draws its answer
lengths), :func:`section_view` gives the report templates its display strings. Nothing here
changes ``results.json``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..finetune.data.instructions import HELDOUT_KINDS
from .formatting import fmt_estimate, fmt_value
from .labels import metric_label
from .length_control import LengthControlled, length_control
from .setting import Setting
from .stats import BETTER, HIGHER, LOWER, NA_ONE_SEED, NO_DIFFERENCE, WORSE, Summary

__all__ = [
    "InstructionSection",
    "Truncation",
    "instruction_section",
    "section_dict",
    "section_view",
    "verdict_sentences",
]

#: The metric whose paired difference is "the answers' length" in every sentence of the report.
LENGTH_METRIC = "length_chars/ifeval"


@dataclass(frozen=True)
class Truncation:
    """Answers of one setting (all seeds) cut at the generation cap, per prompt group."""

    cut: int
    unknown: int
    total: int
    cap: int | None
    source: str  # "recorded" | "inferred" | "unknown" | "partly unknown"


@dataclass(frozen=True)
class InstructionSection:
    """What the arms' answers hold for the report (empty when no arm stored per-prompt answers)."""

    length_control: tuple[LengthControlled, ...]
    lengths: Mapping[str, Mapping[Setting, list[int]]]  # "ifeval"/"tasks" -> setting -> answer lengths
    by_kind: Mapping[str, Mapping[Setting, tuple[float, float, int]]]  # kind -> setting -> strict, loose, n
    truncation: Mapping[str, Mapping[Setting, Truncation]] = field(default_factory=dict)  # group -> setting
    rescored: tuple[int, int, int] = (0, 0, 0)  # answers re-scored, changed by it, not re-scored

    @property
    def empty(self) -> bool:
        return not self.lengths


def instruction_section(summary: Summary) -> InstructionSection:
    """Gather the section from the summary's per-prompt answers."""
    lengths: dict[str, dict[Setting, list[int]]] = {}
    kind_hits: dict[str, dict[Setting, dict[int, list[int]]]] = {}
    cuts: dict[str, dict[Setting, list[Any]]] = {}
    rescored = [0, 0, 0]
    for (setting, seed), ans in sorted(
        summary.answers.items(), key=lambda kv: (kv[0][0].sort_key(), kv[0][1])
    ):
        rescored[0] += ans.rescored
        rescored[1] += ans.changed
        rescored[2] += ans.not_rescored
        for r in ans.rows:
            group = "ifeval" if r.is_instruction else "tasks"
            lengths.setdefault(group, {}).setdefault(setting, []).append(r.length)
            acc = cuts.setdefault(group, {}).setdefault(setting, [0, 0, 0, ans.caps.get(group), set()])
            acc[0] += r.truncated is True
            acc[1] += r.truncated is None
            acc[2] += 1
            acc[4].add(ans.truncation)
            if r.is_instruction:
                for kind, strict, loose in zip(r.kinds, r.strict or (), r.loose or ()):
                    hits = kind_hits.setdefault(kind, {}).setdefault(setting, {}).setdefault(seed, [0, 0, 0])
                    hits[0] += 1
                    hits[1] += bool(strict)
                    hits[2] += bool(loose)
    by_kind: dict[str, dict[Setting, tuple[float, float, int]]] = {}
    for kind, per_setting in sorted(kind_hits.items()):
        for setting, per_seed in per_setting.items():
            # Mean over seeds of each seed's fraction.
            strict = statistics.fmean(a[1] / a[0] for a in per_seed.values())
            loose = statistics.fmean(a[2] / a[0] for a in per_seed.values())
            n = round(statistics.fmean(a[0] for a in per_seed.values()))
            by_kind.setdefault(kind, {})[setting] = (strict, loose, n)
    truncation = {
        group: {
            s: Truncation(a[0], a[1], a[2], a[3], _source(a[4]))
            for s, a in sorted(per.items(), key=lambda kv: kv[0].sort_key())
        }
        for group, per in cuts.items()
    }
    lc = tuple(length_control(summary)) if summary.baseline is not None else ()
    return InstructionSection(lc, lengths, by_kind, truncation, tuple(rescored))


def _source(sources: set[str]) -> str:
    if sources <= {"recorded"}:
        return "recorded"
    if sources <= {"recorded", "inferred"}:
        return "inferred"
    return "unknown" if sources == {"unknown"} else "partly unknown"


# --------------------------------------------------------------------------- words


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


def length_phrase(summary: Summary, setting: Setting) -> str | None:
    """``answers to instruction prompts 30 characters longer than the baseline's (95% CI +15 to
    +46, distinguishable)`` from the summary's own length metric, or None when it was not measured."""
    m = summary.metric(LENGTH_METRIC)
    c = m.cell(setting) if m is not None else None
    if c is None or c.diff is None or c.diff.mean is None:
        return None
    d = c.diff
    word = "longer" if d.mean >= 0 else "shorter"
    text = f"answers to instruction prompts {fmt_value(abs(d.mean), 0)} characters {word} than the baseline's"
    if d.lo is not None:
        pct = f"{100 * summary.confidence:g}%"
        within = "beyond noise" if d.distinguishable else "within noise"
        text += (
            f" ({pct} CI {fmt_value(d.lo, 0, signed=True)} to {fmt_value(d.hi, 0, signed=True)}, {within})"
        )
    return text


def verdict_sentences(section: InstructionSection, summary: Summary) -> list[str]:
    """Plain words per noisy setting: how the answers' length moved (the length metric's own paired
    difference) and whether a quality difference remains at equal answer length (an association)."""
    if not section.length_control:
        return []
    out = []
    by_setting: dict[Setting, list[LengthControlled]] = {}
    for lc in sorted(section.length_control, key=lambda lc: _priority(lc.metric)):
        by_setting.setdefault(lc.setting, []).append(lc)
    labels = summary.labels
    for setting, items in sorted(by_setting.items(), key=lambda kv: kv[0].sort_key()):
        label = labels.get(setting, f"alpha {setting.alpha:g}")
        length = length_phrase(summary, setting)
        head = f"{label}: {length}" if length else label
        moved = [lc for lc in items if lc.raw_verdict in (BETTER, WORSE)]
        if all(lc.raw_verdict == NA_ONE_SEED for lc in items):
            out.append(
                f"{head}; no verdict on quality, raw or at equal length: fewer than 2 seeds pair with the baseline."
            )
            continue
        if not moved:
            text = f"{head}; no quality metric moved beyond noise, so there is no difference for length to go with"
            kept = [lc for lc in items if lc.adjusted_verdict in (BETTER, WORSE)]
            if kept:
                names = ", ".join(f"{metric_label(lc.metric)} ({lc.adjusted_verdict})" for lc in kept[:3])
                text += f" (at equal answer length: {names}; an association, see the note)"
            out.append(text + ".")
            continue
        parts = []
        for lc in moved[:4]:
            name = f"{metric_label(lc.metric)} ({lc.raw_verdict})"
            if lc.adjusted_verdict == lc.raw_verdict:
                parts.append(f"{name} remains {lc.adjusted_verdict} at equal answer length")
            else:
                parts.append(f"{name} is within noise at equal answer length, so it goes with the length")
        out.append(f"{head}; " + "; ".join(parts) + ".")
    return out


_SECTION_NOTE = (
    "Each noisy arm is paired with the baseline arm of the same seed, prompt by prompt. Raw: the "
    "score difference (the metric's own difference). At equal length: the intercept of the regression "
    "of the per-prompt score difference on the per-prompt length difference (one intercept per seed, a "
    "common slope), averaged over seeds. Both intervals cover seeds and prompts, and the adjusted one "
    "re-fits the slope each time, so the slope's own uncertainty is in it. This is an association, not "
    "an effect: the noise itself changes how long the answers are, so 'at equal length' compares "
    "answers the noise made longer with baseline answers that happened to be as long, and assumes the "
    "score changes linearly with length."
)


def _kind_rows(section: InstructionSection) -> tuple[list[Setting], list[dict[str, Any]]]:
    """Settings (columns) and one row per constraint type: ``kind``, ``held`` (``seen`` /
    ``held-out`` in training), ``n`` and ``cells`` (``strict / loose`` per setting); seen types first."""
    settings = sorted({s for per in section.by_kind.values() for s in per}, key=Setting.sort_key)
    rows = []
    for kind, per in section.by_kind.items():
        cells = [
            f"{fmt_value(per[s][0], 2)} / {fmt_value(per[s][1], 2)}" if s in per else "–" for s in settings
        ]
        held = "held-out" if kind in HELDOUT_KINDS else "seen"
        rows.append({"kind": kind, "held": held, "n": str(max(v[2] for v in per.values())), "cells": cells})
    rows.sort(key=lambda r: (r["held"] != "seen", r["kind"]))
    return settings, rows


_VERDICT_CSS = {
    BETTER: "v-better",
    WORSE: "v-worse",
    HIGHER: "v-higher",
    LOWER: "v-lower",
    NO_DIFFERENCE: "v-nd",
}


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
        "raw_class": _VERDICT_CSS.get(lc.raw_verdict, "v-na"),
        "adjusted": diff(lc.adjusted),
        "adjusted_verdict": lc.adjusted_verdict,
        "adjusted_class": _VERDICT_CSS.get(lc.adjusted_verdict, "v-na"),
        "slope": "–" if lc.slope_per_100_chars is None else fmt_value(lc.slope_per_100_chars, 3, signed=True),
    }


def _truncation_rows(section: InstructionSection, labels: Mapping[Setting, str]) -> list[dict[str, str]]:
    rows = []
    settings = sorted({s for per in section.truncation.values() for s in per}, key=Setting.sort_key)
    for s in settings:
        row = {"setting": labels.get(s, f"alpha {s.alpha:g}")}
        for group in ("ifeval", "tasks"):
            t = section.truncation.get(group, {}).get(s)
            if t is None:
                row[group] = "–"
                continue
            text = f"{t.cut} of {t.total} ({fmt_value(100 * t.cut / t.total, 1)}%)" if t.total else "–"
            if t.unknown:
                text += f", {t.unknown} unknown"
            row[group] = text
            row[f"{group}_cap"] = "–" if t.cap is None else str(t.cap)
            row[f"{group}_source"] = t.source
        rows.append(row)
    return rows


def truncation_note(section: InstructionSection) -> str:
    """How the truncation counts were obtained."""
    sources = {t.source for per in section.truncation.values() for t in per.values()}
    if sources <= {"recorded"}:
        return "Recorded by the evaluation for every answer: it reached the cap without the end-of-sequence token."
    return (
        "Some evaluations predate the flag: for their answers truncation is inferred by re-encoding the "
        "stored answer with the model's tokenizer (at least the cap: cut; more than 2 tokens below: not "
        "cut; in between, or without the tokenizer: unknown). Comparisons 'without cut answers' leave "
        "unknown ones out too."
    )


def section_view(section: InstructionSection, summary: Summary) -> dict[str, Any]:
    """The section as display strings for the report templates: ``empty``, ``sentences``
    (:func:`verdict_sentences`), ``note``, ``length_control`` rows, ``kind_settings`` (column
    labels), ``kind_rows`` (see :func:`_kind_rows`), ``truncation`` rows and its note, ``rescored``."""
    settings, kind_rows = _kind_rows(section)
    n, changed, missing = section.rescored
    rescored = ""
    if n or missing:
        rescored = (
            f"{n} instruction answers re-scored from the stored answers with this version's checkers "
            f"({changed} changed their result)"
            + (
                f"; {missing} could not be re-scored (their constraints were not found) and keep their stored scores"
                if missing
                else ""
            )
            + "."
        )
    return {
        "empty": section.empty,
        "sentences": verdict_sentences(section, summary),
        "note": _SECTION_NOTE,
        # The table: overall instruction following and task accuracy (per-type rows are in summary.json).
        "length_control": [
            _lc_row(lc, summary.labels)
            for lc in _ordered(section.length_control)
            if not (lc.metric.startswith("ifeval/") and lc.metric.count("/") > 1)
        ],
        "kind_settings": [summary.labels.get(s, str(s.alpha)) for s in settings],
        "kind_rows": kind_rows,
        "truncation": _truncation_rows(section, summary.labels),
        "truncation_note": truncation_note(section) if section.truncation else "",
        "rescored": rescored,
        "suppressed": False,
    }


def section_dict(section: InstructionSection, summary: Summary) -> dict[str, Any]:
    """JSON-shaped section for ``summary.json``."""

    def diff(d) -> dict[str, Any]:
        return {
            "seeds": list(d.seeds),
            "mean": d.mean,
            "lo": d.lo,
            "hi": d.hi,
            "p": d.p,
            "se": d.se,
            "detectable": d.detectable,
            "covers": d.covers,
        }

    return {
        "verdict": verdict_sentences(section, summary),
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
        "truncation": {
            group: [
                {
                    "setting": s.to_dict(),
                    "cut": t.cut,
                    "unknown": t.unknown,
                    "total": t.total,
                    "cap": t.cap,
                    "source": t.source,
                }
                for s, t in per.items()
            ]
            for group, per in section.truncation.items()
        },
        "rescored": {
            "answers": section.rescored[0],
            "changed": section.rescored[1],
            "not_rescored": section.rescored[2],
        },
    }
