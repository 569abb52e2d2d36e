"""Constraints of the built-in instruction data, each one IFEval instruction. Pure Python, no I/O.

A *constraint* is ``{"kind": <kind>, "args": {...}}`` (JSON-shaped, so it travels in a record's
``meta``). The kind is a short name of one IFEval instruction id (:data:`KIND_IDS`, e.g.
``word_count`` is ``length_constraints:number_words``) or an IFEval id itself, and the args are that
instruction's arguments under IFEval's names. :func:`follows` checks a response with IFEval's
checker (:mod:`neftune.finetune.instructions.ifeval`), strictly or loosely; so the ``ifeval/*`` metrics of
the built-in data and of an IFEval-format file are computed by the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .ifeval import INSTRUCTION_IDS, follows_instruction, loose_variants
from .text import count_sentences, count_words, words

__all__ = [
    "DIVIDER",
    "KINDS",
    "KIND_IDS",
    "RESPONSE_SEPARATOR",
    "count_sentences",
    "count_words",
    "follows",
    "follows_all",
    "instruction_id",
    "loose_variants",
    "words",
]

DIVIDER = "***"  # between paragraphs (length_constraints:number_paragraphs)
RESPONSE_SEPARATOR = "******"  # between the two answers (combination:two_responses)

KIND_IDS: dict[str, str] = {
    "word_count": "length_constraints:number_words",
    "sentence_count": "length_constraints:number_sentences",
    "paragraph_count": "length_constraints:number_paragraphs",
    "bullet_count": "detectable_format:number_bullet_lists",
    "highlights": "detectable_format:number_highlighted_sections",
    "include_keywords": "keywords:existence",
    "exclude_keyword": "keywords:forbidden_words",
    "keyword_frequency": "keywords:frequency",
    "lowercase": "change_case:english_lowercase",
    "uppercase": "change_case:english_capital",
    "first_word": "length_constraints:nth_paragraph_first_word",
    "ends_with": "startend:end_checker",
    "no_commas": "punctuation:no_comma",
    "title": "detectable_format:title",
    "postscript": "detectable_content:postscript",
    "json_format": "detectable_format:json_format",
    "repeat_request": "combination:repeat_prompt",
    "placeholders": "detectable_content:number_placeholders",
    "letter_frequency": "keywords:letter_frequency",
    "capital_words": "change_case:capital_word_frequency",
    "quotation": "startend:quotation",
    "sections": "detectable_format:multiple_sections",
    "two_responses": "combination:two_responses",
}
"""Short name of each IFEval instruction the built-in data uses -> its IFEval id."""

KINDS: tuple[str, ...] = tuple(KIND_IDS)
"""The short constraint kinds (any IFEval id is accepted as a kind too)."""


def instruction_id(kind: str) -> str:
    """The IFEval id of a constraint kind (a short name or an id); ``ValueError`` when unknown."""
    if kind in KIND_IDS:
        return KIND_IDS[kind]
    if kind in INSTRUCTION_IDS:
        return kind
    raise ValueError(
        f"unknown constraint kind {kind!r}; known: {', '.join(KINDS)} or an IFEval instruction id"
    )


def follows(constraint: Mapping[str, Any], response: str, *, loose: bool = False) -> bool:
    """Whether ``response`` follows ``constraint`` by IFEval's definition (strict, or loose)."""
    return follows_instruction(
        instruction_id(constraint.get("kind")), constraint.get("args"), response, loose=loose
    )


def follows_all(
    constraints: Sequence[Mapping[str, Any]], response: str, *, loose: bool = False
) -> list[bool]:
    """:func:`follows` for each constraint, in order."""
    return [follows(c, response, loose=loose) for c in constraints]
