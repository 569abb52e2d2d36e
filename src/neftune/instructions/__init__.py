"""Verifiable instruction following (IFEval-like): constraint checkers and their metrics."""

from .checkers import KINDS, count_sentences, count_words, follows, follows_all, loose_variants, words

__all__ = ["KINDS", "count_sentences", "count_words", "follows", "follows_all", "loose_variants", "words"]
