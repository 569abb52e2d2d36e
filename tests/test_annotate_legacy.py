"""scripts/annotate_legacy_constraints.py: old built-in constraints in IFEval's ids and arguments."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from neftune.finetune.instructions.checkers import follows

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "annotate_legacy_constraints.py"
_spec = importlib.util.spec_from_file_location("annotate_legacy_constraints", _SCRIPT)
legacy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(legacy)


@pytest.mark.parametrize(
    ("old", "text", "expected"),
    [
        # "at most 3 sentences" is IFEval's "less than 4": 3 sentences pass, 4 fail
        ({"kind": "sentence_count", "args": {"relation": "at most", "n": 3}}, "One. Two. Three.", True),
        (
            {"kind": "sentence_count", "args": {"relation": "at most", "n": 3}},
            "One. Two. Three. Four.",
            False,
        ),
        ({"kind": "word_count", "args": {"relation": "at least", "n": 3}}, "one two", False),
        ({"kind": "exclude_keyword", "args": {"keyword": "simple"}}, "It is simple.", False),
        ({"kind": "postscript", "args": {"marker": "P.S."}}, "Hi.\n\nP.S. bye", True),
        ({"kind": "sections", "args": {"n": 2, "marker": "Section"}}, "Section 1\na\nSection 2\nb", True),
        (
            {"kind": "letter_frequency", "args": {"letter": "k", "relation": "at least", "n": 2}},
            "kayak",
            True,
        ),
    ],
)
def test_old_constraints_mean_the_same_under_ifeval(old, text, expected) -> None:
    assert follows(legacy.to_ifeval(old), text) is expected


def test_a_kind_without_ifeval_definition_is_not_converted() -> None:
    assert legacy.to_ifeval({"kind": "starts_with", "args": {"phrase": "Good question."}}) is None


def test_annotate_refuses_other_prompts_and_stores_constraints(tmp_path) -> None:
    gen = tmp_path / "arms" / "a0-s0" / "eval" / "generations.json"
    gen.parent.mkdir(parents=True)
    gen.write_text(json.dumps({"ifeval_x": [{"prompt": "Say hi. Use no commas.", "output": "hi"}]}))
    old = {
        "ifeval_x": [{"prompt": "Say hi. Use no commas.", "constraints": [{"kind": "no_commas", "args": {}}]}]
    }
    assert legacy.annotate(tmp_path, old) == {"files": 1, "answers": 1, "without_ifeval_definition": 0}
    stored = json.loads(gen.read_text())["ifeval_x"][0]
    assert stored["constraints"] == [{"kind": "punctuation:no_comma", "args": {}}]
    other = {"ifeval_x": [{"prompt": "Something else.", "constraints": []}]}
    with pytest.raises(ValueError, match="not the legacy file's"):
        legacy.annotate(tmp_path, other)
