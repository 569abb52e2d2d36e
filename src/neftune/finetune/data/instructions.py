"""Built-in verifiable instruction data: open-ended prompts carrying one to three checkable constraints.

Every prompt is an open-ended ask about a topic ("Describe coral reefs for a general reader.")
followed by constraints, each one IFEval instruction (:data:`neftune.finetune.instructions.checkers.KIND_IDS`)
worded in one of several ways (:data:`PHRASINGS`). Training responses are composed by program from
sentence templates and kept only when every constraint's strict IFEval checker accepts them.

What the evaluation prompts hold out from training (each enforced by ``tests/test_instructions.py``):

- topics and request sentences: evaluation prompts ask about other topics (:data:`EVAL_TOPICS`,
  none sharing a word with :data:`TRAIN_TOPICS`) with other request templates, so no evaluation
  request sentence appears in any training prompt;
- ``ifeval_seen_types``: the constraint types are trained on, the prompts are not. Three variants,
  cycling: ``new_prompts`` (training wordings and pairs of types), ``heldout_phrasings`` (every
  constraint in the wording of each type that training never uses, the last of
  :data:`PHRASINGS`), ``heldout_combinations`` (a pair of seen types, :data:`HELDOUT_PAIRS`, never
  on one training prompt);
- ``ifeval_heldout_types``: every constraint is of a type no training prompt carries
  (:data:`HELDOUT_KINDS`), one or two per prompt. No training answer is written in capitals (all
  upper case is itself a held-out type, and it would train capital-word counts), none is wrapped in
  quotes, holds a ``[placeholder]``, a "Section 1" marker or a ``******`` separator, and none has
  more than one all-capital word.

What is not held out: the response sentence templates, the keyword pools and the letters are
shared, and some held-out types are related to seen ones (``lowercase`` is seen, ``uppercase`` is
held out; ``keyword_frequency`` is seen, ``letter_frequency`` held out), and the task data that
``builtin:*`` mixes into training (:mod:`neftune.finetune.data.tasks`) has some all-upper-case answers.

Evaluation records carry no reference answer (their assistant turn is empty): they are scored by
the checkers on the model's generation, never by loss. Everything is deterministic for a seed, whatever optional packages are
installed (answers are checked with :func:`neftune.finetune.instructions.text.portable`).
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..instructions.checkers import DIVIDER, KIND_IDS, follows_all
from ..instructions.text import portable
from .formats import Record

__all__ = [
    "EVAL_ASKS",
    "EVAL_TOPICS",
    "HELDOUT_KINDS",
    "HELDOUT_PAIRS",
    "HELDOUT_PHRASING",
    "IFEVAL_PRESETS",
    "IFEVAL_SPLITS",
    "IFEVAL_SPLIT_SUFFIX",
    "PHRASINGS",
    "SEEN_KINDS",
    "TRAIN_ASKS",
    "TRAIN_TOPICS",
    "InstructionConfig",
    "build_instruction_splits",
    "compatible",
    "render_constraint",
]

IFEVAL_SPLITS = ("ifeval_seen_types", "ifeval_heldout_types")
#: Metric-name suffix of each instruction split (``ifeval/prompt_strict/seen_types``).
IFEVAL_SPLIT_SUFFIX = {"ifeval_seen_types": "seen_types", "ifeval_heldout_types": "heldout_types"}

# --------------------------------------------------------------------------- taxonomy and wordings

#: Wordings of each constraint kind, with IFEval's argument names as fields; ``{rel}`` is "at
#: least" or "fewer than" (IFEval's "less than": strictly fewer), ``{rel_alt}`` the held-out wording
#: of the same relation. For seen kinds the last wording is held out.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "word_count": (
        "Answer in {rel} {num_words} words.",
        "Your response should contain {rel} {num_words} words.",
        "Use {rel} {num_words} words in total.",
        "Keep the whole reply to {rel_alt} {num_words} words.",
    ),
    "sentence_count": (
        "Write {rel} {num_sentences} sentences.",
        "Your answer must have {rel} {num_sentences} sentences.",
        "Use {rel} {num_sentences} sentences.",
        "The reply should consist of {rel_alt} {num_sentences} sentences.",
    ),
    "paragraph_count": (
        "Write exactly {num_paragraphs} paragraphs separated by the markdown divider ***.",
        "Your response must have exactly {num_paragraphs} paragraphs. Separate paragraphs with ***.",
        "Split your answer into exactly {num_paragraphs} paragraphs with *** between them.",
        "Organise the reply as precisely {num_paragraphs} blocks of text divided from each other by ***.",
    ),
    "bullet_count": (
        "Your answer must contain exactly {num_bullets} bullet points. Use markdown bullets such as: * This is a point.",
        "Give exactly {num_bullets} bullet points in markdown format (* item).",
        "Format the answer as exactly {num_bullets} markdown bullet points.",
        "Present precisely {num_bullets} points as a markdown list with each line starting with a star.",
    ),
    "highlights": (
        "Highlight at least {num_highlights} sections with markdown, i.e. *highlighted section*.",
        "Use markdown to highlight at least {num_highlights} parts of your answer, like *this*.",
        "Emphasise at least {num_highlights} passages by wrapping them in single asterisks.",
        "Mark no fewer than {num_highlights} key phrases in italics using *asterisks*.",
    ),
    "include_keywords": (
        "Include the keywords {keywords_text}.",
        "Make sure to use the words {keywords_text} in your response.",
        "Your answer must mention {keywords_text}.",
        "Work the terms {keywords_text} into what you write.",
    ),
    "exclude_keyword": (
        "Do not use the word '{forbidden_text}'.",
        "Avoid the word '{forbidden_text}' in your answer.",
        "Do not include the word '{forbidden_text}' anywhere.",
        "The word '{forbidden_text}' must not appear in the reply.",
    ),
    "keyword_frequency": (
        "Use the word '{keyword}' {rel} {frequency} times.",
        "The word '{keyword}' should appear {rel} {frequency} times.",
        "Mention '{keyword}' {rel} {frequency} times.",
        "Repeat the word '{keyword}' {rel_alt} {frequency} times in total.",
    ),
    "lowercase": (
        "Your entire response should be in English and in all lowercase letters. No capital letters are allowed.",
        "Write everything in English, in lowercase letters only.",
        "Answer in English using only lowercase letters.",
        "Do not use a single capital letter anywhere in the reply, and write it in English.",
    ),
    "first_word": (
        "Write exactly {num_paragraphs} paragraphs separated by a blank line; paragraph {nth_paragraph} must start with the word '{first_word}'.",
        "Give exactly {num_paragraphs} paragraphs, with an empty line between paragraphs, and begin paragraph {nth_paragraph} with '{first_word}'.",
        "Use exactly {num_paragraphs} paragraphs divided by blank lines. The first word of paragraph {nth_paragraph} must be '{first_word}'.",
        "Lay the reply out as precisely {num_paragraphs} blank-line-separated paragraphs, opening paragraph number {nth_paragraph} with the word '{first_word}'.",
    ),
    "ends_with": (
        "End your response with the exact phrase '{end_phrase}' and nothing after it.",
        "Finish your answer with '{end_phrase}' with no other words following it.",
        "Your last words must be '{end_phrase}'",
        "Close the reply with the exact sentence '{end_phrase}' and add nothing after it.",
    ),
    "no_commas": (
        "Do not use any commas in your response.",
        "Your answer must not contain commas.",
        "Write without using a single comma.",
        "Avoid the comma character entirely.",
    ),
    "title": (
        "Your answer must have a title wrapped in double angular brackets, such as <<my title>>.",
        "Give your response a title in double angle brackets, like <<title>>.",
        "Start with a title inside << and >>.",
        "Put a heading between << and >> at the top of the reply.",
    ),
    "postscript": (
        "At the end of your response, add a postscript starting with {postscript_marker}",
        "Finish with a postscript that begins with {postscript_marker}",
        "Add a note at the end starting with {postscript_marker}",
        "Append a postscript introduced by {postscript_marker}",
    ),
    "json_format": (
        "Wrap your entire output in JSON format.",
        "Your whole answer must be valid JSON.",
        "Give the answer as a JSON object.",
        "Return nothing but a JSON value.",
    ),
    "repeat_request": (
        "Before answering, repeat the first sentence of this message word for word.",
        "First copy the request (the first sentence above) exactly, then answer it.",
        "Begin by restating the first sentence of this prompt without any change.",
        "Start your reply with an exact copy of the opening sentence of this message.",
    ),
    # Held-out kinds: never in training, so every wording is unseen.
    "placeholders": (
        "Include at least {num_placeholders} placeholders in square brackets, such as [address].",
        "Leave at least {num_placeholders} blanks for the reader, written in square brackets like [name].",
    ),
    "letter_frequency": (
        "Use the letter '{letter}' {rel} {let_frequency} times.",
        "The letter '{letter}' should appear {rel} {let_frequency} times in your answer.",
    ),
    "capital_words": (
        "Include {rel} {capital_frequency} words written entirely in capital letters.",
        "Use words in all capitals {rel} {capital_frequency} times.",
    ),
    "uppercase": (
        "Your entire response should be in English and in all capital letters.",
        "Write your whole answer in English, in uppercase letters.",
    ),
    "quotation": (
        "Wrap your entire response in double quotation marks.",
        "Put the whole answer inside double quotes.",
    ),
    "sections": (
        "Your response must have at least {num_sections} sections. Mark the beginning of each section with {section_spliter} X, such as: {section_spliter} 1.",
        "Divide the answer into at least {num_sections} parts, each starting with '{section_spliter}' and its number.",
    ),
    "two_responses": (
        "Give two different responses. Separate the responses with six asterisks: ******.",
        "Write two distinct answers separated by ******.",
    ),
}

HELDOUT_KINDS: tuple[str, ...] = (
    "placeholders",
    "letter_frequency",
    "capital_words",
    "uppercase",
    "quotation",
    "sections",
    "two_responses",
)
SEEN_KINDS: tuple[str, ...] = tuple(k for k in PHRASINGS if k not in HELDOUT_KINDS)
HELDOUT_PHRASING = -1  # the last wording of every seen kind
_REL = {"at least": "at least", "less than": "fewer than"}
_REL_ALT = {"at least": "no fewer than", "less than": "strictly fewer than"}

_CONFLICTS: dict[str, set[str]] = {
    "lowercase": {"uppercase", "capital_words", "repeat_request"},
    "uppercase": {"capital_words", "repeat_request", "sections"},
    "first_word": {
        "paragraph_count",
        "title",
        "repeat_request",
        "postscript",
        "json_format",
        "two_responses",
        "sections",
        "bullet_count",
        "quotation",
    },
    "ends_with": {"postscript", "json_format", "quotation", "two_responses"},
    "title": {"repeat_request", "json_format", "quotation"},
    "repeat_request": {"json_format", "quotation", "two_responses"},
    "bullet_count": {"paragraph_count", "json_format", "sections", "two_responses"},
    "paragraph_count": {"json_format", "sections", "two_responses"},
    "highlights": {"json_format"},
    "postscript": {"json_format", "quotation"},
    "json_format": {"sentence_count", "word_count", "quotation", "sections", "two_responses", "placeholders"},
    "quotation": {"two_responses"},
    "sections": {"two_responses"},
}


def compatible(a: str, b: str) -> bool:
    """Whether kinds ``a`` and ``b`` may share a prompt (never the same kind twice)."""
    return a != b and b not in _CONFLICTS.get(a, set()) and a not in _CONFLICTS.get(b, set())


def _heldout_pairs() -> frozenset[frozenset[str]]:
    pairs = [frozenset(p) for p in itertools.combinations(SEEN_KINDS, 2) if compatible(*p)]
    pairs.sort(key=sorted)
    return frozenset(random.Random("neftune-ifeval-heldout-pairs").sample(pairs, len(pairs) // 6))


HELDOUT_PAIRS: frozenset[frozenset[str]] = _heldout_pairs()
"""Pairs of seen kinds that never share a training prompt (about a sixth of the compatible pairs)."""

# --------------------------------------------------------------------------- vocabulary

TRAIN_TOPICS = (
    "coral reefs", "public libraries", "bicycles", "green tea", "volcanoes", "honeybees", "lighthouses",
    "chess", "sourdough bread", "rain forests", "night trains", "solar panels", "glaciers",
    "street markets", "owls", "paper maps", "jazz", "ocean tides", "compost", "kites", "desert plants",
    "clock towers", "whales", "pottery", "thunderstorms", "museums", "wind farms", "penguins",
    "handwriting", "mushrooms",
)  # fmt: skip
EVAL_TOPICS = (
    "old bridges", "origami", "comets", "city parks", "board games", "rivers", "tomatoes", "violins",
    "fireflies", "castles", "sailing boats", "hot air balloons", "seashells", "lanterns", "bamboo",
    "canals", "snow leopards", "typewriters", "orchards", "caves", "windmills", "puppets", "tulips",
    "harbours",
)  # fmt: skip
"""Topics of the evaluation prompts; no word of one is a word of a training topic."""
TRAIN_ASKS = (
    "Write a short note about {t}.",
    "Explain {t} to a curious teenager.",
    "Describe {t} for a general reader.",
    "Tell me something interesting about {t}.",
    "Give a brief overview of {t}.",
    "Share a few facts about {t}.",
    "Compare {t} and {o}.",
)
EVAL_ASKS = (
    "What should a newcomer know about {t}?",
    "Put together a few lines on {t} for a school newsletter.",
    "Summarise what makes {t} worth learning about.",
    "Present {t} to a visitor from far away.",
    "Sketch the basics of {t} for a beginner.",
    "Contrast {t} with {o}.",
)
"""Request templates of the evaluation prompts (the training ones are :data:`TRAIN_ASKS`)."""
_SENTENCES = (
    "The story of {t} goes back further than most people expect.",
    "Many people first notice {t} when they are children.",
    "Looking closely at {t} often reveals surprising detail.",
    "Scientists and hobbyists study {t} for different reasons.",
    "It helps to see {t} as part of a larger system.",
    "Small choices can make a big difference when it comes to {t}.",
    "Writers and artists have returned to {t} again and again.",
    "Learning about {t} takes patience but it pays off.",
    "Some of the best facts about {t} are also the simplest.",
    "There is a practical side to {t} as well as a beautiful one.",
    "Local communities often care deeply about {t}.",
    "One good starting point is to ask where {t} came from.",
    "In everyday life, you meet {t} in more places than you might think.",
    "For beginners, the key idea is simple: attention to {t} pays off.",
    "Over time, our understanding of {t} has changed a great deal.",
    "Anyone can enjoy {t} without special training.",
    "The details of {t} vary from one region to another.",
    "Guides and books about {t} are easy to find.",
)
_COMPARE = (
    "{T} and {o} have more in common than it first appears.",
    "The main difference between {t} and {o} is one of scale.",
    "Both {t} and {o} reward a patient observer.",
)
_KEYWORDS = (
    "balance", "history", "curiosity", "patience", "detail", "energy", "future", "craft",
    "surprise", "memory", "season", "community",
)  # fmt: skip
_EXCLUDABLE = ("people", "often", "many", "simple", "different", "places", "time")
_INCLUDE_TEMPLATES = ("It is also a matter of {k}.", "Think about {k} as well.", "Do not forget {k}.")
_FREQUENCY_TEMPLATES = (
    "There is real {k} in it.",
    "Think of the {k} involved.",
    "That {k} is easy to miss.",
    "Much depends on {k}.",
    "The {k} matters here too.",
)
_FIRST_WORDS = ("Overall", "Interestingly", "Today", "Notably", "Honestly", "Firstly")
_END_PHRASES = ("Any other questions?", "That is all for now.", "Thanks for reading.", "Hope this helps.")
_TITLES = ("Notes on {T}", "All About {T}", "{T} in Brief", "Short Guide to {T}")
_POSTSCRIPTS = (
    "Thanks for asking about {t}.",
    "There is much more to learn about {t}.",
    "Ask again for more.",
)
_LETTERS = "bkwypg"

# --------------------------------------------------------------------------- constraints


def render_constraint(kind: str, args: Mapping[str, Any], phrasing: int) -> str:
    """The instruction text of one constraint (IFEval arguments ``args``) with wording ``phrasing``."""
    fields = dict(args)
    for key in ("relation", "let_relation", "capital_relation"):
        if key in fields:
            fields["rel"] = _REL[fields[key]]
            fields["rel_alt"] = _REL_ALT[fields[key]]
    if "keywords" in fields:
        fields["keywords_text"] = " and ".join(f"'{k}'" for k in fields["keywords"])
    if "forbidden_words" in fields:
        fields["forbidden_text"] = ", ".join(fields["forbidden_words"])
    return PHRASINGS[kind][phrasing].format(**fields)


def _sample_args(kind: str, rng: random.Random, used: set[str], request: str) -> dict[str, Any]:
    """IFEval's arguments of one constraint of ``kind`` (``used``: keywords already taken)."""

    def fresh_keyword(pool: Sequence[str]) -> str:
        word = rng.choice([w for w in pool if w not in used])
        used.add(word)
        return word

    if kind == "word_count":
        relation = rng.choice(("at least", "less than"))
        return {
            "num_words": rng.choice((25, 30, 35) if relation == "at least" else (20, 25, 30)),
            "relation": relation,
        }
    if kind == "sentence_count":
        relation = rng.choice(("at least", "less than"))
        return {"num_sentences": rng.choice((3, 4)), "relation": relation}
    if kind == "paragraph_count":
        return {"num_paragraphs": rng.choice((2, 3))}
    if kind == "sections":
        return {"section_spliter": "Section", "num_sections": rng.choice((2, 3))}
    if kind == "bullet_count":
        return {"num_bullets": rng.choice((2, 3, 4))}
    if kind == "highlights":
        return {"num_highlights": rng.choice((1, 2, 3))}
    if kind == "include_keywords":
        return {"keywords": [fresh_keyword(_KEYWORDS) for _ in range(rng.choice((1, 2)))]}
    if kind == "exclude_keyword":
        words = set(re.findall(r"\w+", request.lower()))
        return {"forbidden_words": [fresh_keyword([w for w in _EXCLUDABLE if w not in words])]}
    if kind == "keyword_frequency":
        return {"keyword": fresh_keyword(_KEYWORDS), "frequency": rng.choice((2, 3)), "relation": "at least"}
    if kind == "first_word":
        n = rng.choice((1, 2, 3))
        return {
            "num_paragraphs": n,
            "nth_paragraph": rng.randint(1, n),
            "first_word": rng.choice(_FIRST_WORDS).lower(),
        }
    if kind == "ends_with":
        return {"end_phrase": rng.choice(_END_PHRASES)}
    if kind == "postscript":
        return {"postscript_marker": rng.choice(("P.S.", "P.P.S"))}
    if kind == "repeat_request":
        return {"prompt_to_repeat": request}
    if kind == "placeholders":
        return {"num_placeholders": rng.choice((1, 2, 3))}
    if kind == "letter_frequency":
        return {
            "letter": rng.choice(_LETTERS),
            "let_frequency": rng.choice((3, 4, 5)),
            "let_relation": "at least",
        }
    if kind == "capital_words":
        return {"capital_frequency": rng.choice((2, 3)), "capital_relation": "at least"}
    return {}  # lowercase, uppercase, no_commas, title, json_format, quotation, two_responses


def _pick_kinds(
    rng: random.Random, pool: Sequence[str], n: int, banned_pairs: frozenset[frozenset[str]]
) -> list[str] | None:
    kinds: list[str] = []
    for _ in range(n):
        options = [
            k for k in pool if all(compatible(k, j) and frozenset((k, j)) not in banned_pairs for j in kinds)
        ]
        if not options:
            return None
        kinds.append(rng.choice(options))
    return kinds


# --------------------------------------------------------------------------- responses


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _distribute(items: list[str], n: int) -> list[list[str]]:
    """``items`` in ``n`` consecutive non-empty groups (``len(items) >= n``)."""
    base, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        size = base + (i < extra)
        out.append(items[start : start + size])
        start += size
    return out


def _compose(rng: random.Random, topic: str, other: str | None, request: str, c: dict[str, dict]) -> str:
    """One candidate response that tries to follow the constraints ``c`` (kind -> IFEval args)."""
    forbidden = c.get("exclude_keyword", {}).get("forbidden_words", [])

    def ok(s: str) -> bool:
        return not any(re.search(rf"\b{re.escape(w)}\b", s, re.IGNORECASE) for w in forbidden)

    pool = [_cap(s.format(t=topic)) for s in _SENTENCES if ok(s.format(t=topic))]
    n = rng.randint(2, 4)
    if "sentence_count" in c:
        a = c["sentence_count"]
        k = a["num_sentences"]
        n = rng.randint(k, k + 1) if a["relation"] == "at least" else rng.randint(1, k - 1)
    if "word_count" in c:
        a = c["word_count"]
        n = a["num_words"] // 9 + 1 if a["relation"] == "at least" else max(1, a["num_words"] // 13)
    for kind, key in (("bullet_count", "num_bullets"), ("paragraph_count", "num_paragraphs"), ("highlights", "num_highlights"), ("first_word", "num_paragraphs")):  # fmt: skip
        if kind in c:
            n = max(n, c[kind][key])
    sentences = rng.sample(pool, min(n, len(pool)))
    if other is not None:
        compare = [s.format(t=topic, T=_cap(topic), o=other) for s in _COMPARE]
        sentences[0] = rng.choice([s for s in compare if ok(s)] or [sentences[0]])
    if "include_keywords" in c:
        words = " and ".join(c["include_keywords"]["keywords"])
        sentences.insert(rng.randrange(len(sentences) + 1), rng.choice(_INCLUDE_TEMPLATES).format(k=words))
    if "keyword_frequency" in c:
        a = c["keyword_frequency"]
        for s in rng.sample(_FREQUENCY_TEMPLATES, a["frequency"]):
            sentences.insert(rng.randrange(len(sentences) + 1), _cap(s.format(k=a["keyword"])))
    if "highlights" in c:
        for i in rng.sample(range(len(sentences)), c["highlights"]["num_highlights"]):
            sentences[i] = f"*{sentences[i]}*"
    if "bullet_count" in c:
        groups = _distribute(sentences, c["bullet_count"]["num_bullets"])
        body = "\n".join("- " + " ".join(g) if "highlights" in c else "* " + " ".join(g) for g in groups)
    elif "paragraph_count" in c:
        groups = _distribute(sentences, c["paragraph_count"]["num_paragraphs"])
        body = f"\n\n{DIVIDER}\n\n".join(" ".join(g) for g in groups)
    elif "first_word" in c:
        a = c["first_word"]
        groups = _distribute(sentences, a["num_paragraphs"])
        lead = groups[a["nth_paragraph"] - 1]
        lead[0] = f"{_cap(a['first_word'])}, {lead[0][:1].lower()}{lead[0][1:]}"
        body = "\n\n".join(" ".join(g) for g in groups)
    else:
        body = " ".join(sentences)
    if "no_commas" in c:
        body = body.replace(",", "")
    if "json_format" in c:
        # On one line: an indented object's inner lines, loosely checked, would look like a quotation.
        body = json.dumps({"answer": body} if "no_commas" in c else {"topic": topic, "answer": body})
    if "title" in c:
        body = f"<<{rng.choice(_TITLES).format(T=topic.title())}>>\n\n{body}"
    if "repeat_request" in c:
        body = f"{request}\n\n{body}"
    if "postscript" in c:
        body = f"{body}\n\n{c['postscript']['postscript_marker']} {rng.choice(_POSTSCRIPTS).format(t=topic)}"
    if "ends_with" in c:
        body = f"{body} {c['ends_with']['end_phrase']}"
    if "lowercase" in c:
        body = body.lower()
    return body


def _response(
    rng: random.Random, topic: str, other: str | None, request: str, constraints: list[dict]
) -> str | None:
    """A composed response that every constraint's strict checker accepts, or None (after 40 tries).

    Checked with the portable text units, so the data do not depend on optional packages."""
    by_kind = {x["kind"]: x["args"] for x in constraints}
    with portable():
        for _ in range(40):
            text = _compose(rng, topic, other, request, by_kind)
            if all(follows_all(constraints, text)):
                return text
    return None


# --------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class InstructionConfig:
    """Sizes of the instruction data: ``n_train`` training records, ``n_eval`` per eval split."""

    n_train: int = 200
    n_eval: int = 60
    seed: int = 0


IFEVAL_PRESETS: dict[str, InstructionConfig] = {
    "quick": InstructionConfig(n_train=160, n_eval=40),
    "standard": InstructionConfig(n_train=1500, n_eval=200),
    "full": InstructionConfig(n_train=6000, n_eval=400),
}
"""Instruction-data sizes of the built-in presets (next to :data:`neftune.finetune.data.tasks.PRESETS`)."""


def _prompt(rng: random.Random, topics: Sequence[str], asks: Sequence[str]) -> tuple[str, str | None, str]:
    topic = rng.choice(topics)
    ask = rng.choice(asks)
    other = rng.choice([t for t in topics if t != topic]) if "{o}" in ask else None
    return topic, other, ask.format(t=topic, o=other)


def _record(request: str, constraints: list[dict], response: str, meta: dict[str, Any]) -> Record:
    prompt = " ".join([request, *(x["text"] for x in constraints)])
    return Record(
        messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
        meta={"ifeval": True, "request": request, "constraints": constraints, **meta},
    )


def _constraint(kind: str, args: dict[str, Any], phrasing: int) -> dict[str, Any]:
    index = phrasing % len(PHRASINGS[kind])
    return {
        "kind": kind,
        "instruction_id": KIND_IDS[kind],
        "args": args,
        "phrasing": index,
        "text": render_constraint(kind, args, index),
    }


def _train_record(rng: random.Random) -> Record | None:
    topic, other, request = _prompt(rng, TRAIN_TOPICS, TRAIN_ASKS)
    kinds = _pick_kinds(rng, SEEN_KINDS, rng.choice((1, 1, 2, 2, 3)), HELDOUT_PAIRS)
    if kinds is None:
        return None
    used: set[str] = set()
    constraints = [
        _constraint(k, _sample_args(k, rng, used, request), rng.randrange(len(PHRASINGS[k]) - 1))
        for k in kinds
    ]
    response = _response(rng, topic, other, request, constraints)
    if response is None:
        return None
    return _record(request, constraints, response, {"split": "train", "variant": "train"})


def _eval_record(rng: random.Random, split: str, i: int) -> Record | None:
    _, _, request = _prompt(rng, EVAL_TOPICS, EVAL_ASKS)
    used: set[str] = set()
    if split == "ifeval_heldout_types":
        kinds = _pick_kinds(rng, HELDOUT_KINDS, rng.choice((1, 2)), frozenset())
        if kinds is None:
            return None
        constraints = [
            _constraint(k, _sample_args(k, rng, used, request), rng.randrange(len(PHRASINGS[k])))
            for k in kinds
        ]
        return _record(request, constraints, "", {"split": split, "variant": "heldout_types"})
    variant = ("new_prompts", "heldout_phrasings", "heldout_combinations")[i % 3]
    if variant == "heldout_combinations":
        pair = sorted(rng.choice(sorted(HELDOUT_PAIRS, key=sorted)))
        kinds = pair
        if rng.random() < 0.3:
            extra = [k for k in SEEN_KINDS if all(compatible(k, j) for j in pair)]
            kinds = [*pair, rng.choice(extra)]
    else:
        picked = _pick_kinds(rng, SEEN_KINDS, rng.choice((1, 2, 2, 3)), HELDOUT_PAIRS)
        if picked is None:
            return None
        kinds = picked
    constraints = []
    for k in kinds:
        phrasing = (
            len(PHRASINGS[k]) - 1 if variant == "heldout_phrasings" else rng.randrange(len(PHRASINGS[k]) - 1)
        )
        constraints.append(_constraint(k, _sample_args(k, rng, used, request), phrasing))
    return _record(request, constraints, "", {"split": split, "variant": variant})


def build_instruction_splits(cfg: InstructionConfig) -> dict[str, list[Record]]:
    """``train``, ``ifeval_seen_types`` and ``ifeval_heldout_types`` for ``cfg`` (same cfg, same lists).

    No prompt appears twice across the three splits, and no evaluation prompt shares a topic or a
    request sentence with a training prompt (module docstring).
    """
    if cfg.n_train < 0 or cfg.n_eval < 0:
        raise ValueError("n_train and n_eval must be >= 0")
    seen: set[str] = set()
    out: dict[str, list[Record]] = {}
    for split, n in (("train", cfg.n_train), *((s, cfg.n_eval) for s in IFEVAL_SPLITS)):
        rng = random.Random(f"neftune-ifeval:{split}:{cfg.seed}")
        records: list[Record] = []
        tries = 0
        while len(records) < n:
            tries += 1
            if tries > 50 * n + 100:
                raise RuntimeError(f"could not generate {n} distinct {split} prompts; ask for fewer")
            rec = _train_record(rng) if split == "train" else _eval_record(rng, split, len(records))
            if rec is None or rec.messages[0]["content"] in seen:
                continue
            seen.add(rec.messages[0]["content"])
            records.append(rec)
        out[split] = records
    return out
