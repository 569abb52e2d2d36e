"""Safe loading: a crafted pickle in a run folder or checkpoint never runs, remote code stays off.

The payload is a real exploit: unpickling it calls ``open(marker, "w")`` (a control test shows
that ``torch.load(weights_only=False)`` does create the marker). neftune must refuse or skip every
such file - model weights, LoRA adapter weights, and the checkpoint's ``rng_state.pth``,
``optimizer.pt`` and ``scheduler.pt`` when resuming - and the marker must never appear.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from neftune.finetune.evaluation import load_for_eval
from neftune.finetune.models import ModelError, load_model_and_tokenizer, tiny_model_dir
from neftune.finetune.training import RUN_FILE, RunError, TrainConfig, run_status, train

from conftest import InterruptAtSave, cli

pytest.importorskip("trl")
pytestmark = pytest.mark.usefixtures("neftune_cache")
pytest.importorskip("typer.testing")


class Payload:
    """Unpickling this opens (creates) ``marker``: any code could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_payload(path: Path, marker: Path) -> None:
    torch.save({"state": Payload(marker)}, path)


def test_control_the_payload_is_live(tmp_path):
    """Without weights_only, loading the crafted file runs its code: the marker appears."""
    marker = tmp_path / "marker"
    write_payload(tmp_path / "evil.pt", marker)
    with pytest.raises(Exception, match="Unsupported global|weights_only"):
        torch.load(tmp_path / "evil.pt", weights_only=True)
    assert not marker.exists()
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def _copy_tiny(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(tiny_model_dir(), folder)
    return folder


def test_pickle_weights_in_model_folder_are_refused(tmp_path):
    marker = tmp_path / "marker"
    folder = _copy_tiny(tmp_path, "model")
    (folder / "model.safetensors").unlink()
    write_payload(folder / "pytorch_model.bin", marker)
    with pytest.raises(ModelError, match="neftune loads safetensors only"):
        load_model_and_tokenizer(str(folder))
    code, text = cli("eval", "--model", str(folder), "--n-generate", "0")
    assert code == 2 and "safetensors only" in text
    assert not marker.exists()


def test_pickle_next_to_safetensors_is_never_read(tmp_path):
    """use_safetensors=True: with both files present, only model.safetensors is loaded."""
    marker = tmp_path / "marker"
    folder = _copy_tiny(tmp_path, "model")
    write_payload(folder / "pytorch_model.bin", marker)
    model, _ = load_model_and_tokenizer(str(folder))
    assert model.get_input_embeddings().weight.shape[1] == 64
    assert not marker.exists()


def test_pickle_adapter_weights_are_refused(tmp_path):
    marker = tmp_path / "marker"
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tiny_model_dir())})
    )
    write_payload(folder / "adapter_model.bin", marker)
    with pytest.raises(ModelError, match="no adapter_model.safetensors"):
        load_for_eval(str(folder))
    assert not marker.exists()


def test_remote_code_is_off_unless_asked(tmp_path):
    marker = tmp_path / "marker"
    folder = _copy_tiny(tmp_path, "custom")
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="custom_llama",
        auto_map={"AutoConfig": "custom.CustomConfig", "AutoModelForCausalLM": "custom.CustomModel"},
    )
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(
        f"open({str(marker)!r}, 'w').close()  # runs on import\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        "class CustomConfig(LlamaConfig):\n    model_type = 'custom_llama'\n"
        "class CustomModel(LlamaForCausalLM):\n    config_class = CustomConfig\n"
    )
    with pytest.raises(ModelError, match="trust_remote_code off"):
        load_model_and_tokenizer(str(folder))
    assert not marker.exists()
    load_model_and_tokenizer(str(folder), trust_remote_code=True)  # asked for: the code runs
    assert marker.exists()


@pytest.mark.slow
def test_resume_refuses_crafted_checkpoint_pickles(tmp_path):
    marker = tmp_path / "marker"
    out = tmp_path / "run"
    cfg = TrainConfig(
        model="tiny", out=str(out), batch_size=2, max_steps=3, save_steps=2, max_length=256, logging_steps=1
    )
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[InterruptAtSave()])
    checkpoint = out / "checkpoints" / "checkpoint-2"
    assert checkpoint.is_dir() and run_status(out) == "interrupted"
    # Never loaded by the Trainer: a crafted training_args.bin stays in place for every attempt below.
    write_payload(checkpoint / "training_args.bin", marker)

    for name in ("rng_state.pth", "optimizer.pt", "scheduler.pt"):
        original = (checkpoint / name).read_bytes()
        write_payload(checkpoint / name, marker)
        with pytest.raises(RunError, match=rf"refused to load checkpoint .*{name} holds objects other than"):
            train(cfg, resume=True)
        assert not marker.exists(), name
        assert run_status(out) == "running"
        (checkpoint / name).write_bytes(original)

    weights = (checkpoint / "model.safetensors").read_bytes()
    (checkpoint / "model.safetensors").unlink()
    write_payload(checkpoint / "pytorch_model.bin", marker)
    resume_args = ["--model", "tiny", "--batch-size", "2", "--max-steps", "3", "--save-steps", "2",
                   "--max-length", "256", "--logging-steps", "1", "--out", str(out), "--resume"]  # fmt: skip
    code, text = cli("train", *resume_args)
    assert code == 2 and "holds pickle weights (pytorch_model.bin)" in text, text
    (checkpoint / "pytorch_model.bin").unlink()
    (checkpoint / "model.safetensors").write_bytes(weights)

    metrics = train(cfg, resume=True)  # the intact checkpoint resumes, the crafted args file unread
    assert metrics["global_step"] == 3 and metrics["resumed_from_step"] == 2
    assert run_status(out) == "complete" and not marker.exists()
    written = sorted(p.name for p in out.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle"))
    assert written == [], f"the finished run folder holds pickles: {written}"
    assert (out / "model.safetensors").exists()
    assert json.loads((out / RUN_FILE).read_text())["status"] == "complete"
