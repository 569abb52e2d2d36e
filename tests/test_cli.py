"""`neftune train` / `neftune eval` end to end on the tiny preset (random small Llama, real tokenizer)."""

from __future__ import annotations

import json

import pytest

from neftune.finetune.training import RUN_FILE

from conftest import cli

pytest.importorskip("trl")
pytestmark = pytest.mark.usefixtures("neftune_cache")
FAST = [
    "--model",
    "tiny",
    "--batch-size",
    "2",
    "--max-steps",
    "2",
    "--max-length",
    "256",
    "--logging-steps",
    "1",
]


def test_train_then_eval(tmp_path):
    out = tmp_path / "run"
    code, text = cli("train", *FAST, "--out", str(out), "--alpha", "5", "--schedule", "linear")
    assert code == 0, text
    run = json.loads((out / RUN_FILE).read_text())
    assert run["status"] == "complete" and run["metrics"]["global_step"] == 2
    assert run["config"]["alpha"] == 5.0 and run["config"]["schedule"] == "linear"
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert not (out / "checkpoints").exists()
    log = json.loads((out / "train_log.json").read_text())
    alphas = [row["neftune/alpha"] for row in log if "neftune/alpha" in row]
    assert alphas and alphas[0] < 5.0, "the linear schedule decays alpha and the log records it"

    code, text = cli("train", *FAST, "--out", str(out))
    assert code == 2 and "already holds a finished run" in text

    code, text = cli("eval", "--model", str(out), "--n-generate", "2", "--max-new-tokens", "4", "--json")
    assert code == 0, text
    metrics = json.loads((out / "eval" / "eval.json").read_text())
    for key in (
        "loss/train",
        "loss/eval_heldout_families",
        "accuracy/eval_heldout_templates",
        "ifeval/prompt_strict",
        "ifeval/instruction_loose/heldout_types",
        "length_chars/ifeval",
        "rouge_l_train",
        "length_chars",
        "length_tokens",
        "repetition_2gram",
    ):
        assert key in metrics, key
    assert metrics["loss/train"] > 0
    # How many records each metric was computed on (the table's "records" column).
    records = metrics["records"]
    assert set(records) == {k for k, v in metrics.items() if isinstance(v, float)}
    assert records["loss/train"] == 100 and records["loss/eval_heldout_families"] == 60, "all held out"
    assert records["accuracy/eval_heldout_templates"] == 2 and records["rouge_l_train"] == 2
    assert records["ifeval/prompt_strict/seen_types"] == 2 and records["ifeval/prompt_strict"] == 4
    assert records["length_chars"] == records["repetition_2gram"] == 6, "2 per held-out task split"
    export = json.loads((out / "eval" / "alpaca_eval.json").read_text())
    assert len(export) == 6 and set(export[0]) == {"instruction", "output", "generator"}
    per_prompt = json.loads((out / "eval" / "per_prompt.json").read_text())["splits"]
    assert len(per_prompt["ifeval_seen_types"]) == 2 and len(per_prompt["eval_seen_templates"]) == 2
    row = per_prompt["ifeval_heldout_types"][0]
    assert len(row["strict"]) == len(row["kinds"]) == len(row["loose"]) and row["length_chars"] >= 0


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n', "d.jsonl", "line 2"),
        ("", "empty.jsonl", "empty.jsonl"),
        ("{not json\n", "bad.jsonl", "line 1"),
    ],
)
def test_bad_data_files(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    code, text = cli("train", *FAST, "--out", str(tmp_path / "r"), "--data", str(path))
    assert code == 2, text
    assert message in text


def test_missing_data_file(tmp_path):
    code, text = cli("train", *FAST, "--out", str(tmp_path / "r"), "--data", str(tmp_path / "nope.jsonl"))
    assert code == 2 and "nope.jsonl" in text


def test_user_alpaca_and_chat_files_train(tmp_path):
    alpaca = tmp_path / "a.json"
    alpaca.write_text(
        json.dumps([{"instruction": f"Say {i}", "input": "", "output": str(i)} for i in range(6)])
    )
    chat = tmp_path / "c.jsonl"
    chat.write_text(
        "\n".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"Echo {i}"},
                        {"role": "assistant", "content": f"{i}"},
                    ]
                }
            )
            for i in range(6)
        )
    )
    for data in (alpaca, chat):
        out = tmp_path / f"run-{data.stem}"
        code, text = cli("train", *FAST, "--out", str(out), "--data", str(data), "--lora")
        assert code == 0, text
        assert (out / "adapter_model.safetensors").exists()


def test_help_lists_every_option():
    code, text = cli("train", "--help")
    assert code == 0
    for option in (
        "--alpha",
        "--lora",
        "--max-steps",
        "--resume",
        "--overwrite",
        "--padding-free",
        "default",
    ):
        assert option in text


def test_eval_defaults_to_the_data_the_run_was_trained_on(tmp_path):
    from neftune.finetune.evaluation import EvalConfig, eval_data_spec
    from neftune.finetune.io import write_json_atomic

    run = tmp_path / "run"
    write_json_atomic(
        run / RUN_FILE, {"status": "complete", "config": {"data": "mine.jsonl", "data_seed": 3}}
    )
    assert eval_data_spec(EvalConfig(model=str(run))) == ("mine.jsonl", 3)
    assert eval_data_spec(EvalConfig(model=str(run), data="builtin:quick", seed=0)) == ("builtin:quick", 0)
    assert eval_data_spec(EvalConfig(model="tiny")) == ("builtin:quick", 0), "no run folder: the defaults"
    (run / RUN_FILE).write_text("{broken")
    assert eval_data_spec(EvalConfig(model=str(run))) == ("builtin:quick", 0)
