"""Built-in verifiable instruction data: open-ended prompts carrying one to three checkable constraints.

Every prompt is an open-ended ask about a generated topic ("Describe coral reefs for a general
reader.") followed by constraints from an IFEval-like taxonomy (:data:`PHRASINGS`). Training
responses are composed by program from sentence templates and kept only when every constraint's
strict checker (:mod:`neftune.instructions.checkers`) accepts them.

Generalisation is measured on prompts the training data never shows:

- ``train``: seen kinds (:data:`SEEN_KINDS`), training phrasings (all but the last of each
  kind), and never a held-out pair of kinds (:data:`HELDOUT_PAIRS`);
- ``ifeval_seen_types``: seen kinds on fresh topics, cycling three variants: ``new_prompts``
  (training phrasings and combinations), ``heldout_phrasings`` (every constraint worded with its
  held-out phrasing) and ``heldout_combinations`` (a held-out pair of kinds);
- ``ifeval_heldout_types``: one constraint of a kind never trained on (:data:`HELDOUT_KINDS`),
  sometimes with one seen-kind constraint.

Evaluation records carry no reference answer (their assistant turn is empty): they are scored by
the checkers on the model's generation, never by loss. Everything is deterministic for a seed.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..instructions.checkers import DIVIDER, follows_all
from .formats import Record

__all__ = [
    "HELDOUT_KINDS",
    "HELDOUT_PAIRS",
    "HELDOUT_PHRASING",
    "IFEVAL_PRESETS",
    "IFEVAL_SPLITS",
    "IFEVAL_SPLIT_SUFFIX",
    "PHRASINGS",
    "SEEN_KINDS",
    "InstructionConfig",
    "build_instruction_splits",
    "compatible",
    "render_constraint",
]

IFEVAL_SPLITS = ("ifeval_seen_types", "ifeval_heldout_types")
#: Metric-name suffix of each instruction split (``ifeval/prompt_strict/seen_types``).
IFEVAL_SPLIT_SUFFIX = {"ifeval_seen_types": "seen_types", "ifeval_heldout_types": "heldout_types"}

# --------------------------------------------------------------------------- taxonomy and wordings

#: Wordings of each constraint kind; ``{rel}`` is "at least"/"at most", ``{rel_alt}`` the
#: held-out wording of the same relation. For seen kinds the last wording is held out.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "word_count": (
        "Answer in {rel} {n} words.",
        "Your response should contain {rel} {n} words.",
        "Use {rel} {n} words in total.",
        "Keep the whole reply to {rel_alt} {n} words.",
    ),
    "sentence_count": (
        "Write {rel} {n} sentences.",
        "Your answer must have {rel} {n} sentences.",
        "Use {rel} {n} sentences.",
        "The reply should consist of {rel_alt} {n} sentences.",
    ),
    "paragraph_count": (
        "Write exactly {n} paragraphs separated by the markdown divider ***.",
        "Your response must have {n} paragraphs. Separate paragraphs with ***.",
        "Split your answer into {n} paragraphs with *** between them.",
        "Organise the reply as {n} blocks of text divided from each other by a line holding ***.",
    ),
    "bullet_count": (
        "Your answer must contain exactly {n} bullet points. Use markdown bullets such as: * This is a point.",
        "Give exactly {n} bullet points in markdown format (* item).",
        "Format the answer as exactly {n} markdown bullet points.",
        "Present precisely {n} points as a markdown list with each line starting with a star.",
    ),
    "highlights": (
        "Highlight at least {n} sections with markdown, i.e. *highlighted section*.",
        "Use markdown to highlight at least {n} parts of your answer, like *this*.",
        "Emphasise at least {n} passages by wrapping them in single asterisks.",
        "Mark no fewer than {n} key phrases in italics using *asterisks*.",
    ),
    "include_keywords": (
        "Include the keywords {keywords_text}.",
        "Make sure to use the words {keywords_text} in your response.",
        "Your answer must mention {keywords_text}.",
        "Work the terms {keywords_text} into what you write.",
    ),
    "exclude_keyword": (
        "Do not use the word '{keyword}'.",
        "Avoid the word '{keyword}' in your answer.",
        "Do not include the word '{keyword}' anywhere.",
        "The word '{keyword}' must not appear in the reply.",
    ),
    "keyword_frequency": (
        "Use the word '{keyword}' {rel} {n} times.",
        "The word '{keyword}' should appear {rel} {n} times.",
        "Mention '{keyword}' {rel} {n} times.",
        "Repeat the word '{keyword}' {rel_alt} {n} times in total.",
    ),
    "lowercase": (
        "Your entire response should be in English and in all lowercase letters. No capital letters are allowed.",
        "Write everything in lowercase letters only.",
        "Answer using only lowercase letters.",
        "Do not use a single capital letter anywhere in the reply.",
    ),
    "uppercase": (
        "Your entire response should be in English and in all capital letters.",
        "Write your whole answer in uppercase letters.",
        "Answer in capital letters only.",
        "Every letter of the reply must be a capital.",
    ),
    "starts_with": (
        "Start your answer with the exact words '{phrase}'",
        "Begin your response with '{phrase}'",
        "Your reply must open with '{phrase}'",
        "The first words you write should be '{phrase}'",
    ),
    "ends_with": (
        "End your response with the exact phrase '{phrase}' and nothing after it.",
        "Finish your answer with '{phrase}' with no other words following it.",
        "Your last words must be '{phrase}'",
        "Close the reply with the exact sentence '{phrase}' and add nothing after it.",
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
        "At the end of your response, add a postscript starting with {marker}",
        "Finish with a postscript that begins with {marker}",
        "Add a note at the end starting with {marker}",
        "Append a postscript introduced by {marker}",
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
        "Include at least {n} placeholders in square brackets, such as [address].",
        "Leave at least {n} blanks for the reader, written in square brackets like [name].",
    ),
    "letter_frequency": (
        "Use the letter '{letter}' {rel} {n} times.",
        "The letter '{letter}' should appear {rel} {n} times in your answer.",
    ),
    "capital_words": (
        "Include {rel} {n} words written entirely in capital letters.",
        "Use words in all capitals {rel} {n} times.",
    ),
    "quotation": (
        "Wrap your entire response in double quotation marks.",
        "Put the whole answer inside double quotes.",
    ),
    "sections": (
        "Your response must have {n} sections. Mark the beginning of each section with Section X, such as: Section 1.",
        "Divide the answer into {n} parts, each starting with 'Section' and its number.",
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
    "quotation",
    "sections",
    "two_responses",
)
SEEN_KINDS: tuple[str, ...] = tuple(k for k in PHRASINGS if k not in HELDOUT_KINDS)
HELDOUT_PHRASING = -1  # the last wording of every seen kind
_REL_ALT = {"at least": "no fewer than", "at most": "no more than"}

_CONFLICTS: dict[str, set[str]] = {
    "lowercase": {"uppercase", "capital_words", "repeat_request"},
    "uppercase": {"capital_words", "repeat_request"},
    "starts_with": {"title", "repeat_request", "json_format", "quotation", "two_responses", "sections"},
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

_TOPICS = (
    "coral reefs", "public libraries", "bicycles", "green tea", "volcanoes", "honeybees", "lighthouses",
    "chess", "sourdough bread", "rain forests", "night trains", "solar panels", "glaciers",
    "street markets", "owls", "paper maps", "jazz", "ocean tides", "compost", "kites", "desert plants",
    "clock towers", "whales", "pottery", "thunderstorms", "museums", "wind farms", "penguins",
    "handwriting", "mushrooms", "old bridges", "origami", "comets", "city parks", "board games",
    "rivers", "tomatoes", "violins", "fireflies", "castles", "bread ovens", "sailing boats",
)  # fmt: skip
_ASKS = (
    "Write a short note about {t}.",
    "Explain {t} to a curious teenager.",
    "Describe {t} for a general reader.",
    "Tell me something interesting about {t}.",
    "Give a brief overview of {t}.",
    "Share a few facts about {t}.",
    "Compare {t} and {o}.",
)
_SENTENCES = (
    "The story of {t} goes back further than most people expect.",
    "Many people first notice {t} when they are children.",
    "A closer look at {t} often reveals surprising detail.",
    "Scientists and hobbyists study {t} for different reasons.",
    "It helps to see {t} as part of a larger system.",
    "Small choices can make a big difference when it comes to {t}.",
    "Writers and artists have returned to {t} again and again.",
    "Learning about {t} takes patience but it pays off.",
    "Some of the best facts about {t} are also the simplest.",
    "There is a practical side to {t} as well as a beautiful one.",
    "Local communities often care deeply about {t}.",
    "A good starting point is to ask where {t} came from.",
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
_START_PHRASES = ("Here is a short answer.", "Good question.", "Let me explain.", "Happy to help.")
_END_PHRASES = (
    "Is there anything else I can help with?",
    "That is all for now.",
    "Thanks for reading.",
    "I hope this helps.",
)
_TITLES = ("A Note on {T}", "All About {T}", "{T} in Brief", "A Short Guide to {T}")
_POSTSCRIPTS = (
    "Thanks for asking about {t}.",
    "There is much more to learn about {t}.",
    "Ask again for more.",
)
_LETTERS = "bkwypg"

# --------------------------------------------------------------------------- constraints


def render_constraint(kind: str, args: Mapping[str, Any], phrasing: int) -> str:
    """The instruction text of one constraint with wording ``phrasing``."""
    fields = dict(args)
    if "relation" in fields:
        fields["rel"] = fields["relation"]
        fields["rel_alt"] = _REL_ALT[fields["relation"]]
    if "keywords" in fields:
        fields["keywords_text"] = " and ".join(f"'{k}'" for k in fields["keywords"])
    return PHRASINGS[kind][phrasing].format(**fields)


def _sample_args(kind: str, rng: random.Random, used: set[str], request: str) -> dict[str, Any]:
    def fresh_keyword(pool: Sequence[str]) -> str:
        word = rng.choice([w for w in pool if w not in used])
        used.add(word)
        return word

    if kind == "word_count":
        relation = rng.choice(("at least", "at most"))
        return {
            "relation": relation,
            "n": rng.choice((25, 30, 35) if relation == "at least" else (20, 25, 30)),
        }
    if kind == "sentence_count":
        relation = rng.choice(("at least", "at most"))
        return {"relation": relation, "n": rng.choice((3, 4) if relation == "at least" else (2, 3))}
    if kind in ("paragraph_count", "sections"):
        out: dict[str, Any] = {"n": rng.choice((2, 3))}
        return {**out, "marker": "Section"} if kind == "sections" else out
    if kind == "bullet_count":
        return {"n": rng.choice((2, 3, 4))}
    if kind == "highlights":
        return {"n": rng.choice((1, 2, 3))}
    if kind == "include_keywords":
        return {"keywords": [fresh_keyword(_KEYWORDS) for _ in range(rng.choice((1, 2)))]}
    if kind == "exclude_keyword":
        pool = [w for w in _EXCLUDABLE if w not in request.lower().split()]
        return {"keyword": fresh_keyword(pool)}
    if kind == "keyword_frequency":
        return {"keyword": fresh_keyword(_KEYWORDS), "relation": "at least", "n": rng.choice((2, 3))}
    if kind == "starts_with":
        return {"phrase": rng.choice(_START_PHRASES)}
    if kind == "ends_with":
        return {"phrase": rng.choice(_END_PHRASES)}
    if kind == "postscript":
        return {"marker": rng.choice(("P.S.", "P.P.S."))}
    if kind == "repeat_request":
        return {"request": request}
    if kind == "placeholders":
        return {"n": rng.choice((1, 2, 3))}
    if kind == "letter_frequency":
        return {"letter": rng.choice(_LETTERS), "relation": "at least", "n": rng.choice((3, 4, 5))}
    if kind == "capital_words":
        return {"relation": "at least", "n": rng.choice((2, 3))}
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
    """One candidate response that tries to follow the constraints ``c`` (kind -> args)."""
    forbidden = c.get("exclude_keyword", {}).get("keyword")

    def ok(s: str) -> bool:
        return forbidden is None or forbidden not in s.lower().replace(",", " ").replace(".", " ").split()

    pool = [_cap(s.format(t=topic)) for s in _SENTENCES if ok(s.format(t=topic))]
    n = rng.randint(2, 4)
    if "sentence_count" in c:
        a = c["sentence_count"]
        n = rng.randint(a["n"], a["n"] + 1) if a["relation"] == "at least" else rng.randint(1, a["n"] - 1)
    if "word_count" in c:
        a = c["word_count"]
        n = a["n"] // 9 + 1 if a["relation"] == "at least" else max(1, a["n"] // 12)
    for kind in ("bullet_count", "paragraph_count", "highlights"):
        if kind in c:
            n = max(n, c[kind]["n"])
    sentences = rng.sample(pool, min(n, len(pool)))
    if other is not None:
        compare = [s.format(t=topic, T=_cap(topic), o=other) for s in _COMPARE]
        sentences[0] = rng.choice([s for s in compare if ok(s)] or [sentences[0]])
    if "include_keywords" in c:
        words = " and ".join(c["include_keywords"]["keywords"])
        sentences.insert(rng.randrange(len(sentences) + 1), rng.choice(_INCLUDE_TEMPLATES).format(k=words))
    if "keyword_frequency" in c:
        a = c["keyword_frequency"]
        for s in rng.sample(_FREQUENCY_TEMPLATES, a["n"]):
            sentences.insert(rng.randrange(len(sentences) + 1), _cap(s.format(k=a["keyword"])))
    if "highlights" in c:
        for i in rng.sample(range(len(sentences)), c["highlights"]["n"]):
            sentences[i] = f"*{sentences[i]}*"
    if "bullet_count" in c:
        groups = _distribute(sentences, c["bullet_count"]["n"])
        body = "\n".join("- " + " ".join(g) if "highlights" in c else "* " + " ".join(g) for g in groups)
    elif "paragraph_count" in c:
        groups = _distribute(sentences, c["paragraph_count"]["n"])
        body = f"\n\n{DIVIDER}\n\n".join(" ".join(g) for g in groups)
    else:
        body = " ".join(sentences)
    if "no_commas" in c:
        body = body.replace(",", "")
    if "json_format" in c:
        body = json.dumps({"topic": topic, "answer": body}, indent=2)
        if "no_commas" in c:
            body = json.dumps({"answer": json.loads(body)["answer"]}, indent=2)
    if "title" in c:
        body = f"<<{rng.choice(_TITLES).format(T=topic.title())}>>\n\n{body}"
    if "starts_with" in c:
        body = f"{c['starts_with']['phrase']} {body}"
    if "repeat_request" in c:
        body = f"{request}\n\n{body}"
    if "postscript" in c:
        body = f"{body}\n\n{c['postscript']['marker']} {rng.choice(_POSTSCRIPTS).format(t=topic)}"
    if "ends_with" in c:
        body = f"{body} {c['ends_with']['phrase']}"
    if "lowercase" in c:
        body = body.lower()
    if "uppercase" in c:
        body = body.upper()
    return body


def _response(
    rng: random.Random, topic: str, other: str | None, request: str, constraints: list[dict]
) -> str | None:
    """A composed response that every constraint's strict checker accepts, or None (after 40 tries)."""
    by_kind = {x["kind"]: x["args"] for x in constraints}
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
"""Instruction-data sizes of the built-in presets (next to :data:`neftune.data.tasks.PRESETS`)."""


def _prompt(rng: random.Random) -> tuple[str, str | None, str]:
    topic = rng.choice(_TOPICS)
    ask = rng.choice(_ASKS)
    other = rng.choice([t for t in _TOPICS if t != topic]) if "{o}" in ask else None
    return topic, other, ask.format(t=topic, o=other)


def _record(request: str, constraints: list[dict], response: str, meta: dict[str, Any]) -> Record:
    prompt = " ".join([request, *(x["text"] for x in constraints)])
    return Record(
        messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
        meta={"ifeval": True, "request": request, "constraints": constraints, **meta},
    )


def _constraint(kind: str, args: dict[str, Any], phrasing: int) -> dict[str, Any]:
    index = phrasing % len(PHRASINGS[kind])
    return {"kind": kind, "args": args, "phrasing": index, "text": render_constraint(kind, args, index)}


def _train_record(rng: random.Random) -> Record | None:
    topic, other, request = _prompt(rng)
    kinds = _pick_kinds(rng, SEEN_KINDS, rng.choice((1, 1, 2, 2, 3)), HELDOUT_PAIRS)
    if kinds is None:
        return None
    used: set[str] = set()
    n_train_phrasings = {k: len(PHRASINGS[k]) - 1 for k in kinds}
    constraints = [
        _constraint(k, _sample_args(k, rng, used, request), rng.randrange(n_train_phrasings[k]))
        for k in kinds
    ]
    response = _response(rng, topic, other, request, constraints)
    if response is None:
        return None
    return _record(request, constraints, response, {"split": "train", "variant": "train"})


def _eval_record(rng: random.Random, split: str, i: int) -> Record | None:
    _, _, request = _prompt(rng)
    used: set[str] = set()
    if split == "ifeval_heldout_types":
        kinds = [rng.choice(HELDOUT_KINDS)]
        if rng.random() < 0.5:
            extra = [k for k in SEEN_KINDS if compatible(k, kinds[0])]
            kinds.append(rng.choice(extra))
        variant = "heldout_types"
        constraints = [
            _constraint(
                k, _sample_args(k, rng, used, request), rng.randrange(len(PHRASINGS[k]) - (k in SEEN_KINDS))
            )
            for k in kinds
        ]
        return _record(request, constraints, "", {"split": split, "variant": variant})
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

    No prompt appears twice across the three splits.
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
