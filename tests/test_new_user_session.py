"""A new user's session, end to end (issue 24's target): their own formats (TRL prompt/completion
JSONL, ShareGPT JSON, a question,answer CSV), a TRL-style YAML config in its own folder, the usual
mistakes, Ctrl-C and resume, multi-turn training and evaluation, ``compare`` on their CSV with LoRA
and from their LoRA run's config.yaml, and ``--overwrite`` with their own files at every depth of
run and experiment folders.

It finds nothing of theirs lost or changed, and every error is one line. Tiny model, a few steps.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("neftune_cache")]

SMALL = ["--max-steps", "2", "--batch-size", "2", "--max-length", "256"]
EVAL_SMALL = ["--n-generate", "1", "--max-new-tokens", "2", "--curve-every", "0", "--no-report"]
WORDS = ("cat", "dog", "sun", "moon", "tree", "lake", "rain", "snow", "wind", "leaf", "rock", "sand")


def _run(*args) -> tuple[int, list[str]]:
    """Run ``neftune ARGS`` in-process, as a terminal 200 columns wide; (exit code, non-empty lines)."""
    from typer.testing import CliRunner

    from neftune.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


def _one_line_error(args: list, message: str, folder: Path) -> None:
    """``neftune ARGS`` fails with exit 2 and exactly one line, ``Error: ...MESSAGE...``, and writes nothing."""
    before = _tree(folder)
    code, lines = _run(*args)
    assert code == 2 and len(lines) == 1, (args, lines)
    assert lines[0].startswith("Error: ") and message in lines[0], (args, lines[0])
    assert _tree(folder) == before, f"{args} changed the folder"


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def _their_files(root: Path) -> dict[Path, bytes]:
    """What the user brings: data in three formats, a config, notes. Returns path -> content."""
    (root / "data").mkdir()
    (root / "configs").mkdir()
    trl = [{"prompt": f"Spell {w} backwards.", "completion": w[::-1]} for w in WORDS]
    (root / "data" / "trl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in trl))
    chats = [
        {
            "conversations": [
                *([{"from": "system", "value": "Answer in one word."}] if i == 0 else []),
                {"from": "human", "value": f"Name something like a {w}."},
                {"from": "gpt", "value": f"A {w}."},
                {"from": "human", "value": "Thanks! Say it again briefly."},
                {"from": "gpt", "value": w},
            ]
        }
        for i, w in enumerate(WORDS)
    ]
    (root / "data" / "chats.json").write_text(json.dumps(chats, indent=1))
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["question", "answer"])
    writer.writerows([f"What is {w} in capitals?", w.upper()] for w in WORDS)
    (root / "data" / "qa.csv").write_text(table.getvalue())
    (root / "data" / "draft.csv").write_text("question,answer\nA?,a\nB?,\nC?,c\n")
    # A TRL script's YAML, kept beside other configs: its paths are relative to its own folder.
    (root / "configs" / "trl.yaml").write_text(
        "model_name_or_path: tiny\ndataset_name: ../data/trl.jsonl\nuse_peft: true\nlora_r: 4\n"
        "max_seq_length: 256\nneftune_noise_alpha: 5\nmax_steps: 4\nper_device_train_batch_size: 2\n"
        "save_steps: 2\nlearning_rate: 1.0e-3\noutput_dir: ../runs/trl-a5\n"
    )
    (root / "configs" / "packed.yaml").write_text("model_name_or_path: tiny\npacking: true\n")
    (root / "notes.md").write_text("# what I am trying\n")
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _interrupt_after_first_save(monkeypatch) -> None:
    """Ctrl-C right after the first checkpoint is written."""
    from transformers import Trainer

    original = Trainer._save_checkpoint

    def save_then_interrupt(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_interrupt)


def _put(path: Path, text: str, mine: dict[Path, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    mine[path] = path.read_bytes()


def test_a_new_users_session(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = _their_files(tmp_path)

    # 1. First tries, with the usual mistakes: one line each, nothing written.
    qa = ["train", "--model", "tiny", "--data", "data/qa.csv", *SMALL, "--out", "runs/qa"]
    _one_line_error(qa, "other names: --field-map instruction=question,output=answer", tmp_path)
    _one_line_error(
        [*qa, "--field-map", "instruction=questoin,output=answer"],
        "'questoin' is not a column of this data; did you mean instruction=question? (its columns: question, "
        "answer)",
        tmp_path,
    )
    _one_line_error(
        [*qa, "--data", "data/draft.csv", "--field-map", "instruction=question,output=answer"],
        "data/draft.csv: 1 of 3 records have an empty answer (field output): row 2",
        tmp_path,
    )
    qa += ["--field-map", "instruction=question,output=answer"]
    _one_line_error([*qa, "--alpha", "abc"], "Invalid value for '--alpha'", tmp_path)
    _one_line_error([*qa, "--lora-alpha", "abc"], "Invalid value for '--lora-alpha'", tmp_path)
    _one_line_error(
        [*qa, "--model", "someone/nope"], "--model someone/nope: this machine is offline", tmp_path
    )
    _one_line_error(
        ["train", "--config", "configs/packed.yaml"],
        "'packing' (TRL's; neftune trains padding-free",
        tmp_path,
    )
    _one_line_error(["compare", "--model", "tiny", "--alphas", "5"], "has no baseline: add 0", tmp_path)

    # 2. The TRL-style config, from the project folder: Ctrl-C after the first checkpoint, then the
    #    printed resume command.
    with monkeypatch.context() as m:
        _interrupt_after_first_save(m)
        code, lines = _run("train", "--config", "configs/trl.yaml")
    assert code == 130, lines
    assert any("neftune_noise_alpha is read as alpha" in line for line in lines), lines
    interrupted = [line for line in lines if line.startswith("Interrupted")]
    assert len(interrupted) == 1 and "saved: the checkpoint of step 2" in interrupted[0], lines
    resume = interrupted[0].partition("Resume: ")[2]
    assert resume == "neftune train --config runs/trl-a5/config.yaml --resume", resume
    code, lines = _run(*shlex.split(resume)[1:])
    assert code == 0 and any("Resuming from step 2" in line for line in lines), lines
    run = json.loads(Path("runs/trl-a5/neftune_run.json").read_text())
    assert run["status"] == "complete" and run["metrics"]["global_step"] == 4
    cfg = run["config"]
    assert (cfg["model"], cfg["data"], cfg["out"]) == ("tiny", "data/trl.jsonl", "runs/trl-a5")
    assert (cfg["lora"], cfg["lora_r"], cfg["max_length"], cfg["alpha"], cfg["lr"]) == (
        True,
        4,
        256,
        5.0,
        1e-3,
    )
    assert Path("runs/trl-a5/adapter_model.safetensors").exists()

    # 3. Multi-turn ShareGPT data: every assistant turn trained; the evaluation's table says how many
    #    records each metric used, and alpaca_eval.json holds the conversations.
    chat = ["train", "--model", "tiny", "--data", "data/chats.json", *SMALL, "--out", "runs/chat"]
    code, lines = _run(*chat)
    assert code == 0, lines
    code, lines = _run("eval", "--model", "runs/chat", "--n-generate", "2", "--max-new-tokens", "4")
    assert code == 0, lines
    header = next(line for line in lines if "metric" in line)
    assert "records" in header, lines
    loss_row = next(line for line in lines if "loss/eval " in line)
    assert loss_row.split("│")[-2].strip() == "1", "1 of the 12 conversations is held out"
    exported = json.loads(Path("runs/chat/eval/alpaca_eval.json").read_text())
    assert exported and all(e["instruction"].startswith(("User: ", "System: ")) for e in exported)
    assert all("\n\nAssistant: " in e["instruction"] for e in exported), exported

    # 4. Does NEFTune help on their CSV, with LoRA? One command (seed 0 alone: --seeds 0).
    compare = ["compare", "--model", "tiny", "--data", "data/qa.csv", "--field-map",
               "instruction=question,output=answer", "--lora", "--lora-r", "4", "--alphas", "0,5", "--seeds", "0",
               *SMALL, *EVAL_SMALL, "--out", "runs/cmp-qa"]  # fmt: skip
    code, lines = _run(*compare)
    assert code == 0, lines
    results = json.loads(Path("runs/cmp-qa/results.json").read_text())
    assert [a["status"] for a in results["arms"]] == ["complete", "complete"]
    assert results["config"]["seeds"] == [0] and results["config"]["train"]["lora_r"] == 4
    assert results["config"]["train"]["field_map"] == "instruction=question,output=answer"
    arms = sorted(Path("runs/cmp-qa/arms").iterdir())
    assert all((arm / "adapter_model.safetensors").exists() for arm in arms)

    # 5. ... and their LoRA run repeated as a comparison, from its config.yaml.
    code, lines = _run("compare", "--config", "runs/trl-a5/config.yaml", "--seeds", "0", *EVAL_SMALL,
                       "--out", "runs/cmp-trl")  # fmt: skip
    assert code == 0, lines
    assert any("is a run's: its alpha 5 is compared with the baseline (alphas 0,5)" in line for line in lines)
    train = json.loads(Path("runs/cmp-trl/results.json").read_text())["config"]["train"]
    assert (train["lora"], train["lora_r"], train["lr"], train["max_steps"]) == (True, 4, 1e-3, 4)
    assert json.loads(Path("runs/cmp-trl/results.json").read_text())["config"]["alphas"] == [0.0, 5.0]

    # 6. Their own files inside the run and experiment folders, at every depth; then --overwrite.
    for path in (
        "runs/chat/my_notes.md", "runs/chat/eval/my_analysis.md", "runs/chat/plots/deep/figure.txt",
        "runs/cmp-qa/summary-for-my-boss.md", "runs/cmp-qa/arms/notes.md",
        f"runs/cmp-qa/arms/{arms[0].name}/why.md", f"runs/cmp-qa/arms/{arms[1].name}/eval/reading.md",
    ):  # fmt: skip
        _put(tmp_path / path, f"written by the user: {path}\n", mine)
    code, lines = _run(*chat, "--alpha", "10", "--overwrite")
    assert code == 0, lines
    kept = [line for line in lines if "Kept (--overwrite removes only what neftune wrote)" in line]
    assert len(kept) == 1 and "eval/my_analysis.md" in kept[0], lines
    assert json.loads(Path("runs/chat/neftune_run.json").read_text())["config"]["alpha"] == 10.0
    code, lines = _run(*compare, "--max-steps", "1", "--overwrite")
    assert code == 0, lines
    kept = [line for line in lines if "Kept (--overwrite removes only what neftune wrote)" in line]
    assert len(kept) == 1 and f"arms/{arms[1].name}/eval/reading.md" in kept[0], lines
    assert json.loads((arms[0] / "neftune_run.json").read_text())["config"]["max_steps"] == 1

    # Nothing of theirs lost or changed.
    lost = [str(p.relative_to(tmp_path)) for p, content in mine.items() if not p.is_file()]
    changed = [
        str(p.relative_to(tmp_path))
        for p, content in mine.items()
        if p.is_file() and p.read_bytes() != content
    ]
    assert not lost and not changed, (lost, changed)
