"""Checkers for verifiable instructions (IFEval-like), strict and loose. Pure Python, no I/O.

A *constraint* is ``{"kind": <one of KINDS>, "args": {...}}`` (JSON-shaped, so it travels in a
record's ``meta``). :func:`follows` says whether a response follows one constraint.

Text units (regular expressions, no NLTK: the checkers must run offline, and NLTK's sentence
model is downloaded from NLTK's own server, not from the package registries):

- *word*: a run of letters/digits, with an inner apostrophe kept (``don't`` is one word);
- *sentence*: text up to ``.``, ``!`` or ``?`` followed by white space or the end, holding at
  least one word (so ``P.S.`` and ``e.g.`` can split a sentence: counts are approximate at
  abbreviations, the same for every arm);
- *paragraph*: the parts between markdown dividers ``***`` (IFEval's convention);
- *bullet*: a line starting with ``* `` or ``- ``.

Loose checking (IFEval's): the response also passes when any of its variants passes, the
variants being the response without its first line, without its last line, without both, and
each of these four with every ``*`` removed (markdown emphasis). An empty (or all-space)
response follows nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "KINDS",
    "count_sentences",
    "count_words",
    "follows",
    "follows_all",
    "loose_variants",
    "words",
]

_WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019][A-Za-z]+)?")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_BULLET = re.compile(r"^\s*[*-]\s+\S", re.MULTILINE)
_HIGHLIGHT = re.compile(r"\*[^\n*]+\*")
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]+\]")
_TITLE = re.compile(r"<<[^\n<>]+>>")
_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?\s*```$", re.DOTALL)
DIVIDER = "***"
RESPONSE_SEPARATOR = "******"


def words(text: str) -> list[str]:
    """The words of ``text`` (see the module docstring)."""
    return _WORD.findall(text)


def count_words(text: str) -> int:
    return len(words(text))


def count_sentences(text: str) -> int:
    """Sentences: pieces between end marks (``.!?`` then space/end) that hold a word."""
    return sum(1 for piece in _SENTENCE_END.split(text) if _WORD.search(piece))


def _relation(value: int, args: Mapping[str, Any]) -> bool:
    n = int(args["n"])
    relation = args["relation"]
    if relation == "at least":
        return value >= n
    if relation == "at most":
        return value <= n
    if relation == "exactly":
        return value == n
    raise ValueError(f"relation must be 'at least', 'at most' or 'exactly', got {relation!r}")


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


def _count_word(text: str, word: str) -> int:
    return len(re.findall(rf"\b{re.escape(word)}\b", text, re.IGNORECASE))


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\s*\*\*\*\s*", text.strip())]


def _paragraph_count(text: str, args: Mapping[str, Any]) -> bool:
    parts = _paragraphs(text)
    return all(parts) and len(parts) == int(args["n"])


def _json(text: str, _: Mapping[str, Any]) -> bool:
    s = text.strip()
    fence = _FENCE.match(s)
    if fence:
        s = fence.group(1).strip()
    try:
        json.loads(s)
    except json.JSONDecodeError:
        return False
    return True


def _sections(text: str, args: Mapping[str, Any]) -> bool:
    marker = str(args.get("marker", "Section"))
    parts = re.split(rf"\s?{re.escape(marker)}\s?\d+\s?", text)
    return len(parts) - 1 >= int(args["n"])


def _two_responses(text: str, _: Mapping[str, Any]) -> bool:
    parts = [p.strip() for p in text.split(RESPONSE_SEPARATOR)]
    return len(parts) == 2 and all(parts) and parts[0] != parts[1]


def _quotation(text: str, _: Mapping[str, Any]) -> bool:
    s = text.strip()
    return len(s) > 1 and s[0] == '"' and s[-1] == '"'


def _postscript(text: str, args: Mapping[str, Any]) -> bool:
    marker = str(args.get("marker", "P.S."))
    return re.search(rf"^\s*{re.escape(marker)}\s*\S", text, re.IGNORECASE | re.MULTILINE) is not None


def _starts_with(text: str, args: Mapping[str, Any]) -> bool:
    return text.strip().lower().startswith(str(args["phrase"]).strip().lower())


def _ends_with(text: str, args: Mapping[str, Any]) -> bool:
    return text.strip().lower().endswith(str(args["phrase"]).strip().lower())


def _repeat_request(text: str, args: Mapping[str, Any]) -> bool:
    return text.strip().lower().startswith(str(args["request"]).strip().lower())


#: Every constraint kind and its checker ``(response, args) -> bool``.
_CHECKERS: dict[str, Callable[[str, Mapping[str, Any]], bool]] = {
    "word_count": lambda t, a: _relation(count_words(t), a),
    "sentence_count": lambda t, a: _relation(count_sentences(t), a),
    "paragraph_count": _paragraph_count,
    "bullet_count": lambda t, a: len(_BULLET.findall(t)) == int(a["n"]),
    "highlights": lambda t, a: len(_HIGHLIGHT.findall(t)) >= int(a["n"]),
    "include_keywords": lambda t, a: all(_has_word(t, k) for k in a["keywords"]),
    "exclude_keyword": lambda t, a: not _has_word(t, a["keyword"]),
    "keyword_frequency": lambda t, a: _relation(_count_word(t, a["keyword"]), a),
    "lowercase": lambda t, a: t.islower(),
    "uppercase": lambda t, a: t.isupper(),
    "starts_with": _starts_with,
    "ends_with": _ends_with,
    "no_commas": lambda t, a: "," not in t,
    "title": lambda t, a: _TITLE.search(t) is not None,
    "postscript": _postscript,
    "json_format": _json,
    "repeat_request": _repeat_request,
    "placeholders": lambda t, a: len(_PLACEHOLDER.findall(t)) >= int(a["n"]),
    "letter_frequency": lambda t, a: _relation(t.lower().count(str(a["letter"]).lower()), a),
    "capital_words": lambda t, a: _relation(sum(w.isupper() for w in words(t)), a),
    "quotation": _quotation,
    "sections": _sections,
    "two_responses": _two_responses,
}

KINDS: tuple[str, ...] = tuple(_CHECKERS)
"""Every constraint kind the checkers know."""


def loose_variants(text: str) -> list[str]:
    """The response and its loose variants (see the module docstring), in a fixed order."""
    lines = text.split("\n")
    cut = [text, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return cut + [c.replace("*", "") for c in cut]


def follows(constraint: Mapping[str, Any], response: str, *, loose: bool = False) -> bool:
    """Whether ``response`` follows ``constraint`` (strict, or loose: any variant follows it)."""
    kind = constraint.get("kind")
    try:
        check = _CHECKERS[kind]
    except KeyError:
        raise ValueError(f"unknown constraint kind {kind!r}; known: {', '.join(KINDS)}") from None
    args = constraint.get("args") or {}
    candidates = loose_variants(response) if loose else [response]
    return any(check(c, args) for c in candidates if c.strip())


def follows_all(
    constraints: Sequence[Mapping[str, Any]], response: str, *, loose: bool = False
) -> list[bool]:
    """:func:`follows` for each constraint, in order."""
    return [follows(c, response, loose=loose) for c in constraints]
