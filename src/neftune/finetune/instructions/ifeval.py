"""IFEval's 25 verifiable instructions, by instruction id, as Google's IFEval defines them.

An instruction is an id (``"length_constraints:number_words"``) and its keyword arguments with
IFEval's names (``{"num_words": 100, "relation": "less than"}``). :func:`follows_instruction`
says whether a response follows it, strictly or loosely, with IFEval's rules:

- strict: the response as it is; a response that is empty or all white space follows nothing;
- loose: any of 8 variants follows it: the response, it without its first line, without its last
  line, without both (each stripped), and these four with every ``*`` removed (empty variants are
  skipped).

Each checker below states IFEval's definition in words. Relations are IFEval's two: ``"less than"``
(strictly fewer) and ``"at least"``. Keywords, forbidden words, custom postscript markers and
section markers are regular expressions in IFEval (it does not escape them, so ``"e.g"`` also
matches ``"eag"``); they are here too, and a text that is not a valid regular expression (on which
IFEval would crash) is matched literally. The counts of words, sentences and word tokens and the
language detection are :mod:`neftune.finetune.instructions.text`'s (deviations without the optional extra
are listed there and in ``docs/ifeval.md``).

Arguments are checked before any response is scored (:func:`normalize_kwargs`): IFEval fills a
missing argument with a random value, which would make a score irreproducible, so a missing or
ill-typed argument is an error here; ``None`` values (as in the Hugging Face copy of IFEval, whose
every row lists every argument name) are dropped first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from .text import count_sentences, count_words, detect_language, has_language_detector, word_tokens

__all__ = [
    "CONSTRAINED_RESPONSES",
    "INSTRUCTION_ARGS",
    "INSTRUCTION_IDS",
    "RELATIONS",
    "check_instruction",
    "follows_instruction",
    "loose_variants",
    "needs_language_detector",
    "normalize_kwargs",
]

RELATIONS = ("less than", "at least")
CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")

# Argument kinds: "count" a non-negative int, "text" a non-empty string, "words" a non-empty list of
# non-empty strings, "relation" one of RELATIONS, "letter" a single character.
INSTRUCTION_ARGS: dict[str, dict[str, str]] = {
    "keywords:existence": {"keywords": "words"},
    "keywords:frequency": {"keyword": "text", "frequency": "count", "relation": "relation"},
    "keywords:forbidden_words": {"forbidden_words": "words"},
    "keywords:letter_frequency": {"letter": "letter", "let_frequency": "count", "let_relation": "relation"},
    "language:response_language": {"language": "text"},
    "length_constraints:number_sentences": {"num_sentences": "count", "relation": "relation"},
    "length_constraints:number_paragraphs": {"num_paragraphs": "count"},
    "length_constraints:number_words": {"num_words": "count", "relation": "relation"},
    "length_constraints:nth_paragraph_first_word": {
        "num_paragraphs": "count",
        "nth_paragraph": "count",
        "first_word": "text",
    },
    "detectable_content:number_placeholders": {"num_placeholders": "count"},
    "detectable_content:postscript": {"postscript_marker": "text"},
    "detectable_format:number_bullet_lists": {"num_bullets": "count"},
    "detectable_format:constrained_response": {},
    "detectable_format:number_highlighted_sections": {"num_highlights": "count"},
    "detectable_format:multiple_sections": {"section_spliter": "text", "num_sections": "count"},
    "detectable_format:json_format": {},
    "detectable_format:title": {},
    "combination:two_responses": {},
    "combination:repeat_prompt": {"prompt_to_repeat": "text"},
    "startend:end_checker": {"end_phrase": "text"},
    "change_case:capital_word_frequency": {"capital_frequency": "count", "capital_relation": "relation"},
    "change_case:english_capital": {},
    "change_case:english_lowercase": {},
    "punctuation:no_comma": {},
    "startend:quotation": {},
}
"""Every IFEval instruction id and its arguments (name -> kind)."""

INSTRUCTION_IDS: tuple[str, ...] = tuple(INSTRUCTION_ARGS)


# --------------------------------------------------------------------------- arguments


def _arg_error(instruction_id: str, name: str, want: str, got: Any) -> ValueError:
    return ValueError(f"{instruction_id}: argument {name!r} must be {want}, got {got!r}")


def normalize_kwargs(instruction_id: str, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """IFEval's arguments of one instruction, checked; raises ``ValueError`` saying what is wrong."""
    if instruction_id not in INSTRUCTION_ARGS:
        raise ValueError(
            f"unknown IFEval instruction id {instruction_id!r}; known: {', '.join(INSTRUCTION_IDS)}"
        )
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ValueError(f"{instruction_id}: arguments must be a JSON object, got {kwargs!r}")
    given = {k: v for k, v in (kwargs or {}).items() if v is not None}
    spec = INSTRUCTION_ARGS[instruction_id]
    extra = sorted(set(given) - set(spec))
    if extra:
        expected = ", ".join(spec) or "none"
        raise ValueError(
            f"{instruction_id}: unexpected argument(s) {', '.join(extra)} (expected: {expected})"
        )
    out: dict[str, Any] = {}
    for name, kind in spec.items():
        if name not in given:
            raise ValueError(f"{instruction_id}: missing argument {name!r} (expected: {', '.join(spec)})")
        v = given[name]
        if kind == "count":
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise _arg_error(instruction_id, name, "a whole number >= 0", v)
        elif kind == "text":
            if not isinstance(v, str) or not v.strip():
                raise _arg_error(instruction_id, name, "a non-empty string", v)
        elif kind == "words":
            if not isinstance(v, list) or not v or not all(isinstance(w, str) and w for w in v):
                raise _arg_error(instruction_id, name, "a non-empty list of non-empty strings", v)
        elif kind == "relation":
            if v not in RELATIONS:
                raise _arg_error(instruction_id, name, "'less than' or 'at least'", v)
        elif kind == "letter" and (not isinstance(v, str) or len(v.strip()) != 1):
            raise _arg_error(instruction_id, name, "a single letter", v)
        out[name] = v
    if instruction_id == "length_constraints:nth_paragraph_first_word" and not (
        1 <= out["nth_paragraph"] <= out["num_paragraphs"]
    ):
        raise _arg_error(
            instruction_id,
            "nth_paragraph",
            f"between 1 and num_paragraphs ({out['num_paragraphs']})",
            out["nth_paragraph"],
        )
    return out


def needs_language_detector(instruction_id: str) -> bool:
    """Whether checking ``instruction_id`` as IFEval does needs langdetect."""
    return instruction_id in (
        "language:response_language",
        "change_case:english_capital",
        "change_case:english_lowercase",
    )


# --------------------------------------------------------------------------- the checkers


def _regex(text: str, flags: int = 0, before: str = "", after: str = "") -> re.Pattern[str]:
    """``before + text + after`` as IFEval builds it: ``text`` a regular expression, unescaped; when
    that is not a valid pattern (IFEval would crash), ``text`` is taken literally."""
    try:
        return re.compile(before + text + after, flags)
    except re.error:
        return re.compile(before + re.escape(text) + after, flags)


def _relation(value: int, threshold: int, relation: str) -> bool:
    return value < threshold if relation == "less than" else value >= threshold


def _is_language(text: str, code: str) -> bool:
    """IFEval: langdetect's verdict; text it cannot classify counts as followed."""
    found = detect_language(text)
    return found is None or found == code


def _english_case(text: str, case_ok: bool) -> bool:
    """IFEval: the case test, and then the language must be English. Without langdetect only the
    case is tested (a listed deviation)."""
    if not case_ok:
        return False
    return _is_language(text, "en") if has_language_detector() else True


def _keywords_exist(t: str, a: Mapping[str, Any]) -> bool:
    """Every keyword occurs, anywhere, ignoring case (a substring: "art" is in "start")."""
    return all(_regex(k, re.IGNORECASE).search(t) for k in a["keywords"])


def _keyword_frequency(t: str, a: Mapping[str, Any]) -> bool:
    """Non-overlapping occurrences of the keyword (stripped; a substring, ignoring case)."""
    n = len(_regex(a["keyword"].strip(), re.IGNORECASE).findall(t))
    return _relation(n, a["frequency"], a["relation"])


def _forbidden_words(t: str, a: Mapping[str, Any]) -> bool:
    """No forbidden word occurs as a whole word (between ``\\b`` boundaries), ignoring case."""
    return not any(_regex(w, re.IGNORECASE, r"\b", r"\b").search(t) for w in a["forbidden_words"])


def _letter_frequency(t: str, a: Mapping[str, Any]) -> bool:
    """Occurrences of the letter in the lower-cased response (the letter lower-cased too)."""
    return _relation(t.lower().count(a["letter"].strip().lower()), a["let_frequency"], a["let_relation"])


def _paragraphs(t: str, a: Mapping[str, Any]) -> bool:
    """Paragraphs are the pieces between ``***`` dividers (one optional white-space character each
    side). An empty first or last piece is not a paragraph; an empty one inside fails."""
    parts = re.split(r"\s?\*\*\*\s?", t)
    n = len(parts)
    for i, part in enumerate(parts):
        if not part.strip():
            if i in (0, len(parts) - 1):
                n -= 1
            else:
                return False
    return n == a["num_paragraphs"]


def _nth_paragraph_first_word(t: str, a: Mapping[str, Any]) -> bool:
    """Paragraphs are the pieces between ``\\n\\n``; the count leaves out every empty piece, but the
    nth paragraph is the nth piece. Its first word: the first white-space-separated token, leading
    quotes removed, cut at the first of ``. , ? ! ' "``, lower-cased."""
    parts = t.split("\n\n")
    n = sum(1 for p in parts if p.strip())
    nth = a["nth_paragraph"]
    if nth > n:
        return False
    paragraph = parts[nth - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first = re.split(r"[.,?!'\"]", word, maxsplit=1)[0].lower()
    return n == a["num_paragraphs"] and first == a["first_word"].lower()


def _postscript(t: str, a: Mapping[str, Any]) -> bool:
    """The marker anywhere in the lower-cased response (not only at a line start). "P.P.S" matches
    ``p.p.s`` with optional single spaces after the periods ("P. P. S" too), "P.S." matches
    ``p.s.`` likewise ("P. S."); any other marker is a regular expression."""
    marker = a["postscript_marker"].strip()
    if marker == "P.P.S":
        pattern = re.compile(r"\s*p\.\s?p\.\s?s.*$", re.MULTILINE)
    elif marker == "P.S.":
        pattern = re.compile(r"\s*p\.\s?s\..*$", re.MULTILINE)
    else:
        pattern = _regex(marker.lower(), re.MULTILINE, r"\s*", r".*$")
    return bool(pattern.findall(t.lower()))


_STAR_BULLET = re.compile(r"^\s*\*[^\*].*$", re.MULTILINE)
_DASH_BULLET = re.compile(r"^\s*-.*$", re.MULTILINE)


def _bullets(t: str, a: Mapping[str, Any]) -> bool:
    """Exactly n bullets: lines starting (after white space) with ``*`` and then anything but
    ``*``, or with ``-`` (no space needed after either; a ``---`` rule counts)."""
    return len(_STAR_BULLET.findall(t)) + len(_DASH_BULLET.findall(t)) == a["num_bullets"]


def _constrained(t: str, _: Mapping[str, Any]) -> bool:
    """One of IFEval's three fixed answers ("My answer is yes." ...) appears in the response."""
    s = t.strip()
    return any(option in s for option in CONSTRAINED_RESPONSES)


_HIGHLIGHT = re.compile(r"\*[^\n\*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n\*]*\*\*")


def _highlights(t: str, a: Mapping[str, Any]) -> bool:
    """At least n highlights: ``*text*`` plus ``**text**`` on one line with non-blank text (so
    ``* *`` does not count)."""
    n = sum(1 for h in _HIGHLIGHT.findall(t) if h.strip("*").strip())
    n += sum(1 for h in _DOUBLE_HIGHLIGHT.findall(t) if h[2:-2].strip())
    return n >= a["num_highlights"]


def _sections(t: str, a: Mapping[str, Any]) -> bool:
    """At least n sections: splits at the marker (a case-sensitive regular expression) followed
    by a number, with optional single white space around; the pieces after the first count."""
    marker = a["section_spliter"].strip()
    return len(_regex(marker, 0, r"\s?", r"\s?\d+\s?").split(t)) - 1 >= a["num_sections"]


def _json(t: str, _: Mapping[str, Any]) -> bool:
    """Valid JSON (Python's ``json.loads``) once stripped of a code fence: one of the prefixes
    ```` ```json ````, ```` ```Json ````, ```` ```JSON ````, ```` ``` ```` and a final ```` ``` ````."""
    s = t.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        s = s.removeprefix(prefix)
    s = s.removesuffix("```").strip()
    try:
        json.loads(s)
    except ValueError:
        return False
    return True


_TITLE = re.compile(r"<<[^\n]+>>")


def _title(t: str, _: Mapping[str, Any]) -> bool:
    """A ``<<title>>`` on one line whose text is not blank (``<< >>`` fails)."""
    return any(m.lstrip("<").rstrip(">").strip() for m in _TITLE.findall(t))


def _two_responses(t: str, _: Mapping[str, Any]) -> bool:
    """Exactly two non-blank pieces between ``******`` separators, different once stripped; an
    empty piece is allowed only first or last (a separator at the very start or end)."""
    kept = []
    parts = t.split("******")
    for i, part in enumerate(parts):
        if part.strip():
            kept.append(part)
        elif i not in (0, len(parts) - 1):
            return False
    return len(kept) == 2 and kept[0].strip() != kept[1].strip()


def _repeat_prompt(t: str, a: Mapping[str, Any]) -> bool:
    """The stripped response starts with the stripped request, ignoring case."""
    return t.strip().lower().startswith(a["prompt_to_repeat"].strip().lower())


def _end_checker(t: str, a: Mapping[str, Any]) -> bool:
    """The response, stripped of white space and then of double quotes, ends with the phrase
    (ignoring case)."""
    return t.strip().strip('"').lower().endswith(a["end_phrase"].strip().lower())


def _capital_words(t: str, a: Mapping[str, Any]) -> bool:
    """Word tokens (NLTK ``word_tokenize``) that are upper case (``str.isupper``: "I", "A1" and
    "P.P.S" count)."""
    n = sum(1 for w in word_tokens(t) if w.isupper())
    return _relation(n, a["capital_frequency"], a["capital_relation"])


def _quotation(t: str, _: Mapping[str, Any]) -> bool:
    """The stripped response is at least 2 characters, starting and ending with ``"``."""
    s = t.strip()
    return len(s) > 1 and s[0] == '"' and s[-1] == '"'


_CHECKERS: dict[str, Callable[[str, Mapping[str, Any]], bool]] = {
    "keywords:existence": _keywords_exist,
    "keywords:frequency": _keyword_frequency,
    "keywords:forbidden_words": _forbidden_words,
    "keywords:letter_frequency": _letter_frequency,
    "language:response_language": lambda t, a: _is_language(t, a["language"]),
    "length_constraints:number_sentences": lambda t, a: _relation(
        count_sentences(t), a["num_sentences"], a["relation"]
    ),
    "length_constraints:number_paragraphs": _paragraphs,
    "length_constraints:number_words": lambda t, a: _relation(count_words(t), a["num_words"], a["relation"]),
    "length_constraints:nth_paragraph_first_word": _nth_paragraph_first_word,
    "detectable_content:number_placeholders": lambda t, a: (
        len(re.findall(r"\[.*?\]", t)) >= a["num_placeholders"]
    ),
    "detectable_content:postscript": _postscript,
    "detectable_format:number_bullet_lists": _bullets,
    "detectable_format:constrained_response": _constrained,
    "detectable_format:number_highlighted_sections": _highlights,
    "detectable_format:multiple_sections": _sections,
    "detectable_format:json_format": _json,
    "detectable_format:title": _title,
    "combination:two_responses": _two_responses,
    "combination:repeat_prompt": _repeat_prompt,
    "startend:end_checker": _end_checker,
    "change_case:capital_word_frequency": _capital_words,
    "change_case:english_capital": lambda t, a: _english_case(t, t.isupper()),
    "change_case:english_lowercase": lambda t, a: _english_case(t, t.islower()),
    "punctuation:no_comma": lambda t, a: "," not in t,
    "startend:quotation": _quotation,
}
assert set(_CHECKERS) == set(INSTRUCTION_ARGS)


def loose_variants(response: str) -> list[str]:
    """IFEval's 8 loose variants, in its order: the response, it without ``*``, then without its
    first line, its last line, both (stripped), and these three without ``*``."""
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [response, response.replace("*", ""), *cut, *(c.replace("*", "") for c in cut)]


def check_instruction(instruction_id: str, kwargs: Mapping[str, Any], text: str) -> bool:
    """IFEval's check of one text (no variants, no emptiness rule); ``kwargs`` from
    :func:`normalize_kwargs`."""
    return _CHECKERS[instruction_id](text, kwargs)


def follows_instruction(
    instruction_id: str, kwargs: Mapping[str, Any] | None, response: str, *, loose: bool = False
) -> bool:
    """Whether ``response`` follows the instruction, strictly or loosely (module docstring)."""
    args = normalize_kwargs(instruction_id, kwargs)
    candidates = loose_variants(response) if loose else [response]
    return any(c.strip() and check_instruction(instruction_id, args, c) for c in candidates)
