"""Pure metrics against hand-computed values."""

from __future__ import annotations

import pytest

from neftune.finetune.data import Example
from neftune.finetune.metrics import (
    accuracy,
    accuracy_by_family,
    alpacaeval_records,
    exact_match,
    length_stats,
    mean_rouge_l,
    repetition_rate,
    rouge_l,
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


# --------------------------------------------------------------------------- export


def test_alpacaeval_records() -> None:
    recs = alpacaeval_records(["Say hi", "Count"], ["hi", "1 2 3"], generator="neftune-a5")
    assert recs == [
        {"instruction": "Say hi", "output": "hi", "generator": "neftune-a5"},
        {"instruction": "Count", "output": "1 2 3", "generator": "neftune-a5"},
    ]
    with pytest.raises(ValueError):
        alpacaeval_records(["a"], [], generator="g")
