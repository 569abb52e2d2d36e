"""Procedurally generated instruction tasks with answers that can be checked.

Every task family samples its inputs from a ``random.Random`` and *computes* the
answer, so the data is unlimited, deterministic for a seed and gradeable without
a judge model. Each family has several genuinely different instruction wordings
("templates"), which lets :func:`build_splits` hold out whole templates and whole
families to measure generalisation rather than memorisation.

Answer checking rule (used by :meth:`TaskFamily.check` and :func:`check_answer`):

1. The prediction is stripped. Two candidates are tried: the whole prediction and,
   if different, its first non-empty line alone. So an explanation on *later*
   lines never turns a correct answer wrong, but extra words on the answer line do.
2. Each candidate is normalised: runs of whitespace collapse to one space, one
   pair of wrapping quotes/backticks is removed, and a trailing ``.`` or ``!``
   inside and/or outside the quotes is dropped (no expected answer ends with one).
3. The candidate is compared according to the family's answer kind:

   - ``text``: case-insensitive string equality.
   - ``text_cs``: case-sensitive string equality (upper/lower/title case, acronyms).
   - ``number``: parsed as a number (``-12``, ``3.5``, ``1,200``; one trailing unit
     word such as ``5000 meters`` is allowed) and compared numerically.
   - ``list_text`` / ``list_number``: split on commas (optional ``[...]``
     brackets and quoted items allowed); same length and order, items compared
     case-insensitively / numerically.
   - ``json``: a Markdown code fence is removed, then the *first JSON value* at
     the start of the prediction is parsed (text after it is ignored, so JSON may
     span lines) and compared structurally with the expected value (key order is
     irrelevant; ``1`` and ``1.0`` are equal, ``1`` and ``"1"`` or ``true`` are not).
"""

from __future__ import annotations

import datetime as _dt
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "FAMILIES",
    "PRESETS",
    "SPLIT_NAMES",
    "AnswerKind",
    "Example",
    "SplitConfig",
    "TaskFamily",
    "Template",
    "build_splits",
    "check_answer",
    "resolve_heldout_families",
]

AnswerKind = Literal["text", "text_cs", "number", "list_text", "list_number", "json"]

SPLIT_NAMES: tuple[str, ...] = (
    "train",
    "eval_seen_templates",
    "eval_heldout_templates",
    "eval_heldout_families",
)


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class Example:
    """One instruction/response pair produced by a task family."""

    instruction: str
    input: str
    output: str
    family: str
    template: int

    @property
    def prompt(self) -> str:
        """The user turn: the instruction, plus a blank line and the input if there is one."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction

    def to_alpaca(self) -> dict[str, str]:
        """Alpaca-style record (``instruction``, ``input``, ``output``)."""
        return {"instruction": self.instruction, "input": self.input, "output": self.output}

    def to_messages(self) -> list[dict[str, str]]:
        """Chat messages: one user turn (:attr:`prompt`) and one assistant turn."""
        return [
            {"role": "user", "content": self.prompt},
            {"role": "assistant", "content": self.output},
        ]


@dataclass(frozen=True)
class Template:
    """An instruction wording; ``{field}`` placeholders are filled from the sampled fields."""

    instruction: str
    input: str = ""

    def render(self, fields: dict[str, Any]) -> tuple[str, str]:
        return self.instruction.format(**fields), self.input.format(**fields)


@dataclass(frozen=True)
class TaskFamily:
    """A task: a sampler of inputs (which also computes ``answer``) and its wordings."""

    name: str
    description: str
    kind: AnswerKind
    templates: tuple[Template, ...]
    sample: Callable[[random.Random], dict[str, Any]] = field(repr=False)

    def generate(self, rng: random.Random, template_index: int) -> Example:
        """Sample fresh inputs with ``rng`` and render them with template ``template_index``."""
        if not 0 <= template_index < len(self.templates):
            raise IndexError(
                f"family {self.name!r} has {len(self.templates)} templates; got index {template_index}"
            )
        fields = self.sample(rng)
        instruction, inp = self.templates[template_index].render(fields)
        return Example(
            instruction=instruction,
            input=inp,
            output=str(fields["answer"]),
            family=self.name,
            template=template_index,
        )

    def check(self, example: Example, prediction: str) -> bool:
        """Whether ``prediction`` answers ``example`` correctly (see the module docstring)."""
        return _check(self.kind, example.output, prediction)


def check_answer(example: Example, prediction: str) -> bool:
    """Grade ``prediction`` against ``example`` with the checker of its family."""
    try:
        family = FAMILIES[example.family]
    except KeyError:
        raise KeyError(f"unknown task family {example.family!r}") from None
    return family.check(example, prediction)


# --------------------------------------------------------------------------- checking

_NUMBER = r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+\u2212]?\.\d+"
_NUMBER_WITH_UNIT = re.compile(rf"({_NUMBER})(?:\s*[A-Za-z%\u00b0]+)?")
_FENCE = re.compile(r"^```[A-Za-z]*\s*\n?(.*?)\n?\s*```", re.DOTALL)


def _candidates(prediction: str) -> list[str]:
    text = prediction.strip()
    out = [text]
    for line in text.splitlines():
        if line.strip():
            if line.strip() != text:
                out.append(line.strip())
            break
    return out


def _drop_final_stop(s: str) -> str:
    return s[:-1].rstrip() if s[-1:] in (".", "!") else s


def _normalise(text: str) -> str:
    s = _drop_final_stop(" ".join(text.split()))
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'`":
        s = _drop_final_stop(s[1:-1].strip())
    return s


def _parse_number(text: str) -> float | None:
    m = _NUMBER_WITH_UNIT.fullmatch(text.strip())
    if m is None:
        return None
    return float(m.group(1).replace(",", "").replace("\u2212", "-"))


def _numbers_equal(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def _split_list(text: str) -> list[str]:
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    if not s.strip():
        return []
    items = []
    for part in s.split(","):
        item = part.strip()
        if len(item) >= 2 and item[0] == item[-1] and item[0] in "\"'":
            item = item[1:-1].strip()
        items.append(item)
    return items


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return _numbers_equal(float(a), float(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _first_json_value(text: str) -> tuple[bool, Any]:
    s = text.strip()
    fence = _FENCE.match(s)
    if fence:
        s = fence.group(1).strip()
    try:
        value, _ = json.JSONDecoder().raw_decode(s)
    except json.JSONDecodeError:
        return False, None
    return True, value


def _check(kind: AnswerKind, expected: str, prediction: str) -> bool:
    if kind == "json":
        ok, value = _first_json_value(prediction)
        return ok and _json_equal(value, json.loads(expected))
    for cand in _candidates(prediction):
        c = _normalise(cand)
        if kind == "text" and c.casefold() == expected.casefold():
            return True
        if kind == "text_cs" and c == expected:
            return True
        if kind == "number":
            got = _parse_number(c)
            if got is not None and _numbers_equal(got, float(expected)):
                return True
        if kind in ("list_text", "list_number"):
            got_items, want_items = _split_list(c), _split_list(expected)
            if len(got_items) != len(want_items):
                continue
            if kind == "list_text":
                if all(g.casefold() == w.casefold() for g, w in zip(got_items, want_items)):
                    return True
            else:
                nums = [_parse_number(g) for g in got_items]
                if all(n is not None and _numbers_equal(n, float(w)) for n, w in zip(nums, want_items)):
                    return True
    return False


# --------------------------------------------------------------------------- vocabulary

_WORDS_TEXT = """
    apple river garden window pencil candle rocket forest silver planet orange tiger
    bread cloud mirror basket guitar island ladder market number ocean pepper rabbit
    summer table violet winter yellow anchor bottle camera dragon engine feather
    hammer jacket kettle lemon magnet needle parrot pillow puzzle rainbow saddle
    shadow spider tunnel wallet zebra bridge castle circle desert button cactus
    carpet cookie copper cotton crystal dinner doctor falcon finger flower frozen
    galaxy ginger glider harbor helmet honey insect jungle kitten lantern marble
    meadow monkey muffin napkin orbit oyster paddle palace panda pirate pocket
    potato prism quartz radio random rocket salmon sandal school signal sister
    socket spoon stone sugar teacher thunder tomato travel turtle valley velvet
    wagon walnut water wizard yogurt bamboo beacon blanket cherry chimney compass
    dolphin eagle fabric giant hollow iron jelly kayak lava maple nectar olive
    pebble quiet ribbon rustic scarlet timber umbrella vessel willow canyon
"""
_WORDS = tuple(dict.fromkeys(_WORDS_TEXT.split()))  # drop accidental duplicates, keep order

_NAMES = (
    "Ann", "Bob", "Cara", "Dan", "Eva", "Finn", "Gina", "Hugo", "Ivy", "Jack", "Kim", "Leo",
    "Mia", "Noah", "Olga", "Paul", "Rosa", "Sam", "Tara", "Umar", "Vera", "Will", "Yara", "Zoe",
    "Amir", "Bea", "Chen", "Dora", "Emil", "Fay", "Gus", "Hana", "Ian", "Jana", "Kai", "Lena",
)  # fmt: skip
_CITIES = (
    "Oslo", "Lima", "Rome", "Paris", "Cairo", "Tokyo", "Dubai", "Quito", "Berlin", "Madrid",
    "Lisbon", "Dublin", "Vienna", "Prague", "Delhi", "Seoul", "Accra", "Hanoi", "Bogota", "Perth",
)  # fmt: skip
_COLORS = ("red", "blue", "green", "black", "white", "purple", "orange", "pink", "brown", "gray", "gold")
_DOMAINS = ("example.com", "mail.org", "corp.net", "school.edu", "shop.io", "lab.dev")
_CONSONANTS = "bcdfghklmnprstvz"
_VOWELS = "aeiou"
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def _pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 3)))


def _word(rng: random.Random) -> str:
    """A real word most of the time, otherwise a pronounceable made-up one."""
    return rng.choice(_WORDS) if rng.random() < 0.6 else _pseudo_word(rng)


def _distinct_words(rng: random.Random, k: int) -> list[str]:
    return rng.sample(_WORDS, k)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _join(items: Sequence[object]) -> str:
    return ", ".join(str(x) for x in items)


# --------------------------------------------------------------------------- samplers
# Each sampler returns the fields used by the templates plus the computed "answer".


def _s_reverse(rng: random.Random) -> dict[str, Any]:
    w = _word(rng)
    return {"word": w, "answer": w[::-1]}


def _phrase(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(_word(rng) for _ in range(rng.randint(lo, hi)))


def _s_upper(rng: random.Random) -> dict[str, Any]:
    t = _phrase(rng, 1, 3)
    return {"text": t, "answer": t.upper()}


def _s_lower(rng: random.Random) -> dict[str, Any]:
    words = _phrase(rng, 1, 3).split()
    style = rng.randrange(3)
    if style == 0:
        shown = [w.upper() for w in words]
    elif style == 1:
        shown = [w.capitalize() for w in words]
    else:
        shown = ["".join(c.upper() if rng.random() < 0.5 else c for c in w) for w in words]
        shown[0] = shown[0][0].upper() + shown[0][1:]
    text = " ".join(shown)
    return {"text": text, "answer": text.lower()}


def _s_title(rng: random.Random) -> dict[str, Any]:
    t = _phrase(rng, 2, 4)
    return {"text": t, "answer": " ".join(w.capitalize() for w in t.split())}


def _s_count_vowels(rng: random.Random) -> dict[str, Any]:
    w = _word(rng)
    return {"word": w, "answer": sum(c in _VOWELS for c in w)}


def _s_count_letter(rng: random.Random) -> dict[str, Any]:
    w = _word(rng)
    letter = rng.choice(w) if rng.random() < 0.85 else rng.choice("abcdefghijklmnopqrstuvwxyz")
    return {"word": w, "letter": letter, "answer": w.count(letter)}


def _s_count_words(rng: random.Random) -> dict[str, Any]:
    words = [_word(rng) for _ in range(rng.randint(3, 10))]
    sentence = " ".join(words).capitalize() + "."
    return {"sentence": sentence, "answer": len(words)}


def _s_word_length(rng: random.Random) -> dict[str, Any]:
    w = _word(rng)
    return {"word": w, "answer": len(w)}


def _s_sort_words(rng: random.Random) -> dict[str, Any]:
    words = _distinct_words(rng, rng.randint(3, 5))
    return {"items": _join(words), "answer": _join(sorted(words))}


def _s_sort_numbers(rng: random.Random) -> dict[str, Any]:
    nums = [rng.randint(0, 99) for _ in range(rng.randint(3, 6))]
    return {"items": _join(nums), "answer": _join(sorted(nums))}


def _s_dedupe(rng: random.Random) -> dict[str, Any]:
    pool = _distinct_words(rng, rng.randint(2, 4))
    items = pool + [rng.choice(pool) for _ in range(rng.randint(1, 3))]
    rng.shuffle(items)
    return {"items": _join(items), "answer": _join(dict.fromkeys(items))}


def _s_add(rng: random.Random) -> dict[str, Any]:
    a, b = rng.randint(0, 999), rng.randint(0, 999)
    return {"a": a, "b": b, "answer": a + b}


def _s_sub(rng: random.Random) -> dict[str, Any]:
    a, b = rng.randint(0, 999), rng.randint(0, 999)
    return {"a": a, "b": b, "answer": a - b}


def _s_mul(rng: random.Random) -> dict[str, Any]:
    a, b = rng.randint(2, 99), rng.randint(2, 30)
    return {"a": a, "b": b, "answer": a * b}


def _s_compare(rng: random.Random) -> dict[str, Any]:
    a, b = rng.sample(range(10000), 2)
    return {"a": a, "b": b, "answer": max(a, b)}


def _int_list(rng: random.Random) -> list[int]:
    return rng.sample(range(-50, 201), rng.randint(4, 6))


def _s_max(rng: random.Random) -> dict[str, Any]:
    nums = _int_list(rng)
    return {"items": _join(nums), "answer": max(nums)}


def _s_min(rng: random.Random) -> dict[str, Any]:
    nums = _int_list(rng)
    return {"items": _join(nums), "answer": min(nums)}


def _email(rng: random.Random) -> str:
    user = rng.choice(_NAMES).lower()
    if rng.random() < 0.5:
        user += "." + rng.choice(_WORDS)
    elif rng.random() < 0.5:
        user += str(rng.randint(1, 99))
    return f"{user}@{rng.choice(_DOMAINS)}"


_EMAIL_SENTENCES_1 = (
    "Please contact {0} for details.",
    "Questions about the order can go to {0} at any time.",
    "The new address of the support team is {0} from today.",
    "I wrote to {0} yesterday but got no reply.",
)
_EMAIL_SENTENCES_2 = (
    "Send the report to {0} and copy {1}.",
    "You can reach {0} or {1} after Monday.",
    "Tickets were sent from {0} to {1} this morning.",
    "Ask {0} first; if there is no answer, write to {1}.",
)


def _s_emails(rng: random.Random) -> dict[str, Any]:
    emails = [_email(rng)]
    if rng.random() < 0.5:
        second = _email(rng)
        while second == emails[0]:
            second = _email(rng)
        emails.append(second)
    frames = _EMAIL_SENTENCES_1 if len(emails) == 1 else _EMAIL_SENTENCES_2
    return {"sentence": rng.choice(frames).format(*emails), "answer": _join(emails)}


_NUMBER_SENTENCES = (
    "The shop sold {0} apples and {1} pears last week.",
    "Our team of {0} people walked {1} kilometers in {2} days.",
    "Room {0} has {1} chairs but only {2} tables.",
    "She read {0} pages on Monday and {1} pages on Tuesday.",
    "The bus leaves from stop {0}, and the trip takes {1} minutes.",
    "In {0} the village had {1} houses and {2} farms.",
)


def _s_numbers(rng: random.Random) -> dict[str, Any]:
    frame = rng.choice(_NUMBER_SENTENCES)
    k = frame.count("{")
    nums = [
        rng.randint(1, 2030) if i == 0 and frame.startswith("In ") else rng.randint(2, 500) for i in range(k)
    ]
    return {"sentence": frame.format(*nums), "answer": _join(nums)}


_DATE_SENTENCES_1 = (
    "The contract was signed on {0}.",
    "Her flight lands on {0} in the evening.",
    "Version 2 of the app was released on {0}.",
)
_DATE_SENTENCES_2 = (
    "The meeting moved from {0} to {1}.",
    "Registration opens on {0} and closes on {1}.",
    "He was born on {0} and moved abroad on {1}.",
)
_DATE_MIN = _dt.date(1950, 1, 1).toordinal()
_DATE_MAX = _dt.date(2049, 12, 31).toordinal()


def _date(rng: random.Random) -> _dt.date:
    return _dt.date.fromordinal(rng.randint(_DATE_MIN, _DATE_MAX))


def _s_dates(rng: random.Random) -> dict[str, Any]:
    dates = [_date(rng).isoformat() for _ in range(rng.randint(1, 2))]
    frames = _DATE_SENTENCES_1 if len(dates) == 1 else _DATE_SENTENCES_2
    return {"sentence": rng.choice(frames).format(*dates), "answer": _join(dates)}


_JSON_FIELDS: dict[str, Callable[[random.Random], Any]] = {
    "name": lambda r: r.choice(_NAMES),
    "age": lambda r: r.randint(18, 80),
    "city": lambda r: r.choice(_CITIES),
    "color": lambda r: r.choice(_COLORS),
    "score": lambda r: r.randint(0, 100),
}


def _s_json_object(rng: random.Random) -> dict[str, Any]:
    keys = rng.sample(list(_JSON_FIELDS), rng.randint(2, 3))
    obj = {k: _JSON_FIELDS[k](rng) for k in keys}
    return {
        "pairs_colon": ", ".join(f"{k}: {v}" for k, v in obj.items()),
        "pairs_eq": "; ".join(f"{k}={v}" for k, v in obj.items()),
        "answer": json.dumps(obj),
    }


def _s_json_list(rng: random.Random) -> dict[str, Any]:
    items = _distinct_words(rng, rng.randint(2, 4))
    return {"items": _join(items), "answer": json.dumps(items)}


_CSV_COLUMNS: dict[str, Sequence[str]] = {"name": _NAMES, "city": _CITIES, "color": _COLORS}


def _s_csv(rng: random.Random) -> dict[str, Any]:
    cols = rng.sample(list(_CSV_COLUMNS), 2)
    rows = [{c: rng.choice(_CSV_COLUMNS[c]) for c in cols} for _ in range(2)]
    lines = [",".join(cols)] + [",".join(r[c] for c in cols) for r in rows]
    return {"csv": "\n".join(lines), "answer": json.dumps(rows)}


def _s_acronym(rng: random.Random) -> dict[str, Any]:
    words = _distinct_words(rng, rng.randint(2, 4))
    phrase = " ".join(words) if rng.random() < 0.5 else " ".join(w.capitalize() for w in words)
    return {"text": phrase, "answer": "".join(w[0] for w in words).upper()}


def _s_char_at(rng: random.Random) -> dict[str, Any]:
    w = _word(rng)
    pos = rng.randint(1, len(w))
    return {"word": w, "pos": pos, "ordinal": _ordinal(pos), "answer": w[pos - 1]}


def _s_repeat(rng: random.Random) -> dict[str, Any]:
    w = rng.choice(_WORDS)
    n = rng.randint(2, 5)
    return {"word": w, "n": n, "answer": " ".join([w] * n)}


def _s_palindrome(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.5:
        half = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(1, 3)))
        middle = rng.choice(["", rng.choice(_CONSONANTS + _VOWELS)])
        w = half + middle + half[::-1]
    else:
        w = _word(rng)
    return {"word": w, "answer": "yes" if w == w[::-1] else "no"}


def _s_even_odd(rng: random.Random) -> dict[str, Any]:
    n = rng.randint(0, 99999)
    return {"n": n, "answer": "even" if n % 2 == 0 else "odd"}


def _s_sequence(rng: random.Random) -> dict[str, Any]:
    start = rng.randint(-20, 50)
    step = rng.choice([s for s in range(-9, 13) if s != 0])
    terms = [start + i * step for i in range(rng.randint(4, 5))]
    return {"items": _join(terms), "answer": terms[-1] + step}


_UNITS = (
    ("kilometers", "meters", 1000),
    ("meters", "centimeters", 100),
    ("kilograms", "grams", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("days", "hours", 24),
    ("weeks", "days", 7),
    ("liters", "milliliters", 1000),
    ("yards", "feet", 3),
)


def _s_units(rng: random.Random) -> dict[str, Any]:
    src, dst, factor = rng.choice(_UNITS)
    value = rng.randint(2, 500)
    return {"value": value, "src": src, "dst": dst, "answer": value * factor}


def _s_weekday(rng: random.Random) -> dict[str, Any]:
    d = _date(rng)
    return {
        "iso": d.isoformat(),
        "long": f"{_MONTHS[d.month - 1]} {d.day}, {d.year}",
        "answer": _WEEKDAYS[d.weekday()],
    }


_TABLE_ATTRS: dict[str, Callable[[random.Random], Any]] = {
    "age": lambda r: r.randint(5, 90),
    "city": lambda r: r.choice(_CITIES),
    "favorite color": lambda r: r.choice(_COLORS),
}


def _s_table(rng: random.Random) -> dict[str, Any]:
    attr = rng.choice(list(_TABLE_ATTRS))
    names = rng.sample(_NAMES, rng.randint(3, 4))
    values = {n: _TABLE_ATTRS[attr](rng) for n in names}
    table = "\n".join([f"name | {attr}"] + [f"{n} | {v}" for n, v in values.items()])
    who = rng.choice(names)
    return {"attr": attr, "name": who, "table": table, "answer": values[who]}


# --------------------------------------------------------------------------- registry

T = Template


def _family(
    name: str,
    description: str,
    kind: AnswerKind,
    sample: Callable[[random.Random], dict[str, Any]],
    *templates: Template,
) -> TaskFamily:
    return TaskFamily(name=name, description=description, kind=kind, templates=templates, sample=sample)


_FAMILY_LIST: tuple[TaskFamily, ...] = (
    _family(
        "reverse_word", "reverse the letters of a word", "text", _s_reverse,
        T("Reverse the letters of the word below.", "{word}"),
        T("Write the following word backwards.", "{word}"),
        T('Spell "{word}" in reverse order. Reply with the reversed word only.'),
        T("What do you get when you read {word} from right to left?"),
        T("Return the input string with its characters in reverse order.", "{word}"),
    ),
    _family(
        "uppercase", "convert text to upper case", "text_cs", _s_upper,
        T("Convert the following text to uppercase.", "{text}"),
        T("Rewrite this in all capital letters.", "{text}"),
        T('Change every letter of "{text}" to a capital letter.'),
        T("Make the text below ALL CAPS.", "{text}"),
        T('Give the upper-case form of "{text}" and nothing else.'),
    ),
    _family(
        "lowercase", "convert text to lower case", "text_cs", _s_lower,
        T("Convert the following text to lowercase.", "{text}"),
        T("Rewrite this using only small letters.", "{text}"),
        T('What is "{text}" written entirely in lower case?'),
        T("Remove all capitalization from the text below.", "{text}"),
    ),
    _family(
        "title_case", "capitalize every word", "text_cs", _s_title,
        T("Convert this phrase to title case.", "{text}"),
        T("Capitalize the first letter of each word.", "{text}"),
        T('Rewrite "{text}" so that every word starts with a capital letter.'),
        T("Give the title-case version of the following words.", "{text}"),
        T("Make each word of the phrase below begin with an uppercase letter.", "{text}"),
    ),
    _family(
        "count_vowels", "count the vowels a, e, i, o, u in a word", "number", _s_count_vowels,
        T("How many vowels are in the word below?", "{word}"),
        T("Count the vowels (a, e, i, o, u) in the following word.", "{word}"),
        T('What is the number of vowels in "{word}"?'),
        T("Tell me how many of the letters in {word} are vowels. Answer with a number."),
    ),
    _family(
        "count_letter", "count occurrences of a letter in a word", "number", _s_count_letter,
        T("How many times does the letter '{letter}' appear in the word below?", "{word}"),
        T("Count the occurrences of '{letter}' in the following word.", "{word}"),
        T('In "{word}", how often does the letter {letter} occur?'),
        T("Give the number of '{letter}' characters in {word}."),
    ),
    _family(
        "count_words", "count the words in a sentence", "number", _s_count_words,
        T("How many words are in the following sentence?", "{sentence}"),
        T("Count the words in this text.", "{sentence}"),
        T("Tell me the word count of the sentence below. Reply with a number.", "{sentence}"),
        T('What is the number of words in "{sentence}"?'),
    ),
    _family(
        "word_length", "number of letters in a word", "number", _s_word_length,
        T("How many letters does the word below have?", "{word}"),
        T("What is the length of the following word in characters?", "{word}"),
        T('Count the letters in "{word}".'),
        T("Tell me how long the word {word} is, as a number of letters."),
    ),
    _family(
        "sort_words", "sort words alphabetically", "list_text", _s_sort_words,
        T("Sort these words alphabetically. Separate them with commas.", "{items}"),
        T("Put the following words in alphabetical order.", "{items}"),
        T("Arrange {items} from A to Z and list them separated by commas."),
        T("Return the list below sorted in dictionary order.", "{items}"),
    ),
    _family(
        "sort_numbers", "sort numbers ascending", "list_number", _s_sort_numbers,
        T("Sort these numbers from smallest to largest.", "{items}"),
        T("Put the following numbers in ascending order, separated by commas.", "{items}"),
        T("Arrange {items} in increasing order."),
        T("Return the list below sorted in ascending numeric order.", "{items}"),
    ),
    _family(
        "dedupe_list", "remove duplicates, keep first occurrences", "list_text", _s_dedupe,
        T("Remove the duplicates from this list, keeping the original order.", "{items}"),
        T("List each item below only once, in the order it first appears.", "{items}"),
        T("Deduplicate the following comma-separated list.", "{items}"),
        T("Drop repeated entries from {items} and keep the first occurrence of each."),
    ),
    _family(
        "add", "add two integers", "number", _s_add,
        T("What is {a} + {b}?"),
        T("Add the two numbers below.", "{a} and {b}"),
        T("Compute the sum of {a} and {b}."),
        T("Calculate the total.", "{a} + {b}"),
        T("If you have {a} coins and find {b} more, how many coins do you have?"),
    ),
    _family(
        "subtract", "subtract two integers", "number", _s_sub,
        T("What is {a} - {b}?"),
        T("Subtract {b} from {a}."),
        T("Compute the difference.", "{a} minus {b}"),
        T("Take the second number away from the first.", "{a}, {b}"),
        T("What do you get when you reduce {a} by {b}?"),
    ),
    _family(
        "multiply", "multiply two integers", "number", _s_mul,
        T("What is {a} times {b}?"),
        T("Multiply the two numbers below.", "{a} and {b}"),
        T("Compute the product of {a} and {b}."),
        T("Calculate the following.", "{a} x {b}"),
        T("A box holds {a} items. How many items are in {b} boxes?"),
    ),
    _family(
        "compare_numbers", "the larger of two numbers", "number", _s_compare,
        T("Which number is larger, {a} or {b}?"),
        T("Output the greater of the two numbers below.", "{a}, {b}"),
        T("Between {a} and {b}, which is bigger? Answer with the number."),
        T("Return the maximum of this pair.", "{a} and {b}"),
    ),
    _family(
        "list_max", "the largest number in a list", "number", _s_max,
        T("What is the largest number in this list?", "{items}"),
        T("Find the maximum of the following numbers.", "{items}"),
        T("Which of {items} is the biggest?"),
        T("Return the highest value below.", "{items}"),
    ),
    _family(
        "list_min", "the smallest number in a list", "number", _s_min,
        T("What is the smallest number in this list?", "{items}"),
        T("Find the minimum of the following numbers.", "{items}"),
        T("Which of {items} is the lowest?"),
        T("Return the least value below.", "{items}"),
    ),
    _family(
        "extract_emails", "email addresses in a sentence, in order", "list_text", _s_emails,
        T("Extract all email addresses from the text. Separate them with commas.", "{sentence}"),
        T("List the email addresses mentioned below, in order.", "{sentence}"),
        T('Which email addresses appear in "{sentence}"?'),
        T("Find every e-mail address in this sentence and output them comma-separated.", "{sentence}"),
    ),
    _family(
        "extract_numbers", "numbers in a sentence, in order", "list_number", _s_numbers,
        T("Extract all numbers from the text, separated by commas.", "{sentence}"),
        T("List the numbers that appear below, in order.", "{sentence}"),
        T('Which numbers are mentioned in "{sentence}"?'),
        T("Pull out every number in this sentence, in the order they occur.", "{sentence}"),
    ),
    _family(
        "extract_dates", "ISO dates in a sentence, in order", "list_text", _s_dates,
        T("Extract all dates from the text, separated by commas.", "{sentence}"),
        T("List the dates mentioned below in the order they appear.", "{sentence}"),
        T('Which dates occur in "{sentence}"? Give them as YYYY-MM-DD.'),
        T("Find every date in this sentence and output them comma-separated.", "{sentence}"),
    ),
    _family(
        "json_object", "key-value pairs as a JSON object", "json", _s_json_object,
        T("Convert the following fields into a JSON object.", "{pairs_colon}"),
        T("Write a JSON object with these key-value pairs.", "{pairs_eq}"),
        T("Format this record as JSON, using the field names as keys.", "{pairs_colon}"),
        T("Produce a JSON object from the data below. Keep numbers as numbers.", "{pairs_eq}"),
        T("Represent {pairs_colon} as a JSON object."),
    ),
    _family(
        "json_list", "comma-separated items as a JSON array", "json", _s_json_list,
        T("Convert this comma-separated list into a JSON array.", "{items}"),
        T("Return the items below as a JSON list of strings.", "{items}"),
        T("Write the following words as a JSON array.", "{items}"),
        T("Turn {items} into a JSON list."),
    ),
    _family(
        "csv_to_json", "CSV rows as a JSON array of objects", "json", _s_csv,
        T("Convert this CSV into a JSON array of objects.", "{csv}"),
        T("Turn each row of the CSV below into a JSON object keyed by the header, and return a list.", "{csv}"),
        T("Rewrite the following comma-separated table as JSON.", "{csv}"),
        T("Parse the CSV data and output it as a list of JSON records.", "{csv}"),
    ),
    _family(
        "acronym", "acronym from the first letters", "text_cs", _s_acronym,
        T("Form an acronym from the first letter of each word, in capitals.", "{text}"),
        T("What is the uppercase acronym of the phrase below?", "{text}"),
        T('Abbreviate "{text}" to its initials in capital letters.'),
        T("Take the first letter of every word and write them together in upper case.", "{text}"),
    ),
    _family(
        "char_at_position", "the letter at a 1-based position", "text", _s_char_at,
        T("What is the {ordinal} letter of the word below?", "{word}"),
        T('Which character is at position {pos} in "{word}"? Count from 1.'),
        T("Give the letter number {pos} (starting at 1) of the following word.", "{word}"),
        T("In the word {word}, which letter comes {ordinal}?"),
    ),
    _family(
        "repeat_word", "repeat a word n times", "text", _s_repeat,
        T("Write the word {word} {n} times, separated by spaces."),
        T("Repeat the word below {n} times with a space between copies.", "{word}"),
        T('Say "{word}" {n} times in a row on one line.'),
        T("Output {n} copies of the following word, separated by single spaces.", "{word}"),
    ),
    _family(
        "palindrome", "whether a word is a palindrome (yes/no)", "text", _s_palindrome,
        T("Is the word below a palindrome? Answer yes or no.", "{word}"),
        T('Does "{word}" read the same forwards and backwards? Reply yes or no.'),
        T("Answer yes if the following string is a palindrome, otherwise no.", "{word}"),
        T("Is {word} spelled the same in reverse? Yes or no."),
    ),
    _family(
        "even_odd", "whether an integer is even or odd", "text", _s_even_odd,
        T("Is {n} even or odd?"),
        T("Say whether the number below is even or odd.", "{n}"),
        T("Classify {n} as even or odd."),
        T("Tell me the parity of the following integer: answer even or odd.", "{n}"),
    ),
    _family(
        "next_in_sequence", "next term of an arithmetic sequence", "number", _s_sequence,
        T("What is the next number in this sequence?", "{items}"),
        T("Continue the pattern with one more number.", "{items}"),
        T("Which number comes after {items}?"),
        T("Give the next term of the arithmetic sequence below.", "{items}"),
    ),
    _family(
        "unit_conversion", "integer unit conversion", "number", _s_units,
        T("Convert {value} {src} to {dst}."),
        T("How many {dst} are in {value} {src}?"),
        T("Express {value} {src} in {dst}. Give only the number."),
        T("{value} {src} equals how many {dst}?"),
        T("Convert the quantity below to {dst}.", "{value} {src}"),
    ),
    _family(
        "weekday", "day of the week of a date", "text", _s_weekday,
        T("What day of the week is {iso}?"),
        T("On which weekday does {long} fall?"),
        T("Name the day of the week for the date below.", "{iso}"),
        T("For the date {long}, give the name of the weekday."),
    ),
    _family(
        "table_lookup", "look up a value in a small table", "text", _s_table,
        T("According to the table, what is the {attr} of {name}?", "{table}"),
        T("Find the {attr} listed for {name}.", "{table}"),
        T("Look up {name} in this table and return only the {attr}.", "{table}"),
        T("Here is a small table:\n{table}\n\nWhat {attr} does it give for {name}?"),
        T("Using the data below, report the {attr} of {name}.", "{table}"),
    ),
)  # fmt: skip

FAMILIES: dict[str, TaskFamily] = {f.name: f for f in _FAMILY_LIST}
"""All task families by name (insertion order is stable)."""


# --------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class SplitConfig:
    """How to build train/eval splits.

    ``n_eval`` is the size of *each* eval split. ``heldout_families=None`` picks a
    deterministic ~20% of the families from ``seed``; ``()`` holds out none.
    ``heldout_templates`` is the number of templates (the last ones by index) of
    every training family that are reserved for ``eval_heldout_templates``.
    """

    n_train: int = 2000
    n_eval: int = 200
    heldout_families: tuple[str, ...] | None = None
    heldout_templates: int = 1
    seed: int = 0


PRESETS: dict[str, SplitConfig] = {
    "quick": SplitConfig(n_train=400, n_eval=60),
    "standard": SplitConfig(n_train=4000, n_eval=400),
    "full": SplitConfig(n_train=20000, n_eval=1000),
}
"""Named split sizes. ``quick`` is sized for a CPU run in minutes."""


def resolve_heldout_families(cfg: SplitConfig) -> tuple[str, ...]:
    """The held-out family names for ``cfg`` (sorted), validating explicit choices."""
    names = sorted(FAMILIES)
    if cfg.heldout_families is None:
        k = max(1, round(0.2 * len(names)))
        return tuple(sorted(random.Random(f"neftune-heldout-families:{cfg.seed}").sample(names, k)))
    unknown = [f for f in cfg.heldout_families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown held-out families {unknown}; known: {', '.join(names)}")
    chosen = tuple(sorted(set(cfg.heldout_families)))
    if len(chosen) == len(names):
        raise ValueError("every family is held out; nothing is left to train on")
    return chosen


def _balanced_counts(n: int, k: int, rng: random.Random) -> list[int]:
    base, extra = divmod(n, k)
    bonus = set(rng.sample(range(k), extra))
    return [base + (i in bonus) for i in range(k)]


def _generate_split(
    families: list[str],
    template_indices: Callable[[TaskFamily], Sequence[int]],
    n: int,
    rng: random.Random,
    seen: set[str],
) -> list[Example]:
    """``n`` examples balanced over ``families`` (round-robin order), templates cycled."""
    if n == 0 or not families:
        return []
    per_family: list[list[Example]] = []
    for name, count in zip(families, _balanced_counts(n, len(families), rng)):
        fam = FAMILIES[name]
        indices = list(template_indices(fam))
        offset = rng.randrange(len(indices))
        examples = []
        for i in range(count):
            t = indices[(offset + i) % len(indices)]
            for _ in range(500):
                ex = fam.generate(rng, t)
                if ex.prompt not in seen:
                    break
            else:
                raise RuntimeError(
                    f"family {name!r} template {t}: could not find an unused prompt; ask for fewer examples"
                )
            seen.add(ex.prompt)
            examples.append(ex)
        per_family.append(examples)
    out: list[Example] = []
    for i in range(max(len(x) for x in per_family)):
        out.extend(x[i] for x in per_family if i < len(x))
    return out


def build_splits(cfg: SplitConfig) -> dict[str, list[Example]]:
    """Build the four splits for ``cfg``; the same ``cfg`` always gives the same lists.

    - ``train``: training families x training templates (shuffled).
    - ``eval_seen_templates``: same families and templates, fresh inputs.
    - ``eval_heldout_templates``: training families, held-out templates only.
    - ``eval_heldout_families``: held-out families, all templates.

    Eval splits are interleaved by family, so any prefix stays balanced. No prompt
    appears twice anywhere across the four splits.
    """
    if cfg.n_train < 0 or cfg.n_eval < 0:
        raise ValueError("n_train and n_eval must be >= 0")
    min_templates = min(len(f.templates) for f in FAMILIES.values())
    if not 0 <= cfg.heldout_templates < min_templates:
        raise ValueError(f"heldout_templates must be in [0, {min_templates - 1}]")
    heldout = set(resolve_heldout_families(cfg))
    train_families = [f for f in FAMILIES if f not in heldout]
    heldout_families = [f for f in FAMILIES if f in heldout]
    h = cfg.heldout_templates

    def train_templates(fam: TaskFamily) -> range:
        return range(len(fam.templates) - h)

    def heldout_templates(fam: TaskFamily) -> range:
        return range(len(fam.templates) - h, len(fam.templates))

    def all_templates(fam: TaskFamily) -> range:
        return range(len(fam.templates))

    seen: set[str] = set()
    rng = random.Random(f"neftune-split:train:{cfg.seed}")
    train = _generate_split(train_families, train_templates, cfg.n_train, rng, seen)
    rng.shuffle(train)
    splits = {"train": train}
    for split, fams, templates in (
        ("eval_seen_templates", train_families, train_templates),
        ("eval_heldout_templates", train_families if h else [], heldout_templates),
        ("eval_heldout_families", heldout_families, all_templates),
    ):
        rng = random.Random(f"neftune-split:{split}:{cfg.seed}")
        splits[split] = _generate_split(fams, templates, cfg.n_eval, rng, seen)
    return splits
