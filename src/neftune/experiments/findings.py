"""What a compare / sweep experiment found, in words: headline sentences, the paper's
signatures, the recommendation, and the JSON summary.

Built on the numbers of :mod:`neftune.experiments.stats`; pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .formatting import decimals_for, fmt_estimate, fmt_value, half_width, p_relation, two_digit_decimals
from .labels import metric_direction, metric_label, sentence_case, setting_word
from .setting import Setting
from .stats import (
    BETTER,
    HIGHER,
    LOWER,
    NA_DEGENERATE,
    NA_ONE_SEED,
    NO_DIFFERENCE,
    SUMMARY_SCHEMA,
    WORSE,
    Cell,
    MetricSummary,
    PairedDifference,
    Summary,
    paired_difference,
)

__all__ = [
    "Recommendation",
    "Signature",
    "detectable_phrase",
    "headline_sentences",
    "interval_method",
    "multiple_comparisons_sentence",
    "paper_signatures",
    "recommend",
    "status_sentence",
    "summary_to_dict",
    "verdict_sentence",
]

# --------------------------------------------------------------------------- words


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _others(cells: Sequence[Cell], word: str, limit: int = 3) -> str:
    """Labels of ``cells`` joined, or ``the other 7 settings`` when there are more than ``limit``."""
    if len(cells) > limit:
        return f"the other {len(cells)} {word}s"
    return _join([c.label for c in cells])


def _seeds_phrase(cells: Sequence[Cell]) -> str:
    ns = sorted({c.diff.n for c in cells if c.diff is not None})
    if not ns:
        return "no paired seeds"
    count = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return f"{count} seed{'s' if ns[-1] != 1 else ''}"


def _diff_phrase(c: Cell, pct: float) -> str:
    d = c.diff
    assert d is not None
    return f"{c.label} ({_diff_ci(d, pct)})"


def _diff_ci(d: PairedDifference, pct: float) -> str:
    """``+0.041, 95% CI [+0.012, +0.070]`` (or just the difference without an interval)."""
    est = fmt_estimate(d.mean, d.lo, d.hi, signed=True)
    if d.lo is None:
        return est
    mean, _, ci = est.partition(" ")
    return f"{mean}, {pct:g}% CI {ci}"


def detectable_phrase(cells: Sequence[Cell]) -> str | None:
    """``could detect ±0.052 or larger`` (one cell) or ``could detect ±0.05–0.08 or larger`` (several):
    the smallest differences the design detects with 80% power; None when none is known."""
    found = sorted(c.diff.detectable for c in cells if c.diff is not None and c.diff.detectable is not None)
    if not found:
        return None
    lo, hi = found[0], found[-1]
    d = _two_digits(lo)
    if len(found) == 1 or fmt_value(lo, d) == fmt_value(hi, d):
        return f"could detect ±{fmt_value(hi, _two_digits(hi))} or larger at 80% power"
    return f"could detect ±{fmt_value(lo, d)}–{fmt_value(hi, _two_digits(hi))} or larger at 80% power"


def _two_digits(x: float) -> int:
    """Decimals that show ``x`` to 2 significant digits."""
    return two_digit_decimals(x)


def _covers_phrase(cells: Sequence[Cell]) -> str:
    covers = {c.diff.covers for c in cells if c.diff is not None}
    return "seeds and prompts" if covers == {"seeds and prompts"} else "seeds"


def interval_method(summary: Summary) -> str:
    """One paragraph: how the intervals were computed (for the report and summary.json)."""
    pct = f"{100 * summary.confidence:g}%"
    design = (
        "every seed was scored on the same prompts, so the prompt sampling is a separate part of the variance"
        if summary.same_prompts
        else "each seed drew its own data and evaluation prompts, so the seeds' spread holds the prompt sampling"
    )
    return (
        f"Intervals are {pct} Student-t intervals. For metrics scored per answer (instruction following, task "
        "accuracy, answer length, truncation) the variance covers seeds and prompts: a grouped delete-one "
        "jackknife over seeds and over prompts, the whole estimate recomputed at each deletion, combined as "
        f"in a two-level random-effects model ({design}). Other metrics (losses, ROUGE-L) vary over seeds "
        "only: the paired t interval over seeds"
        + (", which leaves out how their evaluation records were drawn." if summary.same_prompts else ".")
        + " A difference gets a verdict only when its interval excludes 0; an interval of zero width gets "
        "none. 'Could detect ±X': the smallest difference this design finds with 80% power at the same "
        "confidence, (t quantile + t_0.8) x standard error."
    )


# --------------------------------------------------------------------------- headline


def _metric_sentence(m: MetricSummary, summary: Summary) -> str | None:
    """One sentence on how a metric moved against the baseline; None when nothing was compared.

    Every 'no detectable difference' carries the effect the design could have detected."""
    compared = m.compared
    if not compared:
        return None
    pct = 100 * summary.confidence
    word = setting_word(summary.only_alpha_varies)
    seeds = _seeds_phrase(compared)
    by = {v: [c for c in compared if c.verdict == v] for v in (BETTER, WORSE, HIGHER, LOWER, NO_DIFFERENCE)}
    if len(by[NO_DIFFERENCE]) == len(compared):
        where = f"at any {word}" if len(compared) > 1 else f"at {compared[0].label}"
        power = detectable_phrase(compared)
        return (
            f"NEFTune did not measurably change {m.label} {where} ({seeds}; differences within the noise of "
            f"{_covers_phrase(compared)}{'; ' + power if power else ''})."
        )
    parts = []
    verbs = {
        BETTER: ("improved", ""),
        WORSE: ("made", " worse"),
        HIGHER: ("raised", ""),
        LOWER: ("lowered", ""),
    }
    first = True
    for v in (BETTER, WORSE, HIGHER, LOWER):
        if by[v]:
            verb, tail = verbs[v]
            obj = m.label if first else "it"
            parts.append(f"{verb} {obj}{tail} at {_join([_diff_phrase(c, pct) for c in by[v]])}")
            first = False
    if by[NO_DIFFERENCE]:
        power = detectable_phrase(by[NO_DIFFERENCE])
        parts.append(
            f"made no detectable difference at {_others(by[NO_DIFFERENCE], word)}"
            + (f" ({power})" if power else "")
        )
    return f"NEFTune {'; '.join(parts)} — {seeds} per setting."


def verdict_sentence(summary: Summary) -> str:
    """The report's opening sentence: what NEFTune did to the primary metric, with the effect the
    experiment could have detected when it found none."""
    base_info = next((i for i in summary.settings if i.is_baseline), None)
    if summary.baseline is None or base_info is None or not base_info.seeds_complete:
        return "No finished baseline (no noise) arm: nothing says whether NEFTune helped."
    primary = summary.metric(summary.primary_metric) if summary.primary_metric else None
    if primary is None:
        return f"No arm reported the primary metric ({summary.primary_metric}): no verdict."
    compared = primary.compared
    noisy = [c for c in primary.cells if not c.is_baseline]
    if not compared:
        why = (
            "its differences have zero width (every paired answer scored the same)"
            if any(c.verdict == NA_DEGENERATE for c in noisy)
            else "fewer than 2 seeds pair up with the baseline (run 2 or more seeds)"
        )
        return f"No verdict on {primary.label}: {why}."
    pct = 100 * summary.confidence
    word = setting_word(summary.only_alpha_varies)
    better = [c for c in compared if c.verdict == BETTER]
    worse = [c for c in compared if c.verdict == WORSE]
    quiet = [c for c in compared if c.verdict == NO_DIFFERENCE]
    n_prompts = max((c.diff.n_prompts for c in compared if c.diff is not None), default=0)
    design = _seeds_phrase(compared) + (f" x {n_prompts} prompts" if n_prompts else "")
    if better:
        text = f"NEFTune improved {primary.label} at {_join([_diff_phrase(c, pct) for c in better])}"
        if worse:
            text += f" and made it worse at {_join([_diff_phrase(c, pct) for c in worse])}"
        if quiet:
            power = detectable_phrase(quiet)
            text += f"; no detectable difference at {_others(quiet, word)}" + (f" ({power})" if power else "")
        return text + f" ({design})."
    if worse:
        text = f"NEFTune did not help: it made {primary.label} worse at {_join([_diff_phrase(c, pct) for c in worse])}"
        if quiet:
            power = detectable_phrase(quiet)
            text += f", and made no detectable difference at {_others(quiet, word)}" + (
                f" ({power})" if power else ""
            )
        return text + f" ({design})."
    means = [c.diff.mean for c in quiet if c.diff is not None and c.diff.mean is not None]
    spread = ""
    if means:
        # As many decimals as the narrowest interval shows (2 significant digits of its half-width).
        d = max(decimals_for(c.diff.mean or 0.0, half_width(c.diff.lo, c.diff.hi)) for c in quiet if c.diff)
        lo, hi = fmt_value(min(means), d, signed=True), fmt_value(max(means), d, signed=True)
        if len(means) == 1:
            spread = f"the difference was {lo}"
        elif lo == hi:  # as shown: "from +0.004 to +0.004" reads like a typo
            spread = f"the difference was {lo} at each"
        else:
            spread = f"differences from {lo} to {hi}"
    power = detectable_phrase(quiet)
    where = f"at any {word}" if len(quiet) > 1 else f"at {quiet[0].label}"
    return (
        f"NEFTune did not measurably change {primary.label} {where} ({design}; {spread}, all within noise)"
        + (f"; the experiment {power}." if power else ".")
    )


def multiple_comparisons_sentence(summary: Summary) -> str:
    """The honest caveat: how many comparisons were made and how many false positives to expect."""
    n = summary.n_comparisons
    if n == 0:
        return "No setting could be compared with the baseline, so no difference is claimed."
    level = 100 * summary.confidence
    expected = n * (1 - summary.confidence)
    k = summary.n_distinguishable
    return (
        f"This report makes {n} comparisons with the baseline, each at {level:g}% confidence: even if "
        f"NEFTune changed nothing, about {expected:.2g} of them would look distinguishable by chance. "
        f"{k} {'looks' if k == 1 else 'look'} distinguishable here; trust effects that repeat across alphas and related metrics "
        f"more than an isolated one."
    )


def status_sentence(summary: Summary) -> str | None:
    """A warning when the experiment is unfinished or some arms failed; None when all arms finished."""
    if summary.status != "complete":
        return (
            f"Partial results (status {summary.status!r}): {summary.n_complete} of {summary.n_arms} arms "
            f"finished, {summary.n_failed} failed, {summary.n_pending} pending; every number will change."
        )
    if summary.n_failed:
        return f"{summary.n_failed} of {summary.n_arms} arms failed; their seeds are missing from the statistics."
    return None


def headline_sentences(summary: Summary) -> list[str]:
    """Plain-English headline: the verdict on the primary metric (:func:`verdict_sentence`), other
    quality metrics that moved, those that did not (with what could have been detected), and the
    multiple-comparisons caveat (the run's status is :func:`status_sentence`)."""
    out: list[str] = []
    base_info = next((i for i in summary.settings if i.is_baseline), None)
    if summary.baseline is None or base_info is None or not base_info.seeds_complete:
        out.append(
            "No finished baseline (alpha 0, no noise) arm, so nothing can be compared with training "
            "without NEFTune; the tables show each setting's own mean only."
        )
        return out
    quality = [m for m in summary.metrics if m.direction != "descriptive"]
    primary = summary.metric(summary.primary_metric) if summary.primary_metric else None
    if primary is not None:
        out.append(verdict_sentence(summary))
    rest = [m for m in quality if m is not primary]
    quiet = []
    for m in rest:
        if any(c.diff is not None and c.diff.distinguishable for c in m.compared):
            sentence = _metric_sentence(m, summary)
            if sentence:
                out.append(sentence)
        elif m.compared:
            quiet.append(m)
    if quiet:
        power = detectable_phrase([c for m in quiet for c in m.compared])
        where = (
            _join([m.label for m in quiet]) if len(quiet) <= 3 else f"the other {len(quiet)} quality metrics"
        )
        out.append(
            f"No detectable difference from the baseline in {where}"
            + (f" (they {power.replace('could detect', 'could detect differences of')})" if power else "")
            + (" — see 'Every metric'." if len(quiet) > 3 else ".")
        )
    out.append(multiple_comparisons_sentence(summary))
    return out


# --------------------------------------------------------------------------- paper signatures


@dataclass(frozen=True)
class Signature:
    """One of the paper's signatures of NEFTune, checked against the baseline."""

    name: str
    metric: str | None
    expected: str  # "higher" | "lower"
    status: str  # "seen" | "partly seen" | "not seen" | "opposite" | "cannot tell" | "not measured"
    seen_at: tuple[str, ...]
    opposite_at: tuple[str, ...]
    unclear_at: tuple[str, ...]
    sentence: str


#: The paper's signatures: (name, [(metric, what it measures)] in order of preference, expected).
#: "Longer answers" is about open-ended instructions (the paper's AlpacaEval answers), so it is
#: measured on the answers to the instruction prompts; without them, on the held-out prompts' answers.
_SIGNATURES = (
    (
        "longer answers",
        (
            ("length_chars/ifeval", "characters of the answers to the instruction prompts"),
            ("length_chars", "characters of the answers to the held-out task prompts"),
        ),
        HIGHER,
    ),
    ("higher training loss with noise off", (("loss/train", "noise-off loss on training records"),), HIGHER),
    (
        "lower ROUGE-L against the training responses",
        (("rouge_l_train", "answers to training prompts vs their training responses"),),
        LOWER,
    ),
)


def paper_signatures(summary: Summary) -> list[Signature]:
    """Check the paper's three signatures: longer answers (to the instruction prompts when there are
    any), higher noise-off training loss, lower ROUGE-L against the training responses."""
    pct = 100 * summary.confidence
    out = []
    for name, candidates, expected in _SIGNATURES:
        found = next(
            ((summary.metric(c), what) for c, what in candidates if summary.metric(c) is not None), None
        )
        if found is None:
            names = [c for c, _ in candidates]
            sentence = f"{sentence_case(name)}: not measured (no arm reported {_join(names)})."
            out.append(Signature(name, None, expected, "not measured", (), (), (), sentence))
            continue
        m, what = found
        opposite = LOWER if expected == HIGHER else HIGHER
        compared = m.compared
        seen = [c for c in compared if c.verdict == expected]
        against = [c for c in compared if c.verdict == opposite]
        unclear = [c for c in compared if c.verdict == NO_DIFFERENCE]
        head = f"{sentence_case(name)} ({what}; expected {expected} with noise)"
        if not compared:
            degenerate = any(c.verdict == NA_DEGENERATE for c in m.cells)
            status = "cannot tell"
            body = (
                "cannot tell: every difference has zero width (all answers scored alike)"
                if degenerate
                else "cannot tell: no setting pairs at least 2 seeds with the baseline"
            )
        else:
            status = (
                "seen"
                if len(seen) == len(compared)
                else "partly seen"
                if seen
                else "opposite"
                if against
                else "not seen"
            )
            bits = []
            if seen:
                bits.append(f"seen at {_join([_diff_phrase(c, pct) for c in seen])}")
            if against:
                bits.append(f"the opposite at {_join([_diff_phrase(c, pct) for c in against])}")
            if unclear:
                word = setting_word(summary.only_alpha_varies)
                power = detectable_phrase(unclear)
                bits.append(
                    f"within noise at {_others(unclear, word) if bits else _join([c.label for c in unclear])}"
                    + (f" ({power})" if power else "")
                )
            body = "; ".join(bits)
        out.append(
            Signature(
                name,
                m.name,
                expected,
                status,
                tuple(c.label for c in seen),
                tuple(c.label for c in against),
                tuple(c.label for c in unclear),
                f"{head}: {body}.",
            )
        )
    return out


# --------------------------------------------------------------------------- recommendation


@dataclass(frozen=True)
class Recommendation:
    """The setting to use (None when nothing beat the baseline beyond seed noise) and why."""

    metric: str
    recommended: Setting | None
    best_by_mean: Setting | None
    beats_baseline: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "recommended": self.recommended.to_dict() if self.recommended else None,
            "best_by_mean": self.best_by_mean.to_dict() if self.best_by_mean else None,
            "beats_baseline": self.beats_baseline,
            "reason": self.reason,
        }


def recommend(summary: Summary, primary_metric: str | None = None) -> Recommendation:
    """Pick the best setting by mean ``primary_metric`` and say why, in plain words.

    A setting is recommended only if it is the best by mean among the noisy settings
    *and* beat the baseline beyond seed noise (verdict ``better``); otherwise
    ``recommended`` is None and the reason says so. ``primary_metric`` defaults to
    the experiment's; it must have a direction (``loss/*``, ``accuracy/*``, ...).
    """
    name = primary_metric or summary.primary_metric
    if not name:
        raise ValueError("primary_metric is not given and the results name none (config.primary_metric)")
    direction = metric_direction(name)
    if direction == "descriptive":
        raise ValueError(
            f"primary_metric {name!r} has no better direction; use a loss/* or accuracy/* metric"
        )
    m = summary.metric(name)
    if m is None or not m.cells:
        return Recommendation(name, None, None, False, f"No finished arm reported {metric_label(name)}.")
    pct = 100 * summary.confidence
    sign = 1.0 if direction == "higher" else -1.0
    best = max(m.cells, key=lambda c: sign * c.estimate.mean)
    noisy = sorted((c for c in m.cells if not c.is_baseline), key=lambda c: -sign * c.estimate.mean)
    label = m.label
    n_word = "highest" if direction == "higher" else "lowest"

    def mean_phrase(c: Cell) -> str:
        """``0.325 (95% CI [0.288, 0.362], 3 seeds)``."""
        e = c.estimate
        seeds = f"{e.n} seed{'s' if e.n != 1 else ''}"
        if e.lo is None:
            return f"{fmt_value(e.mean)} ({seeds})"
        mean, _, ci = fmt_estimate(e.mean, e.lo, e.hi).partition(" ")
        return f"{mean} ({pct:g}% CI {ci}, {seeds})"

    base = next((c for c in m.cells if c.is_baseline), None)
    if base is None:
        return Recommendation(
            name,
            None,
            best.setting,
            False,
            f"{sentence_case(best.label)} had the {n_word} mean {label}, {mean_phrase(best)}, but no baseline (alpha 0) "
            "arm finished, so it is unknown whether NEFTune helps at all. Run the baseline before choosing.",
        )
    if not noisy:
        return Recommendation(
            name,
            None,
            best.setting,
            False,
            f"Only the baseline reported {label}; there is nothing to compare.",
        )

    def base_mean(c: Cell) -> str:
        """The baseline mean with as many decimals as ``c``'s estimate shows."""
        e = c.estimate
        if e.lo is None:
            return fmt_value(base.estimate.mean)
        return fmt_value(base.estimate.mean, decimals_for(e.mean, half_width(e.lo, e.hi)))

    worse = [c.label for c in noisy if c.verdict == WORSE]
    worse_note = (
        f" {sentence_case(_join(worse))} {'was' if len(worse) == 1 else 'were'} worse beyond seed noise."
        if worse
        else ""
    )
    better = [c for c in noisy if c.verdict == BETTER]
    if better:
        pick = better[0]
        d = pick.diff
        assert d is not None
        reason = (
            f"{sentence_case(pick.label)} is recommended: it beat the baseline beyond seed noise on {label} "
            f"({_diff_ci(d, pct)}, paired over {d.n} seeds, p {p_relation(d.p)}), with mean "
            f"{mean_phrase(pick)}, against {base_mean(pick)} without noise."
        )
        if pick is not noisy[0]:
            reason += (
                f" {sentence_case(noisy[0].label)} had a {'higher' if sign > 0 else 'lower'} mean "
                f"({fmt_value(noisy[0].estimate.mean)}), but its difference from the baseline is within "
                "seed noise."
            )
        others = [c for c in noisy if c is not pick]
        if others:
            runner = others[0]
            gap = paired_difference(pick.values, runner.values, summary.confidence)
            if gap.lo is not None and not gap.distinguishable:
                reason += (
                    f" The gap between {pick.label} and {runner.label} ({_diff_ci(gap, pct)}) is within "
                    "seed noise" + (", so either is a fair choice." if runner.verdict == BETTER else ".")
                )
            elif gap.distinguishable:
                reason += f" It also beat {runner.label} beyond seed noise."
        return Recommendation(name, pick.setting, best.setting, True, reason + worse_note)
    if best.is_baseline:
        return Recommendation(
            name,
            None,
            best.setting,
            False,
            f"Training without noise (alpha 0) had the {n_word} mean {label}, {mean_phrase(best)}; "
            f"no NEFTune setting beat it.{worse_note} On this evidence NEFTune does not help this model "
            "and data.",
        )
    top = noisy[0]
    d = top.diff
    assert d is not None
    if top.verdict == NO_DIFFERENCE:
        power = detectable_phrase([top])
        why = f"its difference from the baseline ({_diff_ci(d, pct)}, {d.n} seeds) is within noise" + (
            f"; the experiment {power}" if power else ""
        )
        if len(noisy) > 1:
            why += ", and no other setting beat the baseline either"
    elif top.verdict == WORSE:
        why = "paired by seed it was still worse than the baseline beyond seed noise"
    elif top.verdict == NA_DEGENERATE:
        why = "its paired answers all scored alike, so the difference has no interval to judge it by"
    elif top.verdict == NA_ONE_SEED:
        why = (
            "only one of its seeds pairs with the baseline, so its difference cannot be told from seed noise"
        )
    else:
        why = "it shares no seed with the baseline, so its difference cannot be judged"
    return Recommendation(
        name,
        None,
        top.setting,
        False,
        f"No setting is recommended over training without noise: {top.label} had the {n_word} mean "
        f"{label}, {mean_phrase(top)}, against {base_mean(top)} without noise, but {why}.{worse_note} "
        + (
            "More seeds would narrow the intervals."
            if top.verdict in (NO_DIFFERENCE, WORSE)
            else "Run at least 2 seeds, the same for every setting."
        ),
    )


# --------------------------------------------------------------------------- JSON


def _cell_dict(c: Cell) -> dict[str, Any]:
    seeds = sorted(c.values)
    e = c.estimate
    out: dict[str, Any] = {
        "setting": c.setting.to_dict(),
        "label": c.label,
        "is_baseline": c.is_baseline,
        "seeds": seeds,
        "values": [c.values[s] for s in seeds],
        "n": e.n,
        "mean": e.mean,
        "sd": e.sd,
        "ci": [e.lo, e.hi] if e.lo is not None else None,
        "diff": None,
        "verdict": c.verdict,
    }
    out["ci_covers"] = e.covers if e.lo is not None else None
    if c.diff is not None:
        out["diff"] = _diff_dict(c.diff)
    if c.diff_untruncated is not None:
        out["diff_untruncated"] = _diff_dict(c.diff_untruncated)
        out["verdict_untruncated"] = c.verdict_untruncated
    return out


def _diff_dict(d: PairedDifference) -> dict[str, Any]:
    return {
        "seeds": list(d.seeds),
        "mean": d.mean,
        "sd": d.sd,
        "ci": [d.lo, d.hi] if d.lo is not None else None,
        "p": d.p,
        "se": d.se,
        "df": d.df,
        "detectable_80": d.detectable,
        "covers": d.covers,
        "prompts_per_seed": d.n_prompts,
        "degenerate": d.degenerate,
    }


def summary_to_dict(summary: Summary) -> dict[str, Any]:
    """JSON-ready form of the summary plus headline, signatures, recommendation and caveat.

    Undefined quantities (an interval from one seed) are ``null``, never NaN.
    """
    rec = None
    if summary.primary_metric and metric_direction(summary.primary_metric) != "descriptive":
        rec = recommend(summary).to_dict()
    return {
        "schema": SUMMARY_SCHEMA,
        "kind": summary.kind,
        "status": summary.status,
        "confidence": summary.confidence,
        "primary_metric": summary.primary_metric,
        "baseline": summary.baseline.to_dict() if summary.baseline else None,
        "arms": {
            "total": summary.n_arms,
            "complete": summary.n_complete,
            "failed": summary.n_failed,
            "pending": summary.n_pending,
        },
        "settings": [
            {
                "setting": i.setting.to_dict(),
                "label": i.label,
                "is_baseline": i.is_baseline,
                "seeds_complete": list(i.seeds_complete),
                "failed": i.n_failed,
                "pending": i.n_pending,
            }
            for i in summary.settings
        ],
        "metrics": [
            {
                "name": m.name,
                "label": m.label,
                "direction": m.direction,
                "cells": [_cell_dict(c) for c in m.cells],
            }
            for m in summary.metrics
        ],
        "comparisons": {
            "total": summary.n_comparisons,
            "distinguishable": summary.n_distinguishable,
            "expected_by_chance": summary.n_comparisons * (1 - summary.confidence),
        },
        "same_prompts_across_seeds": summary.same_prompts,
        "interval_method": interval_method(summary),
        "status_note": status_sentence(summary),
        "verdict": verdict_sentence(summary),
        "headline": headline_sentences(summary),
        "signatures": [
            {
                "name": s.name,
                "metric": s.metric,
                "expected": s.expected,
                "status": s.status,
                "sentence": s.sentence,
            }
            for s in paper_signatures(summary)
        ],
        "recommendation": rec,
    }
