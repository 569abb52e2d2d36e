"""User data loading (Alpaca / chat / datasets folders / hub ids) and atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from neftune.finetune.data import (
    DataError,
    Record,
    SplitConfig,
    build_splits,
    check_answer,
    examples_to_records,
    load_records,
    records_to_examples,
)
from neftune.finetune.io import read_json_object, write_json_atomic, write_jsonl_atomic

ALPACA = [
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"instruction": "Say hello.", "output": "Hello!"},
    {"instruction": "Be brief.", "input": "", "output": "OK", "system": "You are terse.", "id": 7},
]
CHAT = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    {
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "1+1?"},
            {"role": "assistant", "content": "2"},
            {"role": "user", "content": "And 2+2?"},
            {"role": "assistant", "content": "4"},
        ],
        "source": "hand",
    },
]


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _check_alpaca(records: list[Record]) -> None:
    assert len(records) == 3
    first, second, third = records
    assert first.messages == [
        {"role": "user", "content": "Add the numbers.\n\n2 and 3"},
        {"role": "assistant", "content": "5"},
    ]
    assert first.prompt_messages == [{"role": "user", "content": "Add the numbers.\n\n2 and 3"}]
    assert first.response == "5"
    assert second.messages[0]["content"] == "Say hello."
    assert third.messages[0] == {"role": "system", "content": "You are terse."}
    assert third.response == "OK"
    assert third.meta["id"] == 7


def _check_chat(records: list[Record]) -> None:
    assert len(records) == 2
    assert records[0].response == "Hello"
    assert records[1].messages[0]["role"] == "system"
    assert [m["role"] for m in records[1].prompt_messages] == ["system", "user", "assistant", "user"]
    assert records[1].response == "4"
    assert records[1].meta == {"source": "hand"}


# --------------------------------------------------------------------------- good inputs


def test_alpaca_json(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(ALPACA), encoding="utf-8")
    _check_alpaca(load_records(path))
    _check_alpaca(load_records(str(path)))


def test_alpaca_jsonl_with_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ALPACA[:2]) + "\n\n" + json.dumps(ALPACA[2]) + "\n")
    _check_alpaca(load_records(path))


def test_chat_jsonl_and_json(tmp_path: Path) -> None:
    _check_chat(load_records(_write_jsonl(tmp_path / "chat.jsonl", CHAT)))
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(CHAT), encoding="utf-8")
    _check_chat(load_records(path))


def test_mixed_formats_detected_per_record(tmp_path: Path) -> None:
    records = load_records(_write_jsonl(tmp_path / "mixed.jsonl", [ALPACA[0], CHAT[0]]))
    assert [r.response for r in records] == ["5", "Hello"]


def test_jsonl_content_with_json_suffix(tmp_path: Path) -> None:
    _check_alpaca(load_records(_write_jsonl(tmp_path / "actually_lines.json", ALPACA)))


def test_saved_dataset_folder(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ALPACA[:2])
    ds.save_to_disk(str(tmp_path / "single"))
    records = load_records(tmp_path / "single")
    assert [r.response for r in records] == ["5", "Hello!"]

    dd = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(CHAT[:1]), "test": datasets.Dataset.from_list(ALPACA[:1])}
    )
    dd.save_to_disk(str(tmp_path / "dict"))
    assert load_records(tmp_path / "dict")[0].response == "Hello"
    assert load_records(tmp_path / "dict", split="test")[0].response == "5"
    with pytest.raises(DataError, match=r"split 'validation' not found; available: train, test"):
        load_records(tmp_path / "dict", split="validation")


def _hub_answers(monkeypatch: pytest.MonkeyPatch, state: str) -> None:
    """The hub's answer about any id, without a network (see test_hub_status_* for the real probe)."""
    from neftune.finetune import hub

    monkeypatch.setattr(hub, "hub_status", lambda repo_id, repo_type="model": hub.HubStatus(state))


def test_hub_dataset_id_uses_load_dataset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name: str, split: str) -> Any:
        calls.append((name, split))
        return datasets.Dataset.from_list(ALPACA[:1])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    _hub_answers(monkeypatch, "found")
    monkeypatch.chdir(tmp_path)
    records = load_records("someone/tiny-set", split="validation")
    assert calls == [("someone/tiny-set", "validation")]
    assert records[0].response == "5"


def test_hub_failure_becomes_data_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")

    def failing(name: str, split: str) -> Any:
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", failing)
    _hub_answers(monkeypatch, "found")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"someone/missing.*no network access.*ConnectionError: offline"):
        load_records("someone/missing")


def test_missing_local_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        load_records(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="no such file or folder"):
        load_records("definitely_not_here.jsonl")


# --------------------------------------------------------------------------- malformed inputs


@pytest.mark.parametrize(
    ("bad_line", "pattern"),
    [
        ('{"instruction": "x", "output": "y"', r"line 2: invalid JSON"),
        ('{"instruction": "x"}', r"line 2: field 'output' is missing \(Alpaca records need"),
        ('{"output": "y"}', r"line 2: field 'instruction' is missing"),
        ('{"instruction": "x", "output": 5}', r"line 2: field 'output' must be a string, got int"),
        ('{"instruction": "x", "input": ["a"], "output": "y"}', r"line 2: field 'input' must be a string"),
        ('{"instruction": "  ", "output": "y"}', r"line 2: field 'instruction' is empty"),
        ('{"messages": []}', r"line 2: field 'messages' is empty"),
        ('{"messages": "hi"}', r"line 2: field 'messages' must be a list"),
        (
            '{"messages": [{"role": "user", "content": "hi"}]}',
            r"line 2: field 'messages\[0\].role': the last message must be from the assistant",
        ),
        (
            '{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}',
            r"line 2: field 'messages\[1\].role' has unknown role 'bot'",
        ),
        (
            '{"messages": [{"role": "assistant", "content": "a"}]}',
            r"line 2: field 'messages\[0\].role' is 'assistant' but 'user' was expected",
        ),
        (
            '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant"}]}',
            r"line 2: field 'messages\[1\].content' is missing",
        ),
        (
            '{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "b"}]}',
            r"line 2: field 'messages\[0\].content' must be a string",
        ),
        ('{"messages": [{"role": "system", "content": "s"}]}', r"line 2: field 'messages' has only a system"),
        (
            '{"question": "x", "answer": "y"}',
            r"line 2: unrecognised record \(fields: 'question', 'answer'\)",
        ),
        ("[1, 2]", r"line 2: expected a JSON object, got list"),
    ],
)
def test_malformed_jsonl_names_file_line_and_field(tmp_path: Path, bad_line: str, pattern: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(ALPACA[0]) + "\n" + bad_line + "\n" + json.dumps(ALPACA[1]) + "\n")
    with pytest.raises(DataError, match=pattern) as info:
        load_records(path)
    assert str(info.value).startswith(f"{path} line 2: ")
    assert info.value.source == str(path)
    assert info.value.where == "line 2"


def test_error_message_matches_documented_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lines = [json.dumps(ALPACA[0])] * 6 + ['{"instruction": "no answer"}']
    Path("data.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        load_records("data.jsonl")
    assert str(info.value) == (
        "data.jsonl line 7: field 'output' is missing (Alpaca records need 'instruction' and 'output')"
    )
    assert info.value.field == "output"
    assert isinstance(info.value, ValueError)


def test_malformed_json_names_item_and_field(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps([ALPACA[0], {"instruction": "x", "output": None}]))
    with pytest.raises(DataError, match=r"data\.json\[1\]: field 'output' is missing") as info:
        load_records(path)
    assert info.value.field == "output"

    path.write_text(json.dumps([ALPACA[0], CHAT[0], {"messages": [{"role": "user", "content": "?"}]}]))
    with pytest.raises(DataError, match=r"data\.json\[2\]: field 'messages\[0\]\.role'"):
        load_records(path)


def test_invalid_json_file_names_line(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n')
    with pytest.raises(DataError, match=r"data\.json line 3: invalid JSON \(Expecting ',' delimiter"):
        load_records(path)


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("empty.jsonl", "", r"empty\.jsonl: no records found \(the file is empty\)"),
        ("blank.jsonl", "\n  \n\n", r"blank\.jsonl: no records found"),
        ("empty.json", "[]", r"empty\.json: no records found"),
        ("obj.json", '{"rows": []}', r"obj\.json: expected a JSON list of records, got dict"),
        ("data.xml", "<a/>", r"data\.xml: unsupported file type '\.xml'"),
    ],
)
def test_empty_and_unsupported_files(tmp_path: Path, name: str, content: str, pattern: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=pattern):
        load_records(path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"instruction": "caf\xe9", "output": "x"}\n')
    with pytest.raises(DataError, match=r"latin\.jsonl: not UTF-8"):
        load_records(path)


def test_folder_that_is_not_a_saved_dataset(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DataError, match=r"not a dataset saved with datasets\.save_to_disk"):
        load_records(tmp_path / "stuff")


def test_bad_row_in_saved_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(
        [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": None}]
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(DataError, match=r"ds row 1: field 'output' is missing"):
        load_records(tmp_path / "ds")


# --------------------------------------------------------------------------- generated tasks <-> records


def test_examples_round_trip_through_records_and_files(tmp_path: Path) -> None:
    examples = build_splits(SplitConfig(n_train=40, n_eval=10, seed=1))["eval_heldout_families"]
    records = examples_to_records(examples)
    assert [r.messages for r in records] == [e.to_messages() for e in examples]
    assert all(
        r.meta["family"] == e.family and r.meta["template"] == e.template for r, e in zip(records, examples)
    )
    assert records_to_examples(records) == examples

    path = write_jsonl_atomic(
        tmp_path / "eval.jsonl",
        [{**e.to_alpaca(), "family": e.family, "template": e.template} for e in examples],
    )
    loaded = records_to_examples(load_records(path))
    assert loaded == examples
    assert all(check_answer(e, e.output) for e in loaded)


def test_records_to_examples_needs_a_family() -> None:
    rec = Record(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    with pytest.raises(DataError, match=r"record 0: meta 'family' is None"):
        records_to_examples([rec])


# --------------------------------------------------------------------------- atomic writes


def test_write_json_atomic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "out.json"
    assert write_json_atomic(path, {"a": [1, 2], "é": "ü"}) == path
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": [1, 2], "é": "ü"}
    assert "ü" in path.read_text(encoding="utf-8")
    write_json_atomic(path, [3])
    assert json.loads(path.read_text()) == [3]
    assert os.listdir(path.parent) == ["out.json"]


def test_write_json_atomic_failure_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    write_json_atomic(path, {"ok": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert os.listdir(tmp_path) == ["out.json"]


def test_read_json_object(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "ok.json", {"status": "complete", "é": 1})
    assert read_json_object(path) == {"status": "complete", "é": 1}
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text('{"status": "compl')
    (tmp_path / "latin1.json").write_bytes(b'{"x": "\xe9"}')
    (tmp_path / "folder.json").mkdir()
    for name in ("missing.json", "list.json", "broken.json", "latin1.json", "folder.json"):
        assert read_json_object(tmp_path / name) is None, name


def test_write_jsonl_atomic(tmp_path: Path) -> None:
    path = write_jsonl_atomic(tmp_path / "rows.jsonl", ({"i": i} for i in range(3)))
    assert path.read_text().splitlines() == ['{"i": 0}', '{"i": 1}', '{"i": 2}']


def test_write_text_atomic_cleans_up_when_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neftune.finetune import io as nio

    path = tmp_path / "out.json"
    write_json_atomic(path, {"old": 1})

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(nio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_json_atomic(path, {"new": 2})
    assert json.loads(path.read_text()) == {"old": 1}
    assert os.listdir(tmp_path) == ["out.json"]


# ----------------------------------------------------------------------------- more layouts (issue 13.5)

EXPECTED = [
    [{"role": "user", "content": "Add 2 and 3"}, {"role": "assistant", "content": "5"}],
    [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris"},
    ],
]


def test_trl_prompt_completion_standard_and_conversational(tmp_path: Path) -> None:
    rows = [
        {"prompt": "Add 2 and 3", "completion": "5"},
        {
            "prompt": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "Capital of France?"},
            ],
            "completion": [{"role": "assistant", "content": "Paris"}],
            "id": 9,
        },
    ]
    path = tmp_path / "pc.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    records = load_records(path)
    assert [r.messages for r in records] == EXPECTED
    assert records[1].meta == {"id": 9}


def test_sharegpt_conversations(tmp_path: Path) -> None:
    rows = [
        {"conversations": [{"from": "human", "value": "Add 2 and 3"}, {"from": "gpt", "value": "5"}]},
        {
            "conversations": [
                {"from": "system", "value": "Be terse."},
                {"from": "human", "value": "Capital of France?"},
                {"from": "gpt", "value": "Paris"},
            ]
        },
    ]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(rows))
    assert [r.messages for r in load_records(path)] == EXPECTED


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        ({"conversations": [{"from": "robot", "value": "x"}]}, r"conversations\[0\]\.from' is 'robot'"),
        ({"conversations": [{"from": "human", "value": "x"}]}, "the last message must be from the assistant"),
        ({"conversations": "hi"}, "'conversations' must be a list"),
        ({"prompt": "a", "completion": ["b"]}, "must both be strings .* or both lists"),
        ({"prompt": [{"role": "user", "content": "a"}], "completion": []}, "one assistant message, got 0"),
        ({"prompt": " ", "completion": "b"}, "field 'prompt' is empty"),
    ],
)
def test_bad_prompt_completion_and_sharegpt_records(tmp_path: Path, row: dict, pattern: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=rf"bad.jsonl line 1: .*{pattern}"):
        load_records(path)


def test_csv_tsv_and_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    header, rows = ["instruction", "input", "output"], [["Add", "2 and 3", "5"], ["Say hi, please", "", "Hi"]]
    (tmp_path / "d.csv").write_text(
        'instruction,input,output\nAdd,2 and 3,5\n"Say hi, please",,Hi\n', encoding="utf-8"
    )
    (tmp_path / "d.tsv").write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    pq.write_table(pa.table({k: [r[i] for r in rows] for i, k in enumerate(header)}), tmp_path / "d.parquet")
    for name in ("d.csv", "d.tsv", "d.parquet"):
        records = load_records(tmp_path / name)
        assert [r.messages[0]["content"] for r in records] == ["Add\n\n2 and 3", "Say hi, please"], name
        assert [r.response for r in records] == ["5", "Hi"], name

    (tmp_path / "bad.csv").write_text("instruction,answer\nAdd,5\n")
    with pytest.raises(DataError, match=r"bad.csv row 1: field 'output' is missing"):
        load_records(tmp_path / "bad.csv")
    (tmp_path / "other.csv").write_text("question,answer\nAdd,5\n")
    with pytest.raises(DataError, match=r"other.csv row 1: unrecognised record .*--field-map"):
        load_records(tmp_path / "other.csv")


def test_field_map(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_text("question,answer,source\nCapital of France?,Paris,atlas\n2+2?,4,math\n")
    records = load_records(path, field_map="instruction=question,output=answer")
    assert records[0].messages == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris"},
    ]
    assert records[1].meta["source"] == "math"
    with pytest.raises(DataError, match="NAME=COLUMN pairs"):
        load_records(path, field_map="instruction")


def test_train_with_a_csv_and_a_field_map(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    from conftest import cli

    path = tmp_path / "qa.csv"
    path.write_text("question,answer\n" + "".join(f"Say {i},{i}\n" for i in range(6)))
    out = tmp_path / "run"
    common = [
        "--model",
        "tiny",
        "--data",
        path,
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--max-length",
        "256",
    ]
    code, text = cli("train", *common, "--out", out)
    assert code == 2 and "unrecognised record" in text and "--field-map" in text, text
    code, text = cli("train", *common, "--out", out, "--field-map", "instruction=question,output=answer")
    assert code == 0, text
    code, text = cli("eval", "--model", out, "--n-generate", "0")
    assert code == 0, text  # the run's field map applies to its own data


# --------------------------------------------------------------------------- issue 24: messages that name the problem


def test_field_map_typo_lists_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nCapital of France?,Paris\n2+2?,4\n")
    with pytest.raises(DataError) as info:
        load_records(path, field_map="instruction=questoin,output=answer")
    assert str(info.value) == (
        f"{path}: --field-map instruction=questoin: 'questoin' is not a column of this data; did you mean "
        "instruction=question? (its columns: question, answer)"
    )
    jsonl = _write_jsonl(tmp_path / "qa.jsonl", [{"q": "a", "a": "b"}, {"q": "c", "a": "d", "ctx": "e"}])
    with pytest.raises(DataError, match=r"'context' is not a column .*\(its columns: q, a, ctx\)"):
        load_records(jsonl, field_map="instruction=q,output=a,input=context")
    # A column present in some records only (an optional field) is not a typo.
    assert (
        load_records(jsonl, field_map="instruction=q,output=a,input=ctx")[1].messages[0]["content"]
        == "c\n\ne"
    )


@pytest.mark.parametrize(
    ("field_map", "pattern"),
    [
        (
            "question=instruction",
            r"'question' is not a field neftune reads \(reversed\? instruction=question\)",
        ),
        ("answer=output", r"'answer' is not a field neftune reads \(reversed\? output=answer\)"),
        ("instrution=q", r"'instrution' is not a field neftune reads; NAME is one of instruction, input"),
    ],
)
def test_field_map_names_a_field_neftune_reads(tmp_path: Path, field_map: str, pattern: str) -> None:
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\na,b\n")
    with pytest.raises(DataError, match=pattern):
        load_records(path, field_map=field_map)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"prompt": "Hi"},
            "field 'completion' is missing: TRL prompt/completion records need both 'prompt' and 'completion' "
            "(this one has 'prompt')",
        ),
        (
            {"prompt": "Hi", "response": "Hello"},
            "field 'completion' is missing: TRL prompt/completion records need both 'prompt' and 'completion' "
            "(this one has 'prompt'); if your answers are in 'response': --field-map completion=response",
        ),
        (
            {"completion": "Hello"},
            "field 'prompt' is missing: TRL prompt/completion records need both 'prompt' and 'completion' "
            "(this one has 'completion')",
        ),
        (
            {"question": "Hi", "answer": "Hello"},
            "unrecognised record (fields: 'question', 'answer'); expected 'messages' (chat), 'instruction' and "
            "'output' (Alpaca), 'prompt' and 'completion' (TRL) or 'conversations' (ShareGPT); other names: "
            "--field-map instruction=question,output=answer",
        ),
    ],
)
def test_incomplete_records_say_what_is_missing(tmp_path: Path, row: dict, message: str) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [row])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == f"{path} line 1: {message}"


def test_empty_answers_are_refused_all_of_them_named(tmp_path: Path) -> None:
    rows = "".join(f"Question {i},{'' if i in (2, 5) else 'Answer'}\n" for i in range(7))
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\n" + rows + "Last,   \n")
    with pytest.raises(DataError) as info:
        load_records(path, field_map="instruction=question,output=answer")
    assert str(info.value) == (
        f"{path}: 3 of 8 records have an empty answer (field output): row 3, row 6, row 8; fill them in or "
        "remove them (neftune does not train on empty answers)"
    )
    chat = [
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": " "}]},
        {
            "conversations": [
                {"from": "human", "value": "a"},
                {"from": "gpt", "value": ""},
                {"from": "human", "value": "b"},
                {"from": "gpt", "value": "c"},
            ]
        },
        {"prompt": "a", "completion": ""},
        {"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": ""}]},
        {"instruction": "a", "output": "b"},
    ]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(chat))
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == (
        f"{path}: 4 of 5 records have an empty answer (field completion, completion[0].content, "
        "conversations[1].value, messages[1].content): [0], [1], [2], [3]; fill them in or remove them "
        "(neftune does not train on empty answers)"
    )


def test_hub_status_one_request_classified(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id is checked with one request: offline, no such id, or found (no download retries)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    from neftune.finetune import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []

    def answer(outcome):
        def info(self, repo_id, timeout=None):
            calls.append((repo_id, timeout))
            if outcome is not None:
                raise outcome
            return {"id": repo_id}

        return info

    class ConnectError(Exception):  # what httpx raises when DNS fails
        pass

    class NotFound(RepositoryNotFoundError):  # the hub's 404 (its real constructor wants a response)
        def __init__(self) -> None:
            Exception.__init__(self, "404 Client Error: Repository Not Found")

    cases = [
        (ConnectError("[Errno -2] Name or service not known"), "offline"),
        (OSError("Network is unreachable"), "offline"),
        (NotFound(), "missing"),
        (None, "found"),
    ]
    for outcome, state in cases:
        monkeypatch.setattr(HfApi, "model_info", answer(outcome))
        assert hub.hub_status("someone/nope").state == state, outcome
    assert len(calls) == len(cases) and calls[0] == ("someone/nope", hub.TIMEOUT)
    problem = hub.hub_problem(
        hub.HubStatus("missing", "no such repository on the hub"), "someone/nope", "--model"
    )
    assert problem == "--model someone/nope: the id looks wrong: no such repository on the hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(HfApi, "model_info", answer(AssertionError("no request when offline")))
    assert hub.hub_status("someone/nope") == hub.HubStatus("offline", "HF_HUB_OFFLINE is set")


# --------------------------------------------------------------------------- multi-turn records

MULTI_TURN = [
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Thanks! Say it again briefly."},
    {"role": "assistant", "content": "Blue"},
]


@pytest.fixture
def tiny_tokenizer(neftune_cache):
    transformers = pytest.importorskip("transformers")
    from neftune.finetune.models import resolve_model

    return transformers.AutoTokenizer.from_pretrained(resolve_model("tiny"))


def _spans(ids: list[int], mask: list[int], tokenizer) -> list[str]:
    """The decoded runs of tokens whose mask is 1."""
    spans, current = [], []
    for token, bit in zip(ids, mask):
        if bit:
            current.append(token)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    return [*spans, tokenizer.decode(current)] if current else spans


def test_every_assistant_turn_is_trained_by_default(tiny_tokenizer) -> None:
    from neftune.finetune.data.turns import assistant_mask

    ids, mask = assistant_mask(tiny_tokenizer, MULTI_TURN)
    assert _spans(ids, mask, tiny_tokenizer) == ["Blue.<|im_end|>\n", "Blue<|im_end|>\n"]
    ids_last, mask_last = assistant_mask(tiny_tokenizer, MULTI_TURN, "last")
    assert ids_last == ids and _spans(ids, mask_last, tiny_tokenizer) == ["Blue<|im_end|>\n"]
    with pytest.raises(ValueError, match="turns must be one of all, last"):
        assistant_mask(tiny_tokenizer, MULTI_TURN, "first")


def test_a_template_that_rewrites_earlier_turns_is_refused(tiny_tokenizer) -> None:
    """A template that renders an earlier answer differently later (as reasoning templates drop their
    thoughts) cannot say which tokens were that answer: refused, with the way out."""
    from neftune.finetune.data.turns import assistant_mask

    tiny_tokenizer.chat_template = (
        "{% for m in messages %}{% if m.role == 'assistant' and not loop.last %}<|im_start|>assistant\n..."
        "<|im_end|>\n{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(DataError, match=r"renders assistant turn 1 differently .*--assistant-turns last"):
        assistant_mask(tiny_tokenizer, MULTI_TURN)
    ids, mask = assistant_mask(tiny_tokenizer, MULTI_TURN, "last")
    assert _spans(ids, mask, tiny_tokenizer) == ["Blue<|im_end|>\n"]


def test_single_turn_rows_are_what_trl_makes_of_prompt_completion(tiny_tokenizer, tmp_path) -> None:
    """Tokenizing ourselves changes nothing for single-turn data: the same input ids and labels as
    TRL's own prompt/completion path (which neftune used before), through SFTTrainer itself."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from neftune.finetune.data.turns import training_rows
    from neftune.finetune.models import resolve_model

    records = load_records(_write_jsonl(tmp_path / "d.jsonl", [*ALPACA, *CHAT[:1]]))
    model = AutoModelForCausalLM.from_pretrained(resolve_model("tiny"))
    args = SFTConfig(
        output_dir=str(tmp_path / "out"), max_length=None, padding_free=True, completion_only_loss=True,
        use_cpu=True, report_to="none", dataset_num_proc=None,
    )  # fmt: skip
    pairs = [{"prompt": r.prompt_messages, "completion": [r.messages[-1]]} for r in records]

    def prepared(rows):
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tiny_tokenizer
        )
        return trainer.train_dataset["input_ids"], trainer.train_dataset["labels"]

    theirs, ours = prepared(pairs), prepared(training_rows(records, tiny_tokenizer))
    assert ours == theirs
    assert all(any(label != -100 for label in labels) for labels in ours[1])


def test_alpaca_eval_export_holds_the_conversation() -> None:
    from neftune.finetune.data.turns import conversation_text

    assert conversation_text(MULTI_TURN) == (
        "User: Name a colour.\n\nAssistant: Blue.\n\nUser: Thanks! Say it again briefly."
    )
    system = [{"role": "system", "content": "Be terse."}, *MULTI_TURN]
    assert conversation_text(system).startswith("System: Be terse.\n\nUser: Name a colour.")
    assert conversation_text(CHAT[0]["messages"]) == "Hi", "a single turn stays the plain instruction"
    assert conversation_text([{"role": "system", "content": "s"}, *CHAT[0]["messages"]]) == "Hi"
