"""Pure evaluation metrics (no torch): ROUGE-L, repetition, accuracy, confidence intervals.

Word tokens are ``\\w+`` runs of the lower-cased text, so punctuation is ignored.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from .data.tasks import Example, check_answer
from .instructions.checkers import follows_all

__all__ = [
    "PER_PROMPT_FILE",
    "accuracy",
    "accuracy_by_family",
    "alpacaeval_records",
    "exact_match",
    "following_by_kind",
    "following_rates",
    "instruction_following",
    "length_stats",
    "mean_rouge_l",
    "repetition_rate",
    "rouge_l",
    "word_tokens",
]

_WORD = re.compile(r"\w+")

#: Written by ``neftune eval`` next to ``eval.json``: each generation's length and score.
PER_PROMPT_FILE = "per_prompt.json"


def word_tokens(text: str) -> list[str]:
    """Lower-cased word tokens (``\\w+`` runs)."""
    return _WORD.findall(text.lower())


def _same_length(a: Sequence[Any], b: Sequence[Any], names: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{names} differ in length: {len(a)} != {len(b)}")
    if not a:
        raise ValueError(f"{names} are empty")


# --------------------------------------------------------------------------- text overlap


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if len(b) > len(a):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: harmonic mean of LCS/len(prediction) and LCS/len(reference) over word tokens.

    Two texts without any word token score 1.0; exactly one empty scores 0.0.

    Why not Google's ``rouge-score`` (PyPI): it is not installed in the project's environment,
    and its source in google-research ``rouge/`` (setup.py of version 0.0.7, tokenize.py,
    rouge_scorer.py; PyPI's newest, 0.1.2, was not read) needs ``absl-py``, ``nltk`` (imported
    for its Porter stemmer), ``numpy`` and ``six``, none of which neftune needs. It also scores
    differently: its tokenizer keeps only ``[a-z0-9]`` runs of the lower-cased text (non-ASCII
    letters are dropped and ``_`` splits words; :func:`word_tokens` keeps Unicode ``\\w``
    runs), and its ROUGE-L is 0 when either text has no token (1.0 here when both have none).
    """
    p, r = word_tokens(prediction), word_tokens(reference)
    if not p or not r:
        return 1.0 if not p and not r else 0.0
    lcs = _lcs_length(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def mean_rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean :func:`rouge_l` over aligned pairs."""
    _same_length(predictions, references, "predictions and references")
    return statistics.fmean(rouge_l(p, r) for p, r in zip(predictions, references))


def repetition_rate(text: str, n: int = 2) -> float:
    """Fraction of word n-grams that repeat an earlier n-gram of the same text.

    ``1 - unique / total`` over the ``len(tokens) - n + 1`` n-grams; 0.0 when the
    text has fewer than ``n`` tokens. ``"a b a b a b"`` has bigrams ab, ba, ab, ba,
    ab: 2 unique of 5, so the rate is 0.6. Degenerate looping outputs approach 1.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    tokens = word_tokens(text)
    total = len(tokens) - n + 1
    if total <= 0:
        return 0.0
    unique = len({tuple(tokens[i : i + n]) for i in range(total)})
    return 1.0 - unique / total


def exact_match(prediction: str, reference: str) -> bool:
    """Equality after stripping, collapsing whitespace and case-folding."""
    return " ".join(prediction.split()).casefold() == " ".join(reference.split()).casefold()


# --------------------------------------------------------------------------- task accuracy


def accuracy(examples: Sequence[Example], predictions: Sequence[str]) -> float:
    """Fraction of predictions that :func:`~neftune.finetune.data.check_answer` accepts."""
    _same_length(examples, predictions, "examples and predictions")
    return sum(check_answer(e, p) for e, p in zip(examples, predictions)) / len(examples)


def accuracy_by_family(examples: Sequence[Example], predictions: Sequence[str]) -> dict[str, float]:
    """Accuracy per task family, keys sorted by family name."""
    _same_length(examples, predictions, "examples and predictions")
    hits: dict[str, list[bool]] = {}
    for e, p in zip(examples, predictions):
        hits.setdefault(e.family, []).append(check_answer(e, p))
    return {f: sum(v) / len(v) for f, v in sorted(hits.items())}


# --------------------------------------------------------------------------- instruction following


def instruction_following(
    constraints: Sequence[Sequence[Mapping[str, Any]]], responses: Sequence[str]
) -> dict[str, float]:
    """IFEval's four accuracies over aligned prompts (their constraint lists) and responses.

    ``prompt_strict`` / ``prompt_loose``: fraction of prompts whose every constraint is followed;
    ``instruction_strict`` / ``instruction_loose``: fraction of all constraints followed (so a
    prompt with three constraints weighs three times as much). See :mod:`neftune.finetune.instructions`.
    """
    _same_length(constraints, responses, "constraint lists and responses")
    return following_rates(
        [follows_all(c, r) for c, r in zip(constraints, responses)],
        [follows_all(c, r, loose=True) for c, r in zip(constraints, responses)],
    )


def following_rates(strict: Sequence[Sequence[bool]], loose: Sequence[Sequence[bool]]) -> dict[str, float]:
    """:func:`instruction_following` from each prompt's per-constraint results (:func:`follows_all`)."""
    out = {}
    for mode, hits in (("strict", strict), ("loose", loose)):
        n_instructions = sum(len(h) for h in hits)
        out[f"prompt_{mode}"] = sum(all(h) for h in hits) / len(hits)
        out[f"instruction_{mode}"] = sum(map(sum, hits)) / n_instructions if n_instructions else math.nan
    return out


def following_by_kind(
    constraints: Sequence[Sequence[Mapping[str, Any]]], responses: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per constraint kind: ``{"n", "strict", "loose"}`` (fractions of that kind's constraints followed)."""
    _same_length(constraints, responses, "constraint lists and responses")
    acc: dict[str, list[int]] = {}
    for cs, r in zip(constraints, responses):
        for c, strict, loose in zip(cs, follows_all(cs, r), follows_all(cs, r, loose=True)):
            n_strict_loose = acc.setdefault(c["kind"], [0, 0, 0])
            n_strict_loose[0] += 1
            n_strict_loose[1] += strict
            n_strict_loose[2] += loose
    return {k: {"n": n, "strict": a / n, "loose": b / n} for k, (n, a, b) in sorted(acc.items())}


def _count_tokens(tokenizer: Any, text: str) -> int:
    if hasattr(tokenizer, "encode"):
        try:
            return len(tokenizer.encode(text, add_special_tokens=False))
        except TypeError:
            return len(tokenizer.encode(text))
    if callable(tokenizer):
        return len(tokenizer(text))
    raise TypeError("tokenizer must have an encode() method or be a callable returning tokens")


def length_stats(texts: Sequence[str], tokenizer: Any = None) -> dict[str, float]:
    """Mean length of ``texts`` in characters, words and (with a tokenizer) tokens.

    ``tokenizer`` is a Hugging Face tokenizer (special tokens are not counted), any
    object with ``encode(text)``, or a callable returning a sequence of tokens.
    Returns ``n``, ``mean_chars``, ``mean_words`` and maybe ``mean_tokens``; means
    are 0.0 when ``texts`` is empty.
    """
    n = len(texts)
    out: dict[str, float] = {
        "n": n,
        "mean_chars": sum(len(t) for t in texts) / n if n else 0.0,
        "mean_words": sum(len(t.split()) for t in texts) / n if n else 0.0,
    }
    if tokenizer is not None:
        out["mean_tokens"] = sum(_count_tokens(tokenizer, t) for t in texts) / n if n else 0.0
    return out


# --------------------------------------------------------------------------- export


def alpacaeval_records(
    instructions: Sequence[str], outputs: Sequence[str], generator: str
) -> list[dict[str, str]]:
    """Model outputs in the AlpacaEval format (``instruction``, ``output``, ``generator``)."""
    if len(instructions) != len(outputs):
        raise ValueError(f"instructions and outputs differ in length: {len(instructions)} != {len(outputs)}")
    return [{"instruction": i, "output": o, "generator": generator} for i, o in zip(instructions, outputs)]
