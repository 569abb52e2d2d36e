"""Verifiable instruction following as Google's IFEval defines it: the 25 instruction checkers
(:mod:`.ifeval`), their text units (:mod:`.text`), the constraint kinds of the built-in data
(:mod:`.checkers`) and IFEval-format files (:mod:`.ifeval_format`).

Part of ``neftune.finetune``: may import the library and the rest of ``finetune``.
"""

from .checkers import KIND_IDS, KINDS, follows, follows_all, instruction_id
from .ifeval import INSTRUCTION_IDS, follows_instruction, loose_variants, normalize_kwargs
from .text import backends, count_sentences, count_words, words

__all__ = [
    "INSTRUCTION_IDS",
    "KINDS",
    "KIND_IDS",
    "backends",
    "count_sentences",
    "count_words",
    "follows",
    "follows_all",
    "follows_instruction",
    "instruction_id",
    "loose_variants",
    "normalize_kwargs",
    "words",
]
