"""What the report calls metrics and settings, and which way each metric is better.

The shared vocabulary of :mod:`.stats` (which orders metrics and judges verdicts by their
direction), :mod:`.findings`, :mod:`.plots` and :mod:`.report`. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .setting import Setting

__all__ = [
    "DIRECTION_TEXT",
    "NO_NOISE_LABEL",
    "TRAIN_LOSS_NOISE_ON",
    "confidence_text",
    "metric_direction",
    "metric_label",
    "metric_sort_key",
    "sentence_case",
    "setting_labels",
    "setting_text",
    "setting_word",
]

#: Pseudo-metric taken from ``arm["train"]["train_loss"]``: the trainer's loss with noise ON.
TRAIN_LOSS_NOISE_ON = "train/train_loss"

#: How each :func:`metric_direction` is written next to a metric's name in tables and plots.
DIRECTION_TEXT = {"higher": "higher is better", "lower": "lower is better", "descriptive": "descriptive"}

#: The label of the setting without noise (alpha 0).
NO_NOISE_LABEL = "alpha 0 (no noise)"


# --------------------------------------------------------------------------- metrics


def metric_direction(name: str) -> str:
    """``"lower"`` / ``"higher"`` (which way is better) or ``"descriptive"`` (no better side).

    ``loss/train`` (noise off) is descriptive: rising with alpha is the paper's
    "less overfitting" signature, not a defect. Unknown metrics are descriptive,
    so nothing is ever called better or worse without a known meaning.
    """
    if name in ("loss/train", TRAIN_LOSS_NOISE_ON):
        return "descriptive"
    if name.startswith("loss/") or name == "repetition_2gram":
        return "lower"
    if name.startswith(("accuracy/", "ifeval/")):
        return "higher"
    return "descriptive"


_SPLIT_NAMES = {
    "eval_seen_templates": "seen templates",
    "eval_heldout_templates": "held-out templates",
    "eval_heldout_families": "held-out task families",
}

_FIXED_LABELS = {
    "loss/train": "training loss, noise off",
    TRAIN_LOSS_NOISE_ON: "training loss, noise on (trainer log)",
    "rouge_l_train": "ROUGE-L vs training responses",
    "length_chars": "answer length in characters",
    "length_tokens": "answer length in tokens",
    "repetition_2gram": "repeated bigrams in answers",
    "length_chars/ifeval": "length of instruction-prompt answers in characters",
    "truncated/ifeval": "instruction answers cut at the generation cap",
    "truncated/tasks": "task answers cut at the generation cap",
}

_IFEVAL_LEVELS = {"prompt": "prompts with every instruction followed", "instruction": "instructions followed"}
_IFEVAL_SPLITS = {"seen_types": "seen instruction types", "heldout_types": "held-out instruction types"}


def metric_label(name: str) -> str:
    """Plain-words name of a metric key: ``accuracy/eval_heldout_templates`` -> ``accuracy on held-out
    templates``, ``loss/eval`` -> ``held-out loss``; unknown keys are returned unchanged."""
    if name in _FIXED_LABELS:
        return _FIXED_LABELS[name]
    if name.startswith("ifeval/"):
        _, measure, *split = name.split("/")
        level, _, mode = measure.partition("_")
        if level in _IFEVAL_LEVELS and mode in ("strict", "loose") and len(split) <= 1:
            where = f", {_IFEVAL_SPLITS.get(split[0], split[0])}" if split else ""
            return f"{_IFEVAL_LEVELS[level]} ({mode}{where})"
        return name
    kind, _, split = name.partition("/")
    if kind in ("loss", "accuracy") and split:
        if split == "eval":
            return f"held-out {kind}"
        return f"{kind} on {_SPLIT_NAMES.get(split, split)}"
    return name


_ORDER_PREFIXES = ("ifeval/", "accuracy/", "loss/eval", "loss/train", TRAIN_LOSS_NOISE_ON)
_ORDER_FIXED = (
    "rouge_l_train",
    "length_tokens",
    "length_chars",
    "length_chars/ifeval",
    "repetition_2gram",
    "truncated/ifeval",
    "truncated/tasks",
)


def metric_sort_key(name: str, primary: str | None) -> tuple[int, str]:
    """Report order: the primary metric, instruction following, accuracy, losses, then descriptive ones."""
    if name == primary:
        return (0, "")
    for rank, prefix in enumerate(_ORDER_PREFIXES, 1):
        if name.startswith(prefix):
            return (rank, name)
    return (10 + _ORDER_FIXED.index(name), name) if name in _ORDER_FIXED else (20, name)


# --------------------------------------------------------------------------- settings


def setting_labels(settings: Iterable[Setting]) -> dict[Setting, str]:
    """Short unique labels: ``alpha 5``; distribution / schedule added only where they vary.

    The no-noise setting is :data:`NO_NOISE_LABEL`.
    """
    settings = list(settings)
    noisy = [s for s in settings if not s.is_no_noise]
    show_dist = len({s.distribution for s in noisy}) > 1 or any(s.distribution != "uniform" for s in noisy)
    show_sched = any(s.schedule is not None for s in noisy)
    show_scaling = any(s.scaling != "per_sequence" for s in noisy)
    labels = {}
    for s in settings:
        if s.is_no_noise:
            labels[s] = NO_NOISE_LABEL
            continue
        parts = [f"alpha {s.alpha:g}"]
        if show_dist:
            parts.append(s.distribution)
        if show_sched and s.schedule is not None:
            parts.append(f"{s.schedule} schedule")
        if show_scaling:
            parts.append(f"{s.scaling.replace('_', '-')} scaling")
        labels[s] = ", ".join(parts)
    return labels


def setting_text(setting: Setting, labels: Mapping[Setting, str]) -> str:
    """The setting's label in ``labels``, or a full description when it has none."""
    if setting in labels:
        return labels[setting]
    if setting.is_no_noise:
        return NO_NOISE_LABEL
    return f"alpha {setting.alpha:g}, {setting.distribution}, {setting.schedule or 'constant'} schedule"


def setting_word(only_alpha_varies: bool) -> str:
    """What one compared setting is called in sentences: ``alpha`` in a plain alpha compare."""
    return "alpha" if only_alpha_varies else "setting"


# --------------------------------------------------------------------------- words


def sentence_case(text: str) -> str:
    """``text`` with its first letter capitalised, the rest kept (``ROUGE-L`` stays)."""
    return text[:1].upper() + text[1:]


def confidence_text(confidence: float) -> str:
    """A confidence level as a percentage: ``0.95`` -> ``95%``."""
    return f"{100 * confidence:g}%"
