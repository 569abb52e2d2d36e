"""``--overwrite`` removes only the files neftune wrote, at every depth of run and experiment folders.

The reported case: ``RUN/eval/my_analysis.md`` was deleted by ``neftune train --out RUN --overwrite``
because ``eval*/`` folders went whole. Now a run records every file it writes (``written``), an
evaluation folder contributes only the files an evaluation writes, an experiment its own files, its
arms' run files and its report's files; anything else stays, and the command names it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from neftune.finetune.io import write_json_atomic
from neftune.finetune.outdirs import EVAL_FILES, files_under, remaining, remove_files
from neftune.finetune.training import RUN_FILE, clear_run, run_files

from conftest import cli

pytestmark = pytest.mark.usefixtures("neftune_cache")
FAST = ["--model", "tiny", "--batch-size", "2", "--max-steps", "2", "--max-length", "256"]


def _alpaca(path: Path, n: int = 8) -> Path:
    path.write_text(
        json.dumps([{"instruction": f"Say {i}", "input": "", "output": f"{i}"} for i in range(n)])
    )
    return path


def _plant(folder: Path, paths: list[str]) -> dict[str, bytes]:
    """Write a user file at each relative path; returns {path: content} to compare with later."""
    planted = {}
    for rel in paths:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        content = f"the user's own {rel}\n".encode()
        path.write_bytes(content)
        planted[rel] = content
    return planted


def _assert_intact(folder: Path, planted: dict[str, bytes]) -> None:
    for rel, content in planted.items():
        assert (folder / rel).read_bytes() == content, f"{rel} was lost or changed"


# --------------------------------------------------------------------------- the file operations


def test_files_under_lists_every_depth_and_never_follows_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("x")
    folder = tmp_path / "f"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "top.txt").write_text("1")
    (folder / "a" / "b" / "deep.txt").write_text("2")
    (folder / "a" / "link").symlink_to(outside, target_is_directory=True)
    assert files_under(folder) == {"top.txt", "a/b/deep.txt", "a/link"}
    assert files_under(folder, ["a"]) == {"a/b/deep.txt", "a/link"}
    remove_files(folder, ["a/link", "a/b/deep.txt"])
    assert (outside / "precious.txt").exists(), "a link is removed, never its target"
    assert not (folder / "a").exists(), "folders left empty by the removal go"


def test_remove_files_keeps_folders_that_hold_anything_unlisted(tmp_path):
    folder = tmp_path / "f"
    planted = _plant(folder, ["eval/mine.md"])
    _plant(folder, ["eval/eval.json", "eval/generations.json"])
    (folder / "eval" / "empty_dir_of_mine").mkdir()
    remove_files(folder, ["eval/eval.json", "eval/generations.json"])
    _assert_intact(folder, planted)
    assert (folder / "eval" / "empty_dir_of_mine").is_dir()
    assert remaining(folder, ["eval"]) == ["eval/mine.md"]


def test_remove_files_never_touches_a_protected_path(tmp_path):
    folder = tmp_path / "f"
    _plant(folder, ["data/train.jsonl"])
    remove_files(folder, ["data/train.jsonl"], protect=[folder / "data"])
    assert (folder / "data" / "train.jsonl").exists()


# --------------------------------------------------------------------------- run folders


def test_overwrite_keeps_user_files_at_every_depth_of_a_run(tmp_path):
    """Train, evaluate, add the user's files everywhere, then train again with --overwrite."""
    out = tmp_path / "run"
    code, text = cli("train", *FAST, "--out", out, "--alpha", "5")
    assert code == 0, text
    code, text = cli(
        "eval", "--model", out, "--n-generate", "1", "--max-new-tokens", "2", "--n-train-loss", "2"
    )
    assert code == 0, text
    assert (out / "eval" / "eval.json").is_file()
    planted = _plant(
        out,
        [
            "notes.md",
            "eval/my_analysis.md",
            "eval/plots/figure.txt",
            "checkpoints/kept.txt",
            "deep/er/still.txt",
        ],
    )
    code, text = cli("train", *FAST, "--out", out, "--alpha", "3", "--overwrite")
    assert code == 0, text
    _assert_intact(out, planted)
    for rel in ("eval/my_analysis.md", "eval/plots/figure.txt", "checkpoints/kept.txt"):
        assert rel in text, f"the command names what it kept ({rel}): {text}"
    assert not (out / "eval" / "eval.json").exists(), "the previous run's evaluation went with it"
    run = json.loads((out / RUN_FILE).read_text())
    assert run["status"] == "complete" and run["config"]["alpha"] == 3.0
    assert "model.safetensors" in run["written"] and "eval/my_analysis.md" not in run["written"]
    assert not set(planted) & set(run["written"]), "the user's files are not recorded as the run's"

    # Once more: still only the run's own files go, and what the user added since stays.
    planted |= _plant(out, ["eval/later.md"])
    code, text = cli("train", *FAST, "--out", out, "--overwrite")
    assert code == 0, text
    _assert_intact(out, planted)


def _fake_run(out: Path, status: str, written: list[str], **extra) -> None:
    for rel in written:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(b"neftune wrote this")
    write_json_atomic(
        out / RUN_FILE, {"status": status, "config": {}, "preexisting": [], "written": written, **extra}
    )


def test_an_interrupted_run_keeps_files_added_inside_its_checkpoints(tmp_path):
    out = tmp_path / "run"
    ckpt = "checkpoints/checkpoint-2"
    _fake_run(
        out,
        "interrupted",
        [RUN_FILE, "config.yaml", f"{ckpt}/model.safetensors", f"{ckpt}/trainer_state.json"],
    )
    (out / ckpt / "trainer_state.json").write_text('{"global_step": 2}')
    # Killed while saving the next checkpoint: half-written, not yet recorded. It is the run's.
    (out / "checkpoints" / "checkpoint-3").mkdir()
    (out / "checkpoints" / "checkpoint-3" / "optimizer.pt").write_bytes(b"half")
    planted = _plant(out, [f"{ckpt}/README_mine.md", "checkpoints/notes.txt"])
    kept = clear_run(out)
    _assert_intact(out, planted)
    assert sorted(kept) == sorted(planted)
    assert not (out / "checkpoints" / "checkpoint-3").exists()
    assert not (out / ckpt / "model.safetensors").exists() and not (out / RUN_FILE).exists()


def test_a_run_of_an_older_neftune_keeps_files_newer_than_its_run_file(tmp_path):
    """Runs written before ``written`` existed: inside their folders, files older than the run file are theirs."""
    out = tmp_path / "run"
    (out / "tensorboard").mkdir(parents=True)
    (out / "tensorboard" / "events.out").write_bytes(b"tb")
    (out / "model.safetensors").write_bytes(b"w")
    write_json_atomic(
        out / RUN_FILE,
        {"status": "complete", "config": {}, "files": [RUN_FILE, "model.safetensors", "tensorboard"]},
    )
    stamp = (out / RUN_FILE).stat().st_mtime_ns
    os.utime(out / "tensorboard" / "events.out", ns=(stamp - 10**9, stamp - 10**9))
    planted = _plant(out, ["tensorboard/my_notes.md"])
    os.utime(out / "tensorboard" / "my_notes.md", ns=(stamp + 10**9, stamp + 10**9))
    assert run_files(out) == {RUN_FILE, "model.safetensors", "tensorboard/events.out"}
    assert clear_run(out) == ["tensorboard/my_notes.md"]
    _assert_intact(out, planted)


def test_every_file_an_evaluation_writes_is_listed_as_an_evaluation_file(tmp_path):
    """EVAL_FILES is what --overwrite may remove in eval*/: a new output file must be added to it."""
    out = tmp_path / "ev"
    code, text = cli(
        "eval",
        "--model",
        "tiny",
        "--n-generate",
        "1",
        "--max-new-tokens",
        "2",
        "--n-train-loss",
        "2",
        "--out",
        out,
    )
    assert code == 0, text
    assert files_under(out) <= set(EVAL_FILES), files_under(out) - set(EVAL_FILES)


# --------------------------------------------------------------------------- experiment folders


@pytest.mark.slow
def test_overwrite_keeps_user_files_at_every_depth_of_an_experiment(tmp_path):
    out = tmp_path / "exp"
    data = _alpaca(tmp_path / "data.json", 12)
    args = ["compare", "--model", "tiny", "--data", data, "--alphas", "0", "--seeds", "1", "--max-steps", "1"]
    args += ["--batch-size", "2", "--max-length", "256", "--n-generate", "1", "--max-new-tokens", "2"]
    args += ["--curve-every", "0", "--out", out]
    code, text = cli(*args)
    assert code == 0, text
    arm = next(p.name for p in (out / "arms").iterdir())
    assert (out / "report" / "report.html").is_file() and (
        out / "arms" / arm / "eval" / "eval.json"
    ).is_file()
    from neftune.experiments.report import REPORT_FILES

    assert {p.name for p in (out / "report").iterdir()} <= set(REPORT_FILES), "a report file is not listed"
    planted = _plant(
        out,
        [
            "notes.md",
            "arms/comparison.md",
            f"arms/{arm}/mine.txt",
            f"arms/{arm}/eval/analysis.md",
            f"arms/{arm}/eval/deep/x.txt",
            "arms/my-own-arm/results.txt",
            "report/annotated.png",
            "report/drafts/v1.md",
        ],
    )
    code, text = cli(*args, "--overwrite", "--max-steps", "2")
    assert code == 0, text
    _assert_intact(out, planted)
    assert "report/annotated.png" in text and f"arms/{arm}/eval/analysis.md" in text, text
    run = json.loads((out / "arms" / arm / RUN_FILE).read_text())
    assert run["config"]["max_steps"] == 2, "the previous experiment was replaced"


def test_library_clear_experiment_names_what_it_kept(tmp_path):
    from neftune.experiments.run import clear_experiment

    folder = tmp_path / "exp"
    arm = folder / "arms" / "a0-uniform-constant-s0"
    _fake_run(arm, "complete", [RUN_FILE, "model.safetensors"])
    (arm / "arm.json").write_text("{}")
    (arm / "eval").mkdir()
    for name in ("eval.json", "generations.json"):
        (arm / "eval" / name).write_text("{}")
    for name in ("experiment.json", "results.json"):
        (folder / name).write_text("{}")
    (folder / "report").mkdir()
    (folder / "report" / "report.html").write_text("<html>")
    planted = _plant(
        folder, ["arms/a0-uniform-constant-s0/eval/mine.md", "report/mine.css", "arms/my_data.jsonl"]
    )
    kept = clear_experiment(folder, protect=[folder / "arms" / "my_data.jsonl"])
    assert sorted(kept) == sorted(planted)
    _assert_intact(folder, planted)
    assert not (arm / "model.safetensors").exists() and not (arm / "arm.json").exists()
    assert not (folder / "report" / "report.html").exists() and not (folder / "results.json").exists()
