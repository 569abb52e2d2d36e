"""Pure metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from neftune.data import Example
from neftune.metrics import (
    accuracy,
    accuracy_by_family,
    alpacaeval_records,
    exact_match,
    length_stats,
    mean_and_ci,
    mean_rouge_l,
    paired_difference_ci,
    repetition_rate,
    rouge_l,
    student_t_cdf,
    student_t_ppf,
    word_tokens,
)

# --------------------------------------------------------------------------- ROUGE-L


def test_rouge_l_hand_computed() -> None:
    # LCS("the cat sat on the mat", "the cat on the mat") = 5; P = 5/6, R = 5/5
    p, r = 5 / 6, 5 / 5
    assert rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(2 * p * r / (p + r))
    assert rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(10 / 11)
    # non-contiguous LCS: "a c d" (3 of 4 on both sides)
    assert rouge_l("a b c d", "a c d b") == pytest.approx(0.75)
    # P = 1/1, R = 1/4 -> F = 2 * 0.25 / 1.25 = 0.4
    assert rouge_l("cat", "the cat is here") == pytest.approx(0.4)


def test_rouge_l_edge_cases() -> None:
    assert rouge_l("Hello, World!", "hello world") == 1.0
    assert rouge_l("a b c", "x y z") == 0.0
    assert rouge_l("", "") == 1.0
    assert rouge_l("...", "") == 1.0
    assert rouge_l("", "words here") == 0.0
    assert rouge_l("words here", "") == 0.0
    for a, b in [("the cat sat", "a cat sat down"), ("x y x y", "y x")]:
        assert rouge_l(a, b) == pytest.approx(rouge_l(b, a))


def test_mean_rouge_l() -> None:
    assert mean_rouge_l(["a b", "x"], ["a b", "y"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="differ in length"):
        mean_rouge_l(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        mean_rouge_l([], [])


def test_word_tokens() -> None:
    assert word_tokens("Hello, WORLD! it's 42.") == ["hello", "world", "it", "s", "42"]
    # Unicode letters are words and "_" joins (rouge-score's [a-z0-9] runs would give "caf", "snake", "case").
    assert word_tokens("Café snake_case Straße") == ["café", "snake_case", "straße"]
    assert rouge_l("Café au lait", "café") == pytest.approx(0.5)  # P = 1/3, R = 1/1


# --------------------------------------------------------------------------- repetition


def test_repetition_rate_hand_computed() -> None:
    # bigrams ab, ba, ab, ba, ab: 2 unique of 5
    assert repetition_rate("a b a b a b") == pytest.approx(0.6)
    assert repetition_rate("one two three four") == 0.0
    # unigrams: the, the, the, cat -> 2 unique of 4
    assert repetition_rate("the the the cat", n=1) == pytest.approx(0.5)
    # trigrams of "x y z x y z x": xyz yzx zxy xyz yzx -> 3 unique of 5
    assert repetition_rate("x y z x y z x", n=3) == pytest.approx(0.4)
    assert repetition_rate("I like it. I like it. I like it.") == pytest.approx(1 - 3 / 8)


def test_repetition_rate_short_texts() -> None:
    assert repetition_rate("") == 0.0
    assert repetition_rate("single") == 0.0
    assert repetition_rate("two words", n=3) == 0.0
    with pytest.raises(ValueError):
        repetition_rate("a b", n=0)


def test_exact_match() -> None:
    assert exact_match("  Hello   World ", "hello world")
    assert exact_match("a\nb", "A b")
    assert not exact_match("hello world.", "hello world")


# --------------------------------------------------------------------------- accuracy


def _ex(family: str, output: str) -> Example:
    return Example("q", "", output, family=family, template=0)


def test_accuracy_and_by_family() -> None:
    examples = [_ex("add", "5"), _ex("add", "7"), _ex("palindrome", "yes"), _ex("add", "10")]
    predictions = ["5", "8", "Yes", "10\nbecause"]
    assert accuracy(examples, predictions) == pytest.approx(0.75)
    assert accuracy_by_family(examples, predictions) == {"add": pytest.approx(2 / 3), "palindrome": 1.0}
    assert list(accuracy_by_family(examples[::-1], predictions[::-1])) == ["add", "palindrome"]
    with pytest.raises(ValueError, match="differ in length"):
        accuracy(examples, predictions[:2])


# --------------------------------------------------------------------------- lengths


class _EncodeTokenizer:
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [ord(c) for c in text.replace(" ", "")]
        return [1, *ids] if add_special_tokens else ids


class _PlainEncode:
    def encode(self, text: str) -> list[str]:
        return text.split()


def test_length_stats() -> None:
    texts = ["ab cd", "efg"]
    stats = length_stats(texts)
    assert stats == {"n": 2, "mean_chars": 4.0, "mean_words": 1.5}
    # special tokens are not counted: (4 + 3) / 2
    assert length_stats(texts, _EncodeTokenizer())["mean_tokens"] == pytest.approx(3.5)
    assert length_stats(texts, _PlainEncode())["mean_tokens"] == pytest.approx(1.5)
    assert length_stats(texts, list)["mean_tokens"] == pytest.approx(4.0)
    assert length_stats([]) == {"n": 0, "mean_chars": 0.0, "mean_words": 0.0}
    with pytest.raises(TypeError):
        length_stats(texts, tokenizer=3)


# --------------------------------------------------------------------------- Student t and CIs


@pytest.mark.parametrize(
    ("q", "df", "expected"),
    [
        (0.975, 1, 12.706),
        (0.975, 2, 4.303),
        (0.975, 4, 2.776),
        (0.975, 9, 2.262),
        (0.975, 10, 2.228),
        (0.975, 30, 2.042),
        (0.95, 5, 2.015),
        (0.995, 3, 5.841),
        (0.995, 20, 2.845),
        (0.975, 100000, 1.960),
        (0.995, 100000, 2.576),
    ],
)
def test_t_quantiles_match_tables(q: float, df: int, expected: float) -> None:
    assert student_t_ppf(q, df) == pytest.approx(expected, abs=5e-4)
    assert student_t_ppf(1 - q, df) == pytest.approx(-expected, abs=5e-4)


def test_t_closed_forms_and_inverse() -> None:
    # df = 1 is Cauchy, df = 2 has a closed form
    for q in (0.6, 0.9, 0.99):
        assert student_t_ppf(q, 1) == pytest.approx(math.tan(math.pi * (q - 0.5)), rel=1e-9)
        assert student_t_ppf(q, 2) == pytest.approx((2 * q - 1) / math.sqrt(2 * q * (1 - q)), rel=1e-9)
    for df in (1, 3, 7.5, 50):
        for q in (0.01, 0.3, 0.5, 0.8, 0.999):
            assert student_t_cdf(student_t_ppf(q, df), df) == pytest.approx(q, abs=1e-10)
    assert student_t_cdf(0.0, 4) == 0.5
    assert student_t_cdf(math.inf, 4) == 1.0
    with pytest.raises(ValueError):
        student_t_ppf(1.0, 3)
    with pytest.raises(ValueError):
        student_t_ppf(0.9, 0)


def test_t_quantiles_agree_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 5, 9, 29, 200):
        for q in (0.55, 0.9, 0.975, 0.995, 0.9995):
            assert student_t_ppf(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-8)


def test_mean_and_ci_hand_computed() -> None:
    # mean 2, s = 1, n = 3: half-width = t_{0.975,2} / sqrt(3) = 4.3027 / 1.7321 = 2.4841
    mean, lo, hi = mean_and_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert lo == pytest.approx(2 - 2.48414, abs=1e-4)
    assert hi == pytest.approx(2 + 2.48414, abs=1e-4)
    # ten values 1..10: mean 5.5, s = 3.02765, t_{0.975,9} = 2.26216 -> half 2.16585
    mean, lo, hi = mean_and_ci(list(range(1, 11)))
    assert (mean, lo, hi) == pytest.approx((5.5, 5.5 - 2.16585, 5.5 + 2.16585), abs=1e-4)
    # 90% is narrower than 95%
    _, lo90, hi90 = mean_and_ci(list(range(1, 11)), confidence=0.9)
    assert lo < lo90 < hi90 < hi


def test_mean_and_ci_edge_cases() -> None:
    assert mean_and_ci([4, 4, 4]) == (4.0, 4.0, 4.0)
    mean, lo, hi = mean_and_ci([0.7])
    assert mean == 0.7 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError):
        mean_and_ci([])
    with pytest.raises(ValueError):
        mean_and_ci([1, 2], confidence=1.0)


def test_paired_difference_ci() -> None:
    mean, lo, hi = paired_difference_ci([3.0, 4.0, 5.0], [2.0, 2.0, 2.0])
    assert (mean, lo, hi) == pytest.approx(mean_and_ci([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError):
        paired_difference_ci([1.0], [1.0, 2.0])


# --------------------------------------------------------------------------- export


def test_alpacaeval_records() -> None:
    recs = alpacaeval_records(["Say hi", "Count"], ["hi", "1 2 3"], generator="neftune-a5")
    assert recs == [
        {"instruction": "Say hi", "output": "hi", "generator": "neftune-a5"},
        {"instruction": "Count", "output": "1 2 3", "generator": "neftune-a5"},
    ]
    with pytest.raises(ValueError):
        alpacaeval_records(["a"], [], generator="g")
