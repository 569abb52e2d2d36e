"""Generated instruction tasks: answers, checkers, determinism and split hygiene."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neftune.finetune.data import (
    FAMILIES,
    PRESETS,
    SPLIT_NAMES,
    Example,
    SplitConfig,
    build_splits,
    check_answer,
    resolve_heldout_families,
)

FAMILY_NAMES = sorted(FAMILIES)


def _examples(name: str, n_per_template: int = 25, seed: int = 0) -> list[Example]:
    fam = FAMILIES[name]
    rng = random.Random(seed)
    return [fam.generate(rng, t) for t in range(len(fam.templates)) for _ in range(n_per_template)]


def _canonical(ex: Example) -> object:
    """What a correct answer 'means', to tell genuinely different answers apart."""
    kind = FAMILIES[ex.family].kind
    if kind == "json":
        return json.dumps(json.loads(ex.output), sort_keys=True)
    if kind == "number":
        return float(ex.output)
    if kind == "list_number":
        return tuple(float(x) for x in ex.output.split(","))
    if kind == "text_cs":
        return ex.output
    return ex.output.casefold()


# --------------------------------------------------------------------------- registry


def test_at_least_24_families_with_4_distinct_templates() -> None:
    assert len(FAMILIES) >= 24
    for name, fam in FAMILIES.items():
        assert fam.name == name
        assert len(fam.templates) >= 4, name
        wordings = {t.instruction for t in fam.templates}
        assert len(wordings) == len(fam.templates), f"{name} has duplicate templates"
        assert fam.kind in ("text", "text_cs", "number", "list_text", "list_number", "json")


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_generated_examples_pass_their_own_checker(name: str) -> None:
    for ex in _examples(name):
        assert ex.family == name
        assert ex.output.strip() == ex.output and ex.output
        assert not ex.output.endswith((".", "!")), "the checker drops one trailing period"
        assert check_answer(ex, ex.output), ex
        assert check_answer(ex, f"  {ex.output}\n\nExplanation: this is how I got it."), ex


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_a_different_answer_fails(name: str) -> None:
    examples = _examples(name)
    wrong_checked = 0
    for ex, other in zip(examples, examples[1:] + examples[:1]):
        if _canonical(ex) != _canonical(other):
            assert not check_answer(ex, other.output), (ex, other.output)
            wrong_checked += 1
    assert wrong_checked >= len(examples) // 3
    for ex in examples[:10]:
        assert not check_answer(ex, "")
        assert not check_answer(ex, "I don't know")


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_templates_render_all_placeholders(name: str) -> None:
    for ex in _examples(name, n_per_template=3):
        assert "{" not in ex.instruction or FAMILIES[name].kind == "json"
        assert not re.search(r"\{[a-z_]+\}", ex.prompt), ex.prompt


def test_check_answer_unknown_family() -> None:
    ex = Example("Say hi.", "", "hi", family="no_such_family", template=0)
    with pytest.raises(KeyError, match="no_such_family"):
        check_answer(ex, "hi")


def test_generate_rejects_bad_template_index() -> None:
    with pytest.raises(IndexError):
        FAMILIES["add"].generate(random.Random(0), len(FAMILIES["add"].templates))


# --------------------------------------------------------------------------- answers are right


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"-?\d+", text)]


def test_answers_match_independent_oracles() -> None:
    for ex in _examples("add"):
        a, b = _ints(ex.prompt)
        assert int(ex.output) == a + b
    for ex in _examples("multiply"):
        a, b = _ints(ex.prompt)
        assert int(ex.output) == a * b
    for ex in _examples("list_max"):
        assert int(ex.output) == max(_ints(ex.input or ex.instruction))
    for ex in _examples("list_min"):
        assert int(ex.output) == min(_ints(ex.input or ex.instruction))
    for ex in _examples("sort_numbers"):
        assert _ints(ex.output) == sorted(_ints(ex.input or ex.instruction))
    for ex in _examples("even_odd"):
        (n,) = _ints(ex.prompt)
        assert ex.output == ("even" if n % 2 == 0 else "odd")
    for ex in _examples("weekday"):
        iso = re.search(r"\d{4}-\d{2}-\d{2}", ex.prompt)
        if iso:
            day = dt.date.fromisoformat(iso.group())
        else:
            day = dt.datetime.strptime(
                re.search(r"[A-Z][a-z]+ \d+, \d{4}", ex.prompt).group(), "%B %d, %Y"
            ).date()
        assert ex.output == day.strftime("%A")
    for ex in _examples("next_in_sequence"):
        terms = _ints(ex.input or ex.instruction)
        assert int(ex.output) == terms[-1] + (terms[1] - terms[0])
    for ex in _examples("palindrome"):
        word = re.search(r'"?(\b[a-z]+\b)"?', ex.input).group(1) if ex.input else None
        if word:
            assert ex.output == ("yes" if word == word[::-1] else "no")


# --------------------------------------------------------------------------- the checking rule


def _ex(family: str, output: str) -> Example:
    return Example("instruction", "", output, family=family, template=0)


@pytest.mark.parametrize(
    ("family", "expected", "prediction", "ok"),
    [
        # numbers compare numerically; one unit word and thousands separators are fine
        ("add", "1200", "1200", True),
        ("add", "1200", "1,200", True),
        ("add", "1200", "1200.0", True),
        ("add", "1200", "1200.", True),
        ("unit_conversion", "5000", "5000 meters", True),
        ("subtract", "-7", "-7", True),
        ("subtract", "-7", "7", False),
        ("add", "1200", "12,00", False),
        ("add", "1200", "The answer is 1200", False),
        # first-line rule: later lines are ignored, extra words on the answer line are not
        ("add", "42", "42\nBecause 40 + 2 = 42.", True),
        ("add", "42", "\n\n  42  \n", True),
        ("add", "42", "42 because 40 + 2", False),
        ("add", "42", "Let me think.\n42", False),
        # text: case-insensitive, quotes and one trailing period dropped
        ("reverse_word", "olleh", "OLLEH", True),
        ("reverse_word", "olleh", '"olleh".', True),
        ("reverse_word", "olleh", "`olleh`", True),
        ("reverse_word", "olleh", "olleh olleh", False),
        ("palindrome", "yes", "Yes.", True),
        ("palindrome", "yes", "no", False),
        ("repeat_word", "cat cat cat", "cat  cat   cat", True),
        # case-sensitive families
        ("uppercase", "HELLO WORLD", "HELLO WORLD", True),
        ("uppercase", "HELLO WORLD", "hello world", False),
        ("title_case", "Red Apple", "Red apple", False),
        ("acronym", "NASA", "nasa", False),
        # lists: same items, same order, commas; brackets and quotes tolerated
        ("sort_words", "apple, pear, plum", "apple, pear, plum", True),
        ("sort_words", "apple, pear, plum", "Apple,pear , plum", True),
        ("sort_words", "apple, pear, plum", '["apple", "pear", "plum"]', True),
        ("sort_words", "apple, pear, plum", "pear, apple, plum", False),
        ("sort_words", "apple, pear, plum", "apple, pear", False),
        ("sort_numbers", "1, 5, 10", "1, 5.0, 10", True),
        ("sort_numbers", "1, 5, 10", "1, 10, 5", False),
        ("extract_emails", "a@b.com, c@d.org", "a@b.com, c@d.org.", True),
        # JSON: parsed and compared structurally; text after the value is ignored
        ("json_object", '{"name": "Ann", "age": 31}', '{"age": 31, "name": "Ann"}', True),
        ("json_object", '{"name": "Ann", "age": 31}', '{\n  "name": "Ann",\n  "age": 31\n}', True),
        ("json_object", '{"name": "Ann", "age": 31}', '```json\n{"name": "Ann", "age": 31}\n```', True),
        ("json_object", '{"name": "Ann", "age": 31}', '{"name": "Ann", "age": 31} Hope this helps!', True),
        ("json_object", '{"name": "Ann", "age": 31}', '{"name": "Ann", "age": "31"}', False),
        ("json_object", '{"name": "Ann", "age": 31}', '{"name": "ann", "age": 31}', False),
        ("json_object", '{"name": "Ann", "age": 31}', '{"name": "Ann"}', False),
        ("json_object", '{"name": "Ann", "age": 31}', "Here it is: {}", False),
        ("json_list", '["a", "b"]', '["b", "a"]', False),
        ("json_list", '["a", "b"]', '["a", "b"]', True),
        ("json_object", '{"ok": true}', '{"ok": 1}', False),
    ],
)
def test_checking_rule(family: str, expected: str, prediction: str, ok: bool) -> None:
    assert check_answer(_ex(family, expected), prediction) is ok


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), family=st.sampled_from(FAMILY_NAMES), data=st.data())
def test_any_seed_generates_checkable_examples(seed: int, family: str, data: st.DataObject) -> None:
    fam = FAMILIES[family]
    t = data.draw(st.integers(0, len(fam.templates) - 1))
    ex = fam.generate(random.Random(seed), t)
    assert ex.template == t
    assert check_answer(ex, ex.output)
    assert check_answer(ex, ex.output + "\nextra line")


# --------------------------------------------------------------------------- Example


def test_example_prompt_and_conversions() -> None:
    ex = Example("Add the numbers.", "2 and 3", "5", family="add", template=1)
    assert ex.prompt == "Add the numbers.\n\n2 and 3"
    assert ex.to_alpaca() == {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
    assert ex.to_messages() == [
        {"role": "user", "content": "Add the numbers.\n\n2 and 3"},
        {"role": "assistant", "content": "5"},
    ]
    bare = Example("What is 2 + 3?", "", "5", family="add", template=0)
    assert bare.prompt == "What is 2 + 3?"
    with pytest.raises(AttributeError):
        bare.output = "6"  # type: ignore[misc]


# --------------------------------------------------------------------------- splits

SMALL = SplitConfig(n_train=300, n_eval=50, seed=3)


@pytest.fixture(scope="module")
def small_splits() -> dict[str, list[Example]]:
    return build_splits(SMALL)


def test_split_sizes_and_keys(small_splits: dict[str, list[Example]]) -> None:
    assert tuple(small_splits) == SPLIT_NAMES
    assert len(small_splits["train"]) == 300
    for name in SPLIT_NAMES[1:]:
        assert len(small_splits[name]) == 50, name


def test_default_heldout_families_are_about_a_fifth() -> None:
    held = resolve_heldout_families(SMALL)
    assert held == tuple(sorted(held))
    assert len(held) > 0 and abs(len(held) - 0.2 * len(FAMILIES)) <= 1
    assert resolve_heldout_families(SMALL) == held
    others = {resolve_heldout_families(SplitConfig(seed=s)) for s in range(6)}
    assert len(others) > 1, "the held-out choice should depend on the seed"


def test_no_heldout_family_or_template_leaks_into_train(small_splits: dict[str, list[Example]]) -> None:
    held = set(resolve_heldout_families(SMALL))
    h = SMALL.heldout_templates
    for ex in small_splits["train"] + small_splits["eval_seen_templates"]:
        assert ex.family not in held
        assert ex.template < len(FAMILIES[ex.family].templates) - h
    for ex in small_splits["eval_heldout_templates"]:
        assert ex.family not in held
        assert ex.template >= len(FAMILIES[ex.family].templates) - h
    assert {ex.family for ex in small_splits["eval_heldout_families"]} == held
    train_pairs = {(ex.family, ex.template) for ex in small_splits["train"]}
    for name in ("eval_heldout_templates", "eval_heldout_families"):
        assert not train_pairs & {(ex.family, ex.template) for ex in small_splits[name]}


def test_no_duplicate_prompts_anywhere(small_splits: dict[str, list[Example]]) -> None:
    prompts = [ex.prompt for split in small_splits.values() for ex in split]
    assert len(prompts) == len(set(prompts))


def test_splits_are_balanced(small_splits: dict[str, list[Example]]) -> None:
    held = set(resolve_heldout_families(SMALL))
    for name, split in small_splits.items():
        counts = Counter(ex.family for ex in split)
        assert max(counts.values()) - min(counts.values()) <= 1, name
        expected_families = held if name == "eval_heldout_families" else set(FAMILIES) - held
        assert set(counts) == expected_families, name
    # eval splits are interleaved: a prefix of one round covers distinct families
    seen = small_splits["eval_seen_templates"]
    k = len(FAMILIES) - len(held)
    assert len({ex.family for ex in seen[:k]}) == k
    # every training template is used
    train_pairs = Counter((ex.family, ex.template) for ex in small_splits["train"])
    for fam in set(FAMILIES) - held:
        assert all((fam, t) in train_pairs for t in range(len(FAMILIES[fam].templates) - 1))


def test_splits_are_deterministic(small_splits: dict[str, list[Example]]) -> None:
    assert build_splits(SMALL) == small_splits
    other = build_splits(SplitConfig(n_train=300, n_eval=50, seed=4))
    assert other["train"] != small_splits["train"]
    # train does not depend on the eval size
    bigger_eval = build_splits(SplitConfig(n_train=300, n_eval=80, seed=3))
    assert bigger_eval["train"] == small_splits["train"]


def test_explicit_heldout_choices() -> None:
    cfg = SplitConfig(n_train=60, n_eval=12, heldout_families=("add", "weekday"), heldout_templates=2)
    splits = build_splits(cfg)
    assert {ex.family for ex in splits["eval_heldout_families"]} == {"add", "weekday"}
    assert all(ex.family not in ("add", "weekday") for ex in splits["train"])
    for ex in splits["train"]:
        assert ex.template < len(FAMILIES[ex.family].templates) - 2
    none = build_splits(SplitConfig(n_train=40, n_eval=10, heldout_families=(), heldout_templates=0))
    assert none["eval_heldout_families"] == [] and none["eval_heldout_templates"] == []
    assert {ex.family for ex in none["train"]} == set(FAMILIES)


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (SplitConfig(heldout_families=("nope",)), "unknown held-out"),
        (SplitConfig(heldout_families=tuple(FAMILIES)), "nothing is left"),
        (SplitConfig(heldout_templates=4), "heldout_templates"),
        (SplitConfig(heldout_templates=-1), "heldout_templates"),
        (SplitConfig(n_train=-1), "n_train"),
    ],
)
def test_bad_split_configs(cfg: SplitConfig, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_splits(cfg)


def test_presets() -> None:
    assert set(PRESETS) >= {"quick", "standard", "full"}
    quick = PRESETS["quick"]
    assert quick.n_train <= 500 and quick.n_eval <= 100
    assert PRESETS["standard"].n_train == 4000 and PRESETS["standard"].n_eval == 400
    splits = build_splits(quick)
    outputs = [ex.output for split in splits.values() for ex in split]
    # short responses keep CPU training cheap (~4 characters per token)
    assert sum(map(len, outputs)) / len(outputs) < 40
    assert max(map(len, outputs)) < 160
    prompts = [ex.prompt for split in splits.values() for ex in split]
    assert max(map(len, prompts)) < 400


def test_splits_identical_across_processes() -> None:
    """`neftune train` and `neftune eval` run in separate processes; str hashing must not leak in."""
    import subprocess
    import sys

    code = (
        "import hashlib, json; from neftune.finetune.data import build_splits, SplitConfig; "
        "s = build_splits(SplitConfig(n_train=64, n_eval=16, seed=5)); "
        "print(hashlib.sha256(json.dumps({k: [e.prompt + e.output for e in v] for k, v in s.items()})"
        ".encode()).hexdigest())"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**env, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1
