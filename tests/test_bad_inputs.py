"""Bad inputs, one row each: the library raises a clear error naming the argument, and the CLI
prints one ``Error:`` line, exits with status 2 and never shows a traceback.

Complements tests/test_errors.py (alpha, activate options, masks, embeds), tests/test_cli.py
(data files) and tests/test_data_formats.py (malformed records);
the catalogue of all of them is docs/reliability.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from torch import nn

import neftune
from neftune.finetune.data.bundle import resolve_data
from neftune.finetune.evaluation import EvalConfig, check_eval_config
from neftune.finetune.training import RUN_FILE, TrainConfig

from conftest import tiny_llama

pytest.importorskip("typer.testing")
pytest.importorskip("trl")
pytestmark = pytest.mark.usefixtures("neftune_cache")

FAST = ["--model", "tiny", "--batch-size", "2", "--max-steps", "1", "--max-length", "256"]


def cli(*args) -> tuple[int, str]:
    """``conftest.cli`` that also checks that a refusal is one line: ``Error: ...`` (issue 24)."""
    from typer.testing import CliRunner

    from neftune.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    if result.exit_code != 0:
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return result.exit_code, " ".join(result.output.split())


# ----------------------------------------------------------------------------- library arguments
class _NoEmbeddingGetter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(2, 2)

    def get_input_embeddings(self) -> nn.Module:
        raise NotImplementedError


class _GetterReturnsNone(nn.Module):
    def get_input_embeddings(self) -> None:
        return None


def _forward_with_schedule(schedule, step=0):
    model = tiny_llama()
    model.train()
    with neftune.noisy_embeddings(model, 5.0, schedule=schedule) as handle:
        handle.set_progress(step, 100)
        model(input_ids=torch.ones(1, 3, dtype=torch.long))


def _set_handle_alpha(value):
    model = tiny_llama()
    with neftune.noisy_embeddings(model, 5.0) as handle:
        handle.set_alpha(value)


LIBRARY_CASES = [
    pytest.param(
        lambda: neftune.add_noise(torch.zeros(1, 3, 4), 5.0, attention_mask=[[1, 1, 1]]),
        TypeError,
        "attention_mask must be a torch.Tensor",
        id="add_noise-mask-not-tensor",
    ),
    pytest.param(
        lambda: neftune.add_noise(torch.zeros(1, 3, 4), 5.0, cu_seqlens=torch.tensor([[0, 3]])),
        ValueError,
        "cu_seqlens must be a 1-D tensor",
        id="add_noise-cu_seqlens-2d",
    ),
    pytest.param(
        lambda: neftune.add_noise(torch.zeros(1, 3, 4), 5.0, distribution="laplace"),
        ValueError,
        "unknown distribution 'laplace'",
        id="add_noise-distribution",
    ),
    pytest.param(
        lambda: neftune.add_noise(torch.zeros(1, 3, 4), 5.0, position_ids=torch.zeros(1, 3).tolist()),
        TypeError,
        "position_ids must be a torch.Tensor",
        id="add_noise-positions-not-tensor",
    ),
    pytest.param(
        lambda: neftune.NEFTuneEmbedding(nn.Embedding(3, 4), 5.0, distribution="normal"),
        ValueError,
        "unknown distribution 'normal'",
        id="wrapper-distribution",
    ),
    pytest.param(
        lambda: neftune.NEFTuneEmbedding(nn.Embedding(3, 4), 5.0, seed="7"),
        TypeError,
        "seed must be an int",
        id="wrapper-seed",
    ),
    pytest.param(
        lambda: _set_handle_alpha(math.nan), ValueError, "alpha must be finite", id="handle-set_alpha"
    ),
    pytest.param(
        lambda: _forward_with_schedule(lambda step, total: -1.0),
        ValueError,
        r"multiplier returned by schedule .* for schedule\(0, 100\) must be >= 0",
        id="schedule-negative",
    ),
    pytest.param(
        lambda: _forward_with_schedule(lambda step, total: math.nan),
        ValueError,
        r"multiplier returned by schedule .* must be finite",
        id="schedule-nan",
    ),
    pytest.param(
        lambda: _forward_with_schedule(lambda step, total: 1.0 - step / 10, step=50),
        ValueError,
        "schedule multiplier must be >= 0",
        id="schedule-negative-later",
    ),
    pytest.param(
        lambda: _forward_with_schedule(lambda step, total: 1.0 if step == 0 else math.nan, step=5),
        ValueError,
        "schedule multiplier must be finite",
        id="schedule-nan-later",
    ),
    pytest.param(
        lambda: neftune.activate(tiny_llama(), 5.0, schedule=3),
        ValueError,
        "unknown schedule 3",
        id="schedule-int",
    ),
    pytest.param(
        lambda: neftune.activate(tiny_llama(), 5.0, schedule="warmup:x"),
        ValueError,
        r"warm-up fraction must be a number in \(0, 1\]",
        id="schedule-warmup-not-number",
    ),
    pytest.param(
        lambda: neftune.activate(tiny_llama(), 5.0, schedule="warmup:0"),
        ValueError,
        r"warm-up fraction must be in \(0, 1\]",
        id="schedule-warmup-zero",
    ),
    pytest.param(
        lambda: neftune.deactivate("model"),
        TypeError,
        "expected a torch.nn.Module or a NEFTune handle",
        id="deactivate-not-module",
    ),
    pytest.param(
        lambda: neftune.is_active(None), TypeError, "expected a torch.nn.Module", id="is_active-not-module"
    ),
    pytest.param(
        lambda: neftune.find_input_embedding("gpt2"),
        TypeError,
        "model must be a torch.nn.Module",
        id="find_input_embedding-not-module",
    ),
    pytest.param(
        lambda: neftune.activate(_NoEmbeddingGetter(), 5.0),
        neftune.EmbeddingNotFoundError,
        r"get_input_embeddings\(\) raised NotImplementedError; found no nn.Embedding",
        id="model-getter-raises",
    ),
    pytest.param(
        lambda: neftune.activate(_GetterReturnsNone(), 5.0),
        neftune.EmbeddingNotFoundError,
        r"get_input_embeddings\(\) returned NoneType",
        id="model-getter-returns-none",
    ),
    pytest.param(
        lambda: neftune.activate_neftune(tiny_llama(), -5.0),
        ValueError,
        "alpha must be >= 0",
        id="compat-activate-alpha",
    ),
    pytest.param(
        lambda: neftune.neftune_post_forward_hook(nn.Embedding(3, 4), (), torch.zeros(1, 2, 4)),
        TypeError,
        "module.neftune_noise_alpha must be a real number",
        id="compat-hook-without-alpha",
    ),
    pytest.param(
        lambda: resolve_data("builtin:quick@x"), ValueError, "data seed in 'builtin:quick@x'", id="data-seed"
    ),
    pytest.param(lambda: resolve_data(""), ValueError, "data must be 'builtin:<preset>'", id="data-empty"),
    pytest.param(
        lambda: check_eval_config(EvalConfig(model="tiny", n_train_loss=-1)),
        ValueError,
        "n_train_loss must be >= 0",
        id="eval-config-n_train_loss",
    ),
    pytest.param(
        lambda: check_eval_config(EvalConfig(model="tiny", repetition_penalty=math.inf)),
        ValueError,
        "repetition_penalty must be a finite number > 0",
        id="eval-config-repetition_penalty",
    ),
    pytest.param(
        lambda: TrainConfig(data_seed=-3).validate(),
        ValueError,
        r"data_seed must be in \[0, 2\*\*32\)",
        id="train-config-data_seed",
    ),
]


@pytest.mark.parametrize(("call", "exc", "match"), LIBRARY_CASES)
def test_library_rejects(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_integrations_reject_bad_arguments():
    from neftune.integrations import NEFTuneCallback, attach

    with pytest.raises(TypeError, match="attach\\(\\) needs a transformers Trainer"):
        attach(tiny_llama(), 5.0)
    with pytest.raises(TypeError, match="seed must be an int"):
        NEFTuneCallback(5.0, seed="0")
    with pytest.raises(ValueError, match="unknown scaling 'padded'"):
        NEFTuneCallback(5.0, scaling="padded")


def test_failed_forward_with_bad_schedule_leaves_model_clean():
    model = tiny_llama()
    model.train()
    bad = neftune.noisy_embeddings(model, 5.0, schedule=lambda s, t: 1.0 - s / 10)
    with pytest.raises(ValueError, match="schedule multiplier"), bad as handle:
        handle.set_progress(50, 100)
        model(input_ids=torch.ones(1, 3, dtype=torch.long))
    assert not neftune.is_active(model)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ----------------------------------------------------------------------------- CLI: train options
TRAIN_OPTIONS = [
    pytest.param(["--alpha", "-1"], "alpha must be >= 0", id="alpha-negative"),
    pytest.param(["--alpha", "nan"], "alpha must be finite", id="alpha-nan"),
    pytest.param(["--alpha", "inf"], "alpha must be finite", id="alpha-inf"),
    pytest.param(["--alpha", "abc"], "Invalid value for '--alpha'", id="alpha-not-number"),
    pytest.param(["--alpha", "500"], "far outside the useful range", id="alpha-too-large"),
    pytest.param(["--scaling", "global"], "unknown scaling 'global'", id="scaling"),
    pytest.param(["--distribution", "laplace"], "unknown distribution", id="distribution"),
    pytest.param(["--schedule", "exp"], "unknown schedule", id="schedule-unknown"),
    pytest.param(
        ["--schedule", "warmup:2"], r"warm-up fraction must be in (0, 1], got 2.0", id="schedule-warmup-2"
    ),
    pytest.param(["--schedule", "warmup:x"], "warm-up fraction must be a number", id="schedule-warmup-x"),
    pytest.param(["--lr", "-1"], "lr must be a finite number > 0, got -1.0", id="lr-negative"),
    pytest.param(["--lr", "nan"], "lr must be a finite number > 0, got nan", id="lr-nan"),
    pytest.param(
        ["--max-steps", "-1", "--epochs", "0"], "give epochs > 0 or max_steps > 0", id="epochs-zero"
    ),
    pytest.param(["--epochs", "nan"], "epochs must be a finite number", id="epochs-nan"),
    pytest.param(["--grad-accum", "0"], "grad_accum must be >= 1", id="grad-accum-zero"),
    pytest.param(["--logging-steps", "0"], "logging_steps must be >= 1", id="logging-steps-zero"),
    pytest.param(["--save-steps", "0"], "save_steps must be >= 1", id="save-steps-zero"),
    pytest.param(["--lora", "--lora-r", "0"], "lora_r must be >= 1", id="lora-r-zero"),
    pytest.param(["--batch-size", "0"], "batch_size must be >= 1", id="batch-size-zero"),
    pytest.param(["--max-length", "0"], "max_length must be >= 1", id="max-length-zero"),
    pytest.param(["--max-length", "8"], "not shorter than max length 8", id="max-length-too-short"),
    pytest.param(["--model", "no/such/model"], "unknown model", id="model-unknown"),
    pytest.param(["--data", "builtin:huge"], "unknown built-in data preset", id="data-preset"),
    pytest.param(["--seed", "-1"], "seed must be in [0, 2**32), got -1", id="seed-negative"),
    pytest.param(["--seed", str(2**32)], "seed must be in [0, 2**32)", id="seed-too-large"),
    pytest.param(["--nope"], "No such option: --nope", id="unknown-option"),
    pytest.param(
        ["--overwrite", "--resume"], "--overwrite and --resume contradict", id="overwrite-and-resume"
    ),
]


@pytest.mark.parametrize(("args", "message"), TRAIN_OPTIONS)
def test_cli_train_rejects_option(tmp_path, args, message):
    code, out = cli("train", *FAST, "--out", str(tmp_path / "run"), *args)
    assert code == 2 and message in out, out
    assert not (tmp_path / "run" / RUN_FILE).exists(), "a refused run must not start"


# ----------------------------------------------------------------------------- CLI: models
def _folder(root: Path, name: str, files: dict[str, str | bytes]) -> Path:
    folder = root / name
    folder.mkdir()
    for fname, content in files.items():
        (folder / fname).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def _file(root: Path) -> str:
    path = root / "weights.safetensors"
    path.write_bytes(b"\x00")
    return str(path)


def _typo(root: Path) -> str:
    (root / "runs").mkdir()
    return "runs/a5"  # relative: looks like a hub id, but runs/ is a local folder


MODEL_CASES = [
    pytest.param(lambda root: "", "model is empty", id="empty"),
    pytest.param(lambda root: str(_folder(root, "m", {})), "has no config.json", id="folder-without-config"),
    pytest.param(
        lambda root: str(_folder(root, "m", {"adapter_config.json": "{}"})),
        {
            "train": "it is a LoRA adapter folder",
            "eval": "has adapter_config.json but no adapter_model.safetensors",
        },
        id="adapter-folder-without-weights",
    ),
    pytest.param(
        lambda root: str(_folder(root, "m", {"config.json": '{"model_type": "llama"}'})),
        "has no model weights (model.safetensors)",
        id="config-without-weights",
    ),
    pytest.param(
        lambda root: str(
            _folder(root, "m", {"config.json": '{"model_type": "llama"}', "pytorch_model.bin": b"\x80\x02."})
        ),
        "holds pytorch_model.bin but no model.safetensors; neftune loads safetensors only",
        id="pickle-weights-only",
    ),
    pytest.param(
        lambda root: str(
            _folder(root, "m", {"config.json": '{"model_type": "llama"}', "model.safetensors": b"\x00"})
        ),
        "has no tokenizer",
        id="no-tokenizer",
    ),
    pytest.param(
        _file,
        "expected a folder (save_pretrained output), got a file",
        id="file-not-folder",
    ),
    pytest.param(lambda root: "./no/such/place", "unknown model './no/such/place'", id="no-such-path"),
    pytest.param(lambda root: _typo(root), "no such model folder", id="mistyped-local-folder"),
]


@pytest.mark.parametrize(("make", "message"), MODEL_CASES)
@pytest.mark.parametrize("command", ["train", "eval"])
def test_cli_rejects_model(tmp_path, monkeypatch, command, make, message):
    monkeypatch.chdir(tmp_path)
    spec = make(tmp_path)
    if command == "train":
        code, out = cli("train", *FAST, "--model", spec, "--out", str(tmp_path / "run"))
    else:
        code, out = cli("eval", "--model", spec, "--n-generate", "0")
    message = message[command] if isinstance(message, dict) else message
    assert code == 2 and message in out, out


# ----------------------------------------------------------------------------- CLI: data
def _write(root: Path, name: str, text: str) -> str:
    path = root / name
    path.write_text(text)
    return str(path)


DATA_CASES = [
    pytest.param(lambda root: "", "data must be 'builtin:<preset>'", id="empty"),
    pytest.param(lambda root: "builtinx", "builtinx: no such file or folder", id="builtin-misspelt"),
    pytest.param(
        lambda root: "builtin:quick@x", "data seed in 'builtin:quick@x' must be an integer", id="builtin-seed"
    ),
    pytest.param(
        lambda root: _write(root, "one.jsonl", '{"instruction": "a", "output": "b"}\n'),
        "need at least 2 records",
        id="one-record",
    ),
    pytest.param(lambda root: _write(root, "d.xml", "<a/>\n"), "unsupported file type '.xml'", id="xml"),
    pytest.param(
        lambda root: _write(root, "d.csv", "a,b\n1,2\n"), "d.csv row 1: unrecognised record", id="csv"
    ),
    pytest.param(
        lambda root: _write(root, "d.json", '{"rows": []}'),
        "expected a JSON list of records, got dict",
        id="json-dict",
    ),
    pytest.param(
        lambda root: _write(root, "d.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n'),
        "line 1: field 'messages[0].role': the last message must be from the assistant",
        id="chat-ends-with-user",
    ),
    pytest.param(
        lambda root: str(_folder(root, "ds", {})),
        "not a dataset saved with datasets.save_to_disk",
        id="plain-folder",
    ),
    pytest.param(
        lambda root: _data_typo(root), "no such file or folder (there is a local folder", id="mistyped-path"
    ),
]


def _data_typo(root: Path) -> str:
    (root / "data").mkdir()
    return "data/mine"


@pytest.mark.parametrize(("make", "message"), DATA_CASES)
def test_cli_train_rejects_data(tmp_path, monkeypatch, make, message):
    monkeypatch.chdir(tmp_path)
    code, out = cli("train", *FAST, "--data", make(tmp_path), "--out", str(tmp_path / "run"))
    assert code == 2 and message in out, out


def test_cli_hub_ids_fail_cleanly_offline(tmp_path, monkeypatch):
    """Unknown hub ids without network: one clear line each, before any retry of the download."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    code, out = cli("train", *FAST[2:], "--model", "someone/model", "--out", "r1")
    assert code == 2 and "--model someone/model: this machine is offline (HF_HUB_OFFLINE is set)" in out, out
    code, out = cli("train", *FAST, "--data", "someone/dataset", "--out", "r2")
    assert code == 2 and "--data someone/dataset: this machine is offline" in out, out
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


# ----------------------------------------------------------------------------- CLI: run folders
def _run_file(folder: Path, record: dict | str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = record if isinstance(record, str) else json.dumps(record)
    (folder / RUN_FILE).write_text(text)


def test_cli_train_rejects_run_folders(tmp_path):
    as_file = tmp_path / "file"
    as_file.write_text("x")
    code, out = cli("train", *FAST, "--out", str(as_file))
    assert code == 2 and "is a file, not a folder" in out, out

    code, out = cli("train", *FAST, "--out", str(as_file / "sub"))
    assert code == 2 and "cannot create --out" in out, out

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, out = cli("train", *FAST, "--out", str(busy))
    assert code == 2 and "is not empty and holds no neftune run" in out, out
    assert (busy / "notes.txt").read_text() == "mine"

    for name, content in {
        "half": '{"status": "runn',
        "list": "[1, 2]",
        "odd": '{"status": "paused"}',
    }.items():
        _run_file(tmp_path / name, content)
        for extra in ([], ["--resume"]):
            code, out = cli("train", *FAST, "--out", str(tmp_path / name), *extra)
            assert code == 2 and "is unreadable (not a run record)" in out, (name, out)

    interrupted = tmp_path / "interrupted"
    cfg = TrainConfig(model="tiny", out=str(interrupted), batch_size=2, max_steps=1, max_length=256)
    _run_file(interrupted, {"status": "running", "config": asdict(cfg)})
    code, out = cli("train", *FAST, "--out", str(interrupted))
    assert code == 2 and "holds an interrupted run; pass --resume" in out, out
    code, out = cli("train", *FAST, "--out", str(interrupted), "--resume", "--alpha", "10")
    assert code == 2 and "--resume with other settings" in out and "alpha: 5.0 -> 10.0" in out, out
    assert json.loads((interrupted / RUN_FILE).read_text())["config"]["alpha"] == 5.0


EVAL_OPTIONS = [
    pytest.param(["--n-generate", "-1"], "n_generate must be >= 0, got -1", id="n-generate-negative"),
    pytest.param(
        ["--repetition-penalty", "0"],
        "repetition_penalty must be a finite number > 0",
        id="repetition-penalty-zero",
    ),
    pytest.param(["--batch-size", "0"], "batch_size must be >= 1, got 0", id="batch-size-zero"),
    pytest.param(["--max-new-tokens", "0"], "max_new_tokens must be >= 1, got 0", id="max-new-tokens-zero"),
    pytest.param(["--data", "builtin:huge"], "unknown built-in data preset 'huge'", id="data-preset"),
    pytest.param(["--bogus"], "No such option: --bogus", id="unknown-option"),
]


@pytest.mark.parametrize(("args", "message"), EVAL_OPTIONS)
def test_cli_eval_rejects_option(args, message):
    code, out = cli("eval", "--model", "tiny", *args)
    assert code == 2 and message in out, out


def test_cli_eval_rejects_run_folders(tmp_path):
    code, out = cli("eval")
    assert code == 2 and "Missing option '--model'" in out, out

    running = tmp_path / "running"
    _run_file(running, {"status": "running", "config": {}})
    code, out = cli("eval", "--model", str(running))
    assert code == 2 and "holds an unfinished run" in out and "--resume" in out, out

    corrupt = tmp_path / "corrupt"
    _run_file(corrupt, "{")
    code, out = cli("eval", "--model", str(corrupt))
    assert code == 2 and "is unreadable: the run folder is damaged" in out, out

    adapter = _folder(tmp_path, "adapter", {"adapter_config.json": "{}", "adapter_model.bin": b"\x80\x02."})
    code, out = cli("eval", "--model", str(adapter))
    assert code == 2 and "no adapter_model.safetensors (found: adapter_model.bin" in out, out

    broken = _folder(tmp_path, "broken", {"adapter_config.json": "{", "adapter_model.safetensors": b"\x00"})
    code, out = cli("eval", "--model", str(broken))
    assert code == 2 and "names no base_model_name_or_path" in out, out

    out_file = tmp_path / "eval.json"
    out_file.write_text("{}")
    code, out = cli("eval", "--model", "tiny", "--out", str(out_file), "--n-generate", "0")
    assert code == 2 and "is a file, not a folder" in out, out
