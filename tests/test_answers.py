"""Stored answers -> per-prompt units: re-scoring with the current checkers, truncation (recorded,
inferred or unknown), and the statistics built on them (neftune.experiments.answers / stats)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neftune.experiments.answers import (
    INFER_SLACK,
    arm_metric_values,
    builtin_constraints,
    infer_truncated,
    load_arm_answers,
    metric_units,
)
from neftune.experiments.setting import Setting
from neftune.experiments.stats import summarize
from neftune.finetune.data.bundle import resolve_data

NO_COMMAS = {"kind": "no_commas", "args": {}}
ENDS = {"kind": "ends_with", "args": {"end_phrase": "Is there anything else?"}}


def write_eval(folder: Path, *, splits: dict, generations: dict, config: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "per_prompt.json").write_text(json.dumps({"schema": "neftune.per_prompt/1", "splits": splits}))
    (folder / "generations.json").write_text(json.dumps(generations))
    if config:
        (folder / "config.yaml").write_text(config)
    return folder


def test_answers_are_rescored_with_the_stored_constraints(tmp_path):
    outputs = ["a, b", "plain words. Is there anything else?"]
    # The stored scores are wrong on purpose (an older checker): the re-score replaces them.
    splits = {
        "ifeval_seen_types": [
            {
                "length_chars": len(o),
                "kinds": ["no_commas", "ends_with"],
                "strict": [True, True],
                "loose": [True, True],
            }
            for o in outputs
        ]
    }
    generations = {
        "ifeval_seen_types": [
            {
                "prompt": f"p{i}",
                "output": o,
                "new_tokens": 5,
                "truncated": False,
                "constraints": [NO_COMMAS, ENDS],
            }
            for i, o in enumerate(outputs)
        ]
    }
    ans = load_arm_answers(write_eval(tmp_path, splits=splits, generations=generations))
    assert (ans.rescored, ans.changed, ans.not_rescored, ans.truncation) == (2, 1, 0, "recorded")
    assert [r.strict for r in ans.rows] == [(False, False), (True, True)]
    values = arm_metric_values(ans, ["ifeval/prompt_strict", "ifeval/instruction_strict", "truncated/ifeval"])
    assert values == {"ifeval/prompt_strict": 0.5, "ifeval/instruction_strict": 0.5, "truncated/ifeval": 0.0}
    units = metric_units(ans.rows, "ifeval/instruction_strict")
    assert sorted(u[:2] for u in units.values()) == [(0.0, 2.0), (2.0, 2.0)]  # (followed, instructions)


def test_old_evaluations_infer_truncation_or_say_unknown(tmp_path):
    # An evaluation from before the flag: no "truncated", no constraints, no new_tokens.
    splits = {
        "eval_seen_templates": [{"length_chars": 3, "correct": True}, {"length_chars": 40, "correct": False}]
    }
    generations = {
        "eval_seen_templates": [{"prompt": "q1", "output": "abc"}, {"prompt": "q2", "output": "x " * 20}]
    }
    folder = write_eval(tmp_path, splits=splits, generations=generations, config="max_new_tokens: 10\n")

    def words(text: str) -> int:  # a stand-in tokenizer: one token per word
        return len(text.split())

    ans = load_arm_answers(folder, count_tokens=words)
    assert ans.truncation == "inferred" and ans.caps["tasks"] == 10
    assert [r.truncated for r in ans.rows] == [False, True]  # 1 token; 20 >= the cap of 10
    unknown = load_arm_answers(folder)  # no tokenizer: unknown, never a crash
    assert unknown.truncation == "unknown" and [r.truncated for r in unknown.rows] == [None, None]
    assert metric_units(unknown.rows, "truncated/tasks") is None
    assert arm_metric_values(unknown, ["accuracy/eval_seen_templates"]) == {
        "accuracy/eval_seen_templates": 0.5
    }


def test_infer_truncated_thresholds():
    cap = 96
    assert infer_truncated("x", cap, lambda t: cap) is True
    assert infer_truncated("x", cap, lambda t: cap + 3) is True
    assert infer_truncated("x", cap, lambda t: cap - INFER_SLACK) is None  # too close to tell
    assert infer_truncated("x", cap, lambda t: cap - INFER_SLACK - 1) is False
    assert infer_truncated("x", cap, None) is None

    def broken(text: str) -> int:
        raise RuntimeError("tokenizer failed")

    assert infer_truncated("x", cap, broken) is None


def test_constraints_are_recovered_from_the_built_in_data():
    lookup = builtin_constraints("builtin:quick", 0)
    record = resolve_data("builtin:quick").ifeval["ifeval_seen_types"][3]
    kinds = tuple(c["kind"] for c in record.meta["constraints"])
    prompt = record.messages[0]["content"]
    assert lookup("ifeval_seen_types", 3, prompt, kinds) == record.meta["constraints"]
    # Reworded constraints (same request sentence, same kinds, same position) are still found.
    reworded = record.meta["request"] + " Some other wording of the same constraints."
    assert lookup("ifeval_seen_types", 3, reworded, kinds) == record.meta["constraints"]
    assert lookup("ifeval_seen_types", 3, "An unrelated prompt.", kinds) is None
    assert builtin_constraints("my.jsonl", 0) is None


def _arm_rows(tmp_path: Path, name: str, scores: list[bool], cut: list[bool]) -> Path:
    splits = {
        "ifeval_seen_types": [
            {"length_chars": 10, "kinds": ["no_commas"], "strict": [s], "loose": [s], "truncated": c}
            for s, c in zip(scores, cut)
        ]
    }
    generations = {
        "ifeval_seen_types": [
            {
                "prompt": f"prompt {i}",
                "output": "a b" if s else "a, b",
                "truncated": c,
                "constraints": [NO_COMMAS],
            }
            for i, (s, c) in enumerate(zip(scores, cut))
        ]
    }
    return write_eval(tmp_path / name, splits=splits, generations=generations)


def test_summary_uses_prompt_level_intervals_and_drops_cut_answers(tmp_path):
    # Same 6 prompts for both seeds. The noisy arm fails the prompts its answers were cut on.
    base_scores = [[True, False, True, True, False, True], [True, True, False, True, False, True]]
    noisy_scores = [[False, False, True, False, False, True], [True, False, False, False, False, True]]
    noisy_cut = [[True, False, False, True, False, False], [False, True, False, True, False, False]]
    answers, arms = {}, []
    for seed in (0, 1):
        for setting, scores, cut in (
            (Setting(0.0), base_scores[seed], [False] * 6),
            (Setting(10.0), noisy_scores[seed], noisy_cut[seed]),
        ):
            folder = _arm_rows(tmp_path, f"a{setting.alpha:g}-s{seed}", scores, cut)
            answers[(setting, seed)] = load_arm_answers(folder)
            arms.append(
                {"id": f"a{setting.alpha:g}-s{seed}", "setting": setting.to_dict(), "seed": seed,
                 "status": "complete", "eval": {"ifeval/prompt_strict": 0.123}}
            )  # fmt: skip
    results = {
        "schema": "neftune.results/1", "arms": arms, "baseline": Setting(0.0).to_dict(),
        "config": {"primary_metric": "ifeval/prompt_strict"},
    }  # fmt: skip
    s = summarize(results, answers=answers)
    assert s.same_prompts
    c = s.metric("ifeval/prompt_strict").cell(Setting(10.0))
    # The arms' metric comes from the re-scored rows, not the stored 0.123.
    assert c.values == {0: pytest.approx(2 / 6), 1: pytest.approx(2 / 6)}
    assert c.diff.mean == pytest.approx(2 / 6 - 4 / 6) and c.diff.covers == "seeds and prompts"
    assert c.diff.n_prompts == 6
    assert c.diff.lo < c.diff.mean < c.diff.hi
    # Without the cut answers only prompts 1, 2, 4, 5 (seed 0) and 0, 2, 4, 5 (seed 1) remain, and
    # there both arms scored alike on every prompt: the whole loss came from cut answers, and a
    # difference of zero width gives no verdict.
    u = c.diff_untruncated
    assert u is not None and u.mean == 0.0 and u.n_prompts == 4 and u.degenerate
    assert c.verdict_untruncated == "n/a (no variation)"
    truncation = s.metric("truncated/ifeval").cell(Setting(10.0))
    assert truncation.values == {0: pytest.approx(2 / 6), 1: pytest.approx(2 / 6)}
