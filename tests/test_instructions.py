"""Checkers of verifiable instructions (hand-written answers), the built-in instruction data and its
held-out hygiene. IFEval's own definitions, id by id, are tested on an IFEval-format file in
``tests/test_ifeval_format.py``."""

from __future__ import annotations

import json
import re

import pytest

from neftune.finetune.data.bundle import resolve_data
from neftune.finetune.data.instructions import (
    EVAL_ASKS,
    EVAL_TOPICS,
    HELDOUT_KINDS,
    HELDOUT_PAIRS,
    IFEVAL_SPLITS,
    PHRASINGS,
    SEEN_KINDS,
    TRAIN_ASKS,
    TRAIN_TOPICS,
    InstructionConfig,
    build_instruction_splits,
    compatible,
)
from neftune.finetune.instructions import (
    INSTRUCTION_IDS,
    KIND_IDS,
    KINDS,
    count_sentences,
    count_words,
    follows,
    loose_variants,
)
from neftune.finetune.instructions.text import portable
from neftune.finetune.metrics import following_by_kind, instruction_following


def C(kind, **args):
    return {"kind": kind, "args": args}


# (constraint, an answer that follows it, an answer that does not): written by hand.
CASES = [
    (
        C("word_count", relation="less than", num_words=6),
        "Tea is a calm drink.",
        "Tea is a calm, warm drink.",
    ),
    (C("word_count", relation="at least", num_words=4), "Owls hunt at night.", "Owls hunt."),
    (
        C("sentence_count", relation="at least", num_sentences=2),
        "Owls hunt. They fly!",
        "Owls hunt at night.",
    ),
    (C("sentence_count", relation="less than", num_sentences=2), "Owls hunt.", "Owls hunt. They fly."),
    (C("paragraph_count", num_paragraphs=2), "Owls hunt.\n\n***\n\nThey fly.", "Owls hunt.\n\nThey fly."),
    (C("bullet_count", num_bullets=2), "* Owls hunt.\n* They fly.", "* Owls hunt.\n* They fly.\n* Quietly."),
    (C("highlights", num_highlights=2), "Owls *hunt* and *fly*.", "Owls *hunt* and fly."),
    (C("include_keywords", keywords=["night", "owl"]), "An owl hunts at night.", "Bats hunt at night."),
    (C("exclude_keyword", forbidden_words=["night"]), "Owls hunt in the dark.", "Owls hunt at Night."),
    (C("keyword_frequency", keyword="owl", frequency=2, relation="at least"), "Owl, owl!", "One owl."),
    (C("lowercase"), "owls hunt at night and sleep during the day.", "Owls hunt at night."),
    (C("uppercase"), "THE OWL IS A BIRD THAT HUNTS AT NIGHT.", "THE OWL IS A BIRD THAT HUNTS AT Night."),
    (
        C("first_word", num_paragraphs=2, nth_paragraph=2, first_word="today"),
        "Owls hunt.\n\nToday, they fly.",
        "Today owls hunt.\n\nThey fly.",
    ),
    (
        C("ends_with", end_phrase="Hope this helps."),
        "Owls hunt. Hope this helps.",
        "Hope this helps. Owls.",
    ),
    (C("no_commas"), "Owls hunt and fly.", "Owls hunt, and fly."),
    (C("title"), "<<Owls>>\n\nOwls hunt.", "<Owls>\n\nOwls hunt."),
    (C("postscript", postscript_marker="P.S."), "Owls hunt.\n\nP.S. They fly.", "Owls hunt. They fly."),
    (C("json_format"), '```json\n{"answer": "owls"}\n```', '{"answer": owls}'),
    (
        C("repeat_request", prompt_to_repeat="Describe owls."),
        "Describe owls.\n\nOwls hunt.",
        "Owls hunt. Describe owls.",
    ),
    (C("placeholders", num_placeholders=2), "Meet [name] at [place].", "Meet [name] at the park."),
    (
        C("letter_frequency", letter="k", let_frequency=2, let_relation="at least"),
        "Kites knock.",
        "Kites fly.",
    ),
    (
        C("capital_words", capital_frequency=2, capital_relation="at least"),
        "OWLS are VERY quiet.",
        "OWLS are very quiet.",
    ),
    (C("quotation"), '"Owls hunt at night."', 'Owls "hunt" at night.'),
    (
        C("sections", section_spliter="Section", num_sections=2),
        "Section 1\nOwls.\nSection 2\nFly.",
        "Section 1\nOwls fly.",
    ),
    (C("two_responses"), "Owls hunt.\n******\nOwls fly.", "Owls hunt.\n******\nOwls hunt."),
]


def test_every_kind_has_a_hand_written_case_and_is_an_ifeval_id():
    assert {c["kind"] for c, _, _ in CASES} == set(KINDS)
    assert set(KIND_IDS.values()) <= set(INSTRUCTION_IDS) and len(set(KIND_IDS.values())) == len(KIND_IDS)


@pytest.mark.parametrize(("constraint", "good", "bad"), CASES, ids=[c["kind"] for c, _, _ in CASES])
def test_checker_strict(constraint, good, bad):
    assert follows(constraint, good)
    assert not follows(constraint, bad)
    # The same constraint under its IFEval id.
    assert follows({**constraint, "kind": KIND_IDS[constraint["kind"]]}, good)


@pytest.mark.parametrize(("constraint", "good", "bad"), CASES, ids=[c["kind"] for c, _, _ in CASES])
def test_loose_accepts_what_strict_accepts(constraint, good, bad):
    assert follows(constraint, good, loose=True)


LOOSE_ONLY = [
    # A chatty first line breaks the strict check; loose drops it.
    (C("first_word", num_paragraphs=1, nth_paragraph=1, first_word="owls"), "Sure! Here it is:\nOwls hunt."),
    (C("lowercase"), "Here You Go:\nowls hunt at night and sleep during the day."),
    (C("json_format"), 'Here is the JSON:\n{"answer": "owls"}'),
    # A trailing sign-off breaks the strict check; loose drops the last line.
    (C("ends_with", end_phrase="Hope this helps."), "Owls hunt. Hope this helps.\nBye!"),
    (C("quotation"), '"Owls hunt at night."\n(That is my answer.)'),
    # Markdown emphasis: loose removes the asterisks.
    (C("first_word", num_paragraphs=1, nth_paragraph=1, first_word="owls"), "**Owls** hunt."),
]


@pytest.mark.parametrize(("constraint", "answer"), LOOSE_ONLY, ids=range(len(LOOSE_ONLY)))
def test_loose_only(constraint, answer):
    assert not follows(constraint, answer)
    assert follows(constraint, answer, loose=True)


@pytest.mark.parametrize(("constraint", "good", "bad"), CASES, ids=[c["kind"] for c, _, _ in CASES])
def test_empty_answer_follows_nothing(constraint, good, bad):
    assert not follows(constraint, "") and not follows(constraint, "  \n", loose=True)


def test_loose_variants_and_counts():
    # IFEval's order: the response, it without *, then without the first / last / both lines, and
    # these without *.
    assert loose_variants("a\n*b*\nc") == [
        "a\n*b*\nc",
        "a\nb\nc",
        "*b*\nc",
        "a\n*b*",
        "*b*",
        "b\nc",
        "a\nb",
        "b",
    ]
    assert count_words("Don't stop: 3 owls.") == 5  # \w+ runs: Don, t, stop, 3, owls
    assert count_sentences("One. Two! Three? ") == 3
    assert count_sentences("No end mark") == 1 and count_sentences("") == 0


def test_unknown_kind_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown constraint kind 'nope'"):
        follows(C("nope"), "x")
    with pytest.raises(ValueError, match="'less than' or 'at least'"):
        follows(C("word_count", relation="at most", num_words=3), "x")
    with pytest.raises(ValueError, match="missing argument 'num_words'"):
        follows(C("word_count", relation="at least"), "x")


def test_instruction_following_metrics():
    constraints = [[C("lowercase"), C("no_commas")], [C("quotation")], [C("no_commas")]]
    responses = ["owls hunt at night, and sleep during the day.", '"Loud."', "Sure:\nfine"]
    m = instruction_following(constraints, responses)
    # prompt 1: 1 of 2 followed; prompt 2: 1 of 1; prompt 3: 1 of 1.
    assert m["prompt_strict"] == pytest.approx(2 / 3) and m["instruction_strict"] == pytest.approx(3 / 4)
    by_kind = following_by_kind(constraints, responses)
    assert by_kind["no_commas"] == {"n": 2, "strict": 0.5, "loose": 0.5}
    assert by_kind["lowercase"]["strict"] == 1.0 and by_kind["quotation"]["n"] == 1
    with pytest.raises(ValueError, match="differ in length"):
        instruction_following(constraints, responses[:2])


# --------------------------------------------------------------------------- the data and its splits


@pytest.fixture(scope="module")
def splits():
    return build_instruction_splits(InstructionConfig(n_train=300, n_eval=90, seed=0))


def test_taxonomy():
    assert set(PHRASINGS) == set(KINDS) and set(SEEN_KINDS) | set(HELDOUT_KINDS) == set(KINDS)
    assert not set(SEEN_KINDS) & set(HELDOUT_KINDS) and len(HELDOUT_KINDS) >= 5
    for a, b in (tuple(p) for p in HELDOUT_PAIRS):
        assert a in SEEN_KINDS and b in SEEN_KINDS and compatible(a, b)
    assert len(HELDOUT_PAIRS) >= 10


def test_splits_are_deterministic_and_disjoint(splits):
    again = build_instruction_splits(InstructionConfig(n_train=300, n_eval=90, seed=0))
    assert [r.messages for r in again["train"]] == [r.messages for r in splits["train"]]
    other = build_instruction_splits(InstructionConfig(n_train=300, n_eval=90, seed=1))
    assert [r.messages for r in other["train"]] != [r.messages for r in splits["train"]]
    prompts = [r.messages[0]["content"] for s in splits.values() for r in s]
    assert len(prompts) == len(set(prompts)) == 300 + 2 * 90


def test_training_never_shows_heldout_types_phrasings_or_pairs(splits):
    heldout = [PHRASINGS[k][-1] for k in SEEN_KINDS] + [p for k in HELDOUT_KINDS for p in PHRASINGS[k]]
    # A wording as a pattern: its fixed text in order, anything where a {field} goes.
    patterns = [re.compile(".+?".join(re.escape(part) for part in re.split(r"\{\w+\}", p))) for p in heldout]
    for rec in splits["train"]:
        kinds = [c["kind"] for c in rec.meta["constraints"]]
        assert 1 <= len(kinds) <= 3 and len(set(kinds)) == len(kinds)
        assert not set(kinds) & set(HELDOUT_KINDS)
        for c in rec.meta["constraints"]:
            assert c["phrasing"] != len(PHRASINGS[c["kind"]]) - 1
        assert all(frozenset((a, b)) not in HELDOUT_PAIRS for a in kinds for b in kinds if a != b)
        prompt = rec.messages[0]["content"]
        assert not any(p.search(prompt) for p in patterns), prompt
    # ...and the patterns do find held-out wordings where they are.
    for rec in splits["ifeval_seen_types"] + splits["ifeval_heldout_types"]:
        if rec.meta["variant"] != "new_prompts" and rec.meta["variant"] != "heldout_combinations":
            assert any(p.search(rec.messages[0]["content"]) for p in patterns)


def test_training_responses_follow_their_constraints(splits):
    # By IFEval's own text tools (the dev install has the ifeval extra) and by the approximations.
    for rec in splits["train"]:
        response = rec.messages[1]["content"]
        assert response.strip()
        for c in rec.meta["constraints"]:
            assert follows(c, response), (c, response)
            with portable():
                assert follows(c, response), (c, response)
    kinds = {c["kind"] for rec in splits["train"] for c in rec.meta["constraints"]}
    assert kinds == set(SEEN_KINDS), "every seen kind is trained on"


def test_eval_splits_measure_what_they_claim(splits):
    seen, heldout = splits["ifeval_seen_types"], splits["ifeval_heldout_types"]
    variants = {r.meta["variant"] for r in seen}
    assert variants == {"new_prompts", "heldout_phrasings", "heldout_combinations"}
    for rec in seen:
        kinds = [c["kind"] for c in rec.meta["constraints"]]
        assert set(kinds) <= set(SEEN_KINDS)
        pairs = {frozenset((a, b)) for a in kinds for b in kinds if a != b}
        last = [c["phrasing"] == len(PHRASINGS[c["kind"]]) - 1 for c in rec.meta["constraints"]]
        if rec.meta["variant"] == "heldout_phrasings":
            assert all(last)
        else:
            assert not any(last)
        assert bool(pairs & HELDOUT_PAIRS) == (rec.meta["variant"] == "heldout_combinations")
        assert rec.messages[1]["content"] == ""
    for rec in heldout:  # only held-out types, so its prompt-level figures are about them alone
        assert {c["kind"] for c in rec.meta["constraints"]} <= set(HELDOUT_KINDS)

    assert {c["kind"] for r in heldout for c in r.meta["constraints"]} >= set(HELDOUT_KINDS)


def test_constraints_render_into_the_prompt(splits):
    for rec in splits["ifeval_seen_types"][:30] + splits["train"][:30]:
        prompt = rec.messages[0]["content"]
        assert prompt.startswith(rec.meta["request"])
        for c in rec.meta["constraints"]:
            assert c["text"] in prompt and "{" not in c["text"]
    json.dumps([r.meta for r in splits["train"]])  # meta is JSON-shaped (it is saved with runs)


def test_builtin_presets_carry_the_instruction_data():
    bundle = resolve_data("builtin:quick")
    assert tuple(bundle.ifeval) == IFEVAL_SPLITS and all(bundle.ifeval.values())
    n_instr = sum(bool(r.meta.get("ifeval")) for r in bundle.train)
    assert 0 < n_instr < len(bundle.train), "instruction records are mixed into the task records"
    assert resolve_data("builtin:quick@1").train != bundle.train


# --------------------------------------------------------------------------- held-out hygiene


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_eval_topics_and_requests_are_disjoint_from_training(splits):
    assert not set(TRAIN_TOPICS) & set(EVAL_TOPICS)
    assert not _words(" ".join(TRAIN_TOPICS)) & _words(" ".join(EVAL_TOPICS)), "no topic word is shared"
    assert not set(TRAIN_ASKS) & set(EVAL_ASKS)
    train_requests = {r.meta["request"] for r in splits["train"]}
    train_prompts = [r.messages[0]["content"] for r in splits["train"]]
    topic_words = _words(" ".join(TRAIN_TOPICS))
    for split in IFEVAL_SPLITS:
        for rec in splits[split]:
            request = rec.meta["request"]
            assert request not in train_requests
            assert not any(request in p for p in train_prompts), request
            assert any(t in request for t in EVAL_TOPICS)
            assert not any(re.search(rf"\\b{re.escape(t)}\\b", request) for t in TRAIN_TOPICS), request
    # ...and no training prompt asks about an evaluation topic.
    for prompt in train_prompts:
        assert not any(t in prompt for t in EVAL_TOPICS), prompt
    assert topic_words


def test_no_training_answer_trains_a_heldout_type(splits):
    # Each held-out type, with the weakest argument that any answer could follow by accident.
    accidental = [
        C("placeholders", num_placeholders=1),
        C("quotation"),
        C("sections", section_spliter="Section", num_sections=1),
        C("two_responses"),
        C("capital_words", capital_frequency=2, capital_relation="at least"),
    ]
    for rec in splits["train"]:
        answer = rec.messages[1]["content"]
        assert not answer.isupper(), "an all-capitals answer would train uppercase and capital words"
        for c in accidental:
            assert not follows(c, answer, loose=True), (c["kind"], answer)


def test_prompt_wording_matches_the_checker(splits):
    # IFEval's "less than" is strict: the prompts say "fewer than", never "at most" / "no more than".
    for split in ("train", *IFEVAL_SPLITS):
        for rec in splits[split]:
            for c in rec.meta["constraints"]:
                relation = next((v for k, v in c["args"].items() if k.endswith("relation")), None)
                text = c["text"]
                assert "at most" not in text and "no more than" not in text
                if relation == "less than":
                    assert "fewer than" in text and "no fewer than" not in text, text
                elif relation == "at least":
                    assert "at least" in text or "no fewer than" in text, text
                assert c["instruction_id"] == KIND_IDS[c["kind"]]


def test_data_do_not_depend_on_optional_packages():
    cfg = InstructionConfig(n_train=40, n_eval=10, seed=3)
    with portable():
        plain = build_instruction_splits(cfg)
    assert [r.messages for r in build_instruction_splits(cfg)["train"]] == [
        r.messages for r in plain["train"]
    ]
