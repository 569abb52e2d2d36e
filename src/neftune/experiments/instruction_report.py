"""The report's instruction-following part: length control, answer lengths, per-constraint accuracy.

Read from the arm folders (each finished arm's ``eval/per_prompt.json``); :func:`instruction_section`
gathers it (:func:`~.plots.answer_lengths_figure` draws its answer lengths), :func:`section_view`
gives the report templates its display strings. Nothing here changes ``results.json``.
"""

from __future__ import annotations

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
    "section_view",
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


def section_view(section: InstructionSection, summary: Summary) -> dict[str, Any]:
    """The section as display strings for the report templates: ``empty``, ``sentences``
    (:func:`verdict_sentences`), ``note``, ``length_control`` rows, ``kind_settings`` (column labels)
    and ``kind_rows`` (see :func:`_kind_rows`)."""
    settings, kind_rows = _kind_rows(section)
    return {
        "empty": section.empty,
        "sentences": verdict_sentences(section, summary.labels),
        "note": _SECTION_NOTE,
        "length_control": [_lc_row(lc, summary.labels) for lc in _ordered(section.length_control)],
        "kind_settings": [summary.labels.get(s, str(s.alpha)) for s in settings],
        "kind_rows": kind_rows,
    }


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
