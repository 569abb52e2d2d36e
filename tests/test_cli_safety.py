"""The command line never loses a user's files or work (issue 13, points 1 and 2).

- ``--overwrite`` removes only what a previous neftune run / experiment wrote, never other files
  and never the data being trained on; a folder neftune did not write is refused.
- A refused run (bad data or option) creates no folder.
- ``neftune eval`` writes to a folder named for its data and never silently replaces an
  evaluation of other data.
- Ctrl-C: one line saying what was saved and the exact resume command, run marked
  ``interrupted``, exit 130; ``--resume`` says where it resumes from.
- ``OSError`` while saving (injected ENOSPC): one ``Error:`` line, exit 1, the last complete
  checkpoint intact and resumable.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neftune.finetune.training import RUN_FILE, run_status

from conftest import cli, interruptible_process

pytest.importorskip("trl")
pytestmark = pytest.mark.usefixtures("neftune_cache")
FAST = ["--model", "tiny", "--batch-size", "2", "--max-steps", "2", "--max-length", "256"]
ROOT = Path(__file__).resolve().parents[1]


def _alpaca(path: Path, n: int = 8) -> Path:
    path.write_text(
        json.dumps([{"instruction": f"Say {i}", "input": "", "output": f"{i}"} for i in range(n)])
    )
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_neftune_did_not_write_is_refused_even_with_overwrite(tmp_path):
    """The reported case: data inside --out, --overwrite used to empty the folder, data included."""
    mywork = tmp_path / "mywork"
    mywork.mkdir()
    data = _alpaca(mywork / "alpaca.json")
    (mywork / "notes.txt").write_text("my notes")
    before = _tree(mywork)
    code, text = cli("train", *FAST, "--data", data, "--out", mywork)
    assert code == 2 and "is not empty and holds no neftune run" in text, text
    assert "--overwrite" not in text, "the refusal must not suggest deleting the folder"
    code, text = cli("train", *FAST, "--data", data, "--out", mywork, "--overwrite")
    assert code == 2 and "nothing was deleted" in text, text
    code, text = cli("train", *FAST, "--data", data, "--out", mywork, "--resume")
    assert code == 2 and "holds no neftune run" in text, text
    assert _tree(mywork) == before


def test_overwrite_replaces_the_previous_run_and_keeps_the_users_files(tmp_path):
    out = tmp_path / "run"
    code, text = cli("train", *FAST, "--out", out, "--alpha", "5")
    assert code == 0, text
    # The user then keeps their data and notes in the run folder, and evaluates it.
    data = _alpaca(out / "alpaca.json")
    (out / "notes.txt").write_text("my notes")
    (out / "eval").mkdir()
    (out / "eval" / "eval.json").write_text('{"model": "x", "data": "y"}')
    code, text = cli("train", *FAST, "--out", out, "--data", data)
    assert code == 2 and "already holds a finished run; pass --overwrite" in text, text

    code, text = cli("train", *FAST, "--out", out, "--data", data, "--alpha", "3", "--overwrite")
    assert code == 0, text
    assert (out / "notes.txt").read_text() == "my notes" and data.exists()
    assert not (out / "eval").exists(), "the previous run's evaluation went with it"
    run = json.loads((out / RUN_FILE).read_text())
    assert run["status"] == "complete" and run["config"]["alpha"] == 3.0
    assert run["preexisting"] == ["alpaca.json", "notes.txt"]
    assert "notes.txt" not in run["files"] and "model.safetensors" in run["files"]

    # A third overwrite still only removes the run's own entries.
    (out / "later.txt").write_text("added after the run")
    code, text = cli("train", *FAST, "--out", out, "--data", data, "--overwrite")
    assert code == 0, text
    assert {"notes.txt", "later.txt", "alpaca.json"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "missing.jsonl"], "no such file or folder"),
        (["--max-length", "8"], "not shorter than max length 8"),
        (["--max-steps", "0"], "max_steps must be >= 1"),
        (["--model", "./no-such-model"], "unknown model"),
    ],
)
def test_failed_preflight_creates_no_folder(tmp_path, args, message):
    out = tmp_path / "new" / "run"
    code, text = cli("train", *FAST, "--out", out, *args)
    assert code == 2 and message in text, text
    assert not (tmp_path / "new").exists()


def test_failed_preflight_keeps_the_previous_run(tmp_path):
    from neftune.finetune.io import write_json_atomic

    out = tmp_path / "run"
    write_json_atomic(
        out / RUN_FILE, {"status": "complete", "config": {}, "files": [RUN_FILE, "model.safetensors"]}
    )
    (out / "model.safetensors").write_bytes(b"weights")
    code, text = cli("train", *FAST, "--out", out, "--overwrite", "--data", tmp_path / "missing.jsonl")
    assert code == 2 and "no such file or folder" in text
    assert (out / "model.safetensors").read_bytes() == b"weights"
    code, text = cli("train", *FAST[2:], "--model", out, "--out", out, "--overwrite")
    assert code == 2 and "is the folder of the model being trained" in text, text
    assert (out / "model.safetensors").read_bytes() == b"weights"


def test_compare_overwrite_removes_only_the_experiment(tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    data = _alpaca(out / "data.json", 12)
    (out / "notes.txt").write_text("mine")
    args = ["compare", "--model", "tiny", "--data", data, "--alphas", "0", "--seeds", "1", "--max-steps", "1"]
    args += ["--batch-size", "2", "--max-length", "256", "--n-generate", "1", "--max-new-tokens", "2"]
    args += ["--curve-every", "0", "--no-report", "--out", out]
    code, text = cli(*args)
    assert code == 2 and "holds no neftune experiment" in text and "--overwrite" not in text, text
    code, text = cli(*args, "--overwrite")
    assert code == 2 and "nothing was deleted" in text, text
    assert (out / "notes.txt").exists() and data.exists()

    other = tmp_path / "exp2"
    args[-1] = other
    code, text = cli(*args)
    assert code == 0, text
    assert (other / "config.yaml").exists() and (other / "arms").is_dir()
    # Then the user keeps notes and a copy of the data in the experiment folder, and starts over.
    (other / "notes.txt").write_text("mine")
    data2 = _alpaca(other / "data.json", 12)
    args[args.index(data)] = data2
    code, text = cli(*args, "--overwrite", "--max-steps", "2")
    assert code == 0, text
    assert (other / "notes.txt").read_text() == "mine" and data2.exists()
    arm = json.loads(next((other / "arms").glob("*/neftune_run.json")).read_text())
    assert arm["config"]["max_steps"] == 2, "the previous experiment was replaced"


def test_compare_without_a_baseline_is_refused_before_training(tmp_path):
    code, text = cli("compare", "--model", "tiny", "--alphas", "5,10", "--out", tmp_path / "c")
    assert code == 2 and "has no baseline: add 0" in text, text
    assert not (tmp_path / "c").exists()


def test_eval_writes_a_folder_named_for_its_data_and_never_replaces_other_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _alpaca(tmp_path / "mine.json", 10)
    quick = ["eval", "--model", "tiny", "--n-generate", "0", "--n-train-loss", "4"]
    code, text = cli(*quick, "--data", data)
    assert code == 0, text
    folder = Path("runs/eval/tiny/mine")
    assert "Written to runs/eval/tiny/mine: eval.json" in text, text
    assert json.loads((folder / "eval.json").read_text())["data"] == str(data)

    code, text = cli(*quick, "--data", data, "--out", folder)  # the same evaluation again: replaced
    assert code == 0 and "replacing the earlier evaluation" in text, text
    other = _alpaca(tmp_path / "other.json", 10)
    code, text = cli(*quick, "--data", other, "--out", folder)
    assert code == 2 and "holds an evaluation of model 'tiny' on" in text and "--overwrite" in text, text
    assert json.loads((folder / "eval.json").read_text())["data"] == str(data)
    code, text = cli(*quick, "--data", other, "--out", folder, "--overwrite")
    assert code == 0, text
    assert json.loads((folder / "eval.json").read_text())["data"] == str(other)

    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "eval.json").write_text('{"my": "numbers"}')
    code, text = cli(*quick, "--data", data, "--out", mine, "--overwrite")
    assert code == 2 and "that no neftune evaluation wrote" in text, text
    assert (mine / "eval.json").read_text() == '{"my": "numbers"}'


def test_eval_folder_of_a_run(tmp_path):
    from neftune.finetune.evaluation import EvalConfig, eval_out_dir
    from neftune.finetune.io import write_json_atomic

    run = tmp_path / "run"
    write_json_atomic(run / RUN_FILE, {"status": "complete", "config": {"data": "a.jsonl", "data_seed": 0}})
    assert eval_out_dir(EvalConfig(model=str(run))) == run / "eval"
    assert eval_out_dir(EvalConfig(model=str(run), data="builtin:quick")) == run / "eval-builtin-quick"
    assert eval_out_dir(EvalConfig(model=str(run), data="a.jsonl", seed=2)) == run / "eval-a-seed2"
    assert eval_out_dir(EvalConfig(model=str(run), out="x")) == Path("x")


# ----------------------------------------------------------------------------- interruptions


def _interrupt_after_first_save(monkeypatch):
    """Ctrl-C right after the first checkpoint was written (as a user pressing it would)."""
    from transformers import Trainer

    original = Trainer._save_checkpoint

    def save_then_interrupt(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_interrupt)


def test_ctrl_c_says_what_was_saved_then_resume_says_from_where(tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = [*FAST[:-4], "--max-steps", "4", "--max-length", "256", "--save-steps", "2", "--out", out]
    with monkeypatch.context() as m:
        _interrupt_after_first_save(m)
        code, text = cli("train", *args)
    assert code == 130, text
    assert "Interrupted at step 2/4; run marked interrupted, saved: the checkpoint of step 2" in text, text
    resume = f"neftune train --config {out / 'config.yaml'} --resume"
    assert f"Resume: {resume}" in text
    assert run_status(out) == "interrupted"
    record = json.loads((out / RUN_FILE).read_text())
    assert record["step"] == 2 and record["checkpoint_step"] == 2

    code, text = cli(*resume.split()[1:])  # exactly the printed command
    assert code == 0, text
    assert "Resuming from step 2" in text
    run = json.loads((out / RUN_FILE).read_text())
    assert run["status"] == "complete" and run["metrics"]["resumed_from_step"] == 2
    assert run["metrics"]["global_step"] == 4


def test_resume_without_a_checkpoint_says_so(tmp_path):
    code, text = cli("train", *FAST, "--out", tmp_path / "run", "--resume")
    assert code == 0, text
    assert "No checkpoint in" in text and "starting from step 0" in text


def test_sigint_to_the_neftune_process(tmp_path):
    """A real Ctrl-C (SIGINT) to `neftune train`: the CLI framework must not swallow it."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    command = [sys.executable, "-m", "neftune.cli", "train", *FAST[:-4], "--max-steps", "1000"]
    command += ["--max-length", "256", "--save-steps", "2", "--out", str(out)]
    state = out / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with interruptible_process(command, env=env, **pipes) as proc:
        deadline = time.monotonic() + 240
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state.exists(), proc.communicate(timeout=30)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if "Interrupted" in line]
    assert len(lines) == 1 and "saved: the checkpoint of step" in lines[0], stderr
    assert f"Resume: neftune train --config {out / 'config.yaml'} --resume" in " ".join(stderr.split())
    assert "Traceback" not in stderr and "Aborted" not in stderr
    assert run_status(out) == "interrupted"


def test_disk_full_while_saving_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """ENOSPC in the middle of the second checkpoint: one Error line, exit 1, checkpoint 2 intact."""
    from safetensors.torch import load_file
    from transformers import Trainer

    out = tmp_path / "run"
    args = [*FAST[:-4], "--max-steps", "6", "--max-length", "256", "--save-steps", "2", "--out", out]
    original = Trainer._save_checkpoint
    calls = []

    def full_disk_on_second_save(self, *a, **kw):
        calls.append(self.state.global_step)
        if len(calls) == 1:
            return original(self, *a, **kw)
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"\x00" * 10)  # what a full disk leaves: a stub
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "model.safetensors"))

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_save_checkpoint", full_disk_on_second_save)
        code, text = cli("train", *args)
    assert code == 1, text
    assert text.count("Error:") == 1 and "No space left on device" in text, text
    assert "the checkpoint of step 2 is intact" in text and "--resume" in text
    assert run_status(out) == "failed"
    ckpt = out / "checkpoints" / "checkpoint-2"
    assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] == 2
    assert load_file(ckpt / "model.safetensors"), "the last good checkpoint loads"
    assert not (out / "checkpoints" / "checkpoint-4").exists(), "the half-written one is gone"

    code, text = cli("train", "--config", out / "config.yaml", "--resume")
    assert code == 0 and "Resuming from step 2" in text, text
    assert json.loads((out / RUN_FILE).read_text())["metrics"]["global_step"] == 6


def test_eval_says_when_every_answer_is_empty(tmp_path, monkeypatch):
    import neftune.finetune.evaluation

    monkeypatch.setattr(
        neftune.finetune.evaluation, "generate", lambda model, tok, records, **kw: [""] * len(records)
    )
    code, text = cli(
        "eval", "--model", "tiny", "--n-generate", "2", "--n-train-loss", "2", "--out", tmp_path / "e"
    )
    assert code == 0, text
    assert "Note: every generated answer was empty" in text, text


def test_ctrl_c_in_compare_prints_the_resume_command(tmp_path, monkeypatch):
    from transformers import Trainer

    out = tmp_path / "exp"
    args = [
        "compare",
        "--model",
        "tiny",
        "--alphas",
        "0",
        "--seeds",
        "1",
        "--max-steps",
        "1",
        "--batch-size",
        "2",
    ]
    args += ["--max-length", "256", "--n-generate", "1", "--max-new-tokens", "2", "--curve-every", "0"]
    args += ["--no-report", "--out", out]

    def interrupted(self, *a, **kw):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Trainer, "training_step", interrupted)
        code, text = cli(*args)
    assert code == 130, text
    resume = f"neftune compare --config {out / 'config.yaml'}"
    assert "Interrupted (arm a0-uniform-constant-s0 at step 0/1, no checkpoint yet)" in text, text
    assert f"finished arms are kept in {out}. Resume: {resume}" in text
    assert run_status(out / "arms" / "a0-uniform-constant-s0") == "interrupted"

    code, text = cli(*resume.split()[1:])
    assert code == 0, text
    assert json.loads((out / "results.json").read_text())["status"] == "complete"
