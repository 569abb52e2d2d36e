"""Fixtures for the Axolotl tests: a tiny local Llama + tokenizer + data set, YAML configs, and
``axolotl train`` run as a user runs it (Axolotl's own CLI, in this venv, nothing downloaded).

Run through framework_tests/axolotl/run.sh (it uses .venvs/axolotl, built by setup.sh).
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
FRAMEWORK_TESTS = HERE.parent
if str(FRAMEWORK_TESTS) not in sys.path:  # framework_tests/probe.py, the independent probe
    sys.path.insert(0, str(FRAMEWORK_TESTS))
ALPHA = 5.0
TARGET = ALPHA / math.sqrt(3)  # expected per-sequence noise norm (uniform noise)
HIDDEN = 64
SEQUENCE_LEN = 256
CHARS = "abcdefghijklmnopqrstuvwxyz .,?!"
PLUGIN = "neftune.integrations.axolotl.NEFTunePlugin"
PROBE = "probe_plugin.ProbePlugin"
#: Where each test's measured norms are also written (for docs/integrations.md and the README).
RESULTS = Path(os.environ.get("NEFTUNE_AXOLOTL_RESULTS", HERE / "results"))


def tolerance(length: int, hidden: int = HIDDEN, *, k: float = 6.0) -> float:
    """Relative tolerance of one sequence's uniform-noise norm, never looser than the 15% target.

    The noise of a sequence of ``length`` tokens is alpha/sqrt(n) * eps, n = length * hidden,
    eps_i ~ U(-1, 1) iid. Its squared norm is alpha^2/n * S with S = sum eps_i^2:
    E[eps^2] = 1/3, Var[eps^2] = E[eps^4] - 1/9 = 1/5 - 1/9 = 4/45, so S has relative standard
    deviation sqrt(4n/45) / (n/3) = sqrt(0.8/n), and the norm (sqrt S, delta method) half of it,
    sqrt(0.2/n). (Its mean sits below alpha/sqrt(3) by ~0.1/n relative: negligible.) ``k`` = 6
    standard deviations: with a few hundred sequences checked per run the chance of a false
    failure is below 1e-6. For the shortest sequences here (8 tokens, n = 512) that is 11.9%.
    """
    return min(0.15, k * math.sqrt(0.2 / (length * hidden)))


# -- the tiny model, tokenizer and data --------------------------------------------------------
def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{c: i + 4 for i, c in enumerate(CHARS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Any]:
    """A tiny Llama (hidden 64, 2 layers) and its character tokenizer in one folder, plus data."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("tiny")
    model_dir = root / "tiny-llama"
    tokenizer = _tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    rng = random.Random(0)
    data = root / "data.jsonl"
    with data.open("w") as f:
        for _ in range(96):  # 6..120 characters: several sequences per packed 256-token row
            text = "".join(rng.choice(CHARS[:26] + " ") for _ in range(rng.randint(6, 120))).strip() or "a"
            f.write(json.dumps({"text": text}) + "\n")
    return {"model_dir": model_dir, "data": data, "pad_token_id": tokenizer.pad_token_id}


def write_config(tmp_path: Path, tiny: dict[str, Any], **settings: Any) -> Path:
    """An Axolotl YAML for the tiny model: packed (sample_packing), sdpa, fp32, ``max_steps`` 2.

    ``settings`` override or add keys; a value of None removes the key.
    """
    cfg: dict[str, Any] = {
        "base_model": str(tiny["model_dir"]),
        "tokenizer_type": "PreTrainedTokenizerFast",
        "datasets": [{"path": str(tiny["data"]), "ds_type": "json", "type": "completion"}],
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "val_set_size": 0,
        "output_dir": str(tmp_path / "out"),
        "sequence_len": SEQUENCE_LEN,
        "sample_packing": True,
        "pad_to_sequence_len": True,
        "sdp_attention": True,
        "flash_attention": False,
        "micro_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_steps": 2,
        "num_epochs": 1,
        "learning_rate": 1e-3,
        "optimizer": "adamw_torch",
        "lr_scheduler": "constant",
        "bf16": False,
        "fp16": False,
        "tf32": False,
        "save_strategy": "no",
        "logging_steps": 1,
        "seed": 0,
        "plugins": [PLUGIN, PROBE],
        "neftune_alpha": ALPHA,
    }
    for key, value in settings.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def axolotl_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's ``axolotl train``: this venv's bin first on PATH, offline, no telemetry."""
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        AXOLOTL_DO_NOT_TRACK="1",  # otherwise telemetry retries hang the exit (no network here)
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        WANDB_MODE="disabled",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join([str(HERE), str(FRAMEWORK_TESTS), env.get("PYTHONPATH", "")]),
        NEFTUNE_PROBE_DIR=str(tmp_path / "probe"),
    )
    env.update(extra)
    return env


def run_axolotl(
    cfg: Path, tmp_path: Path, *launcher: str, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``axolotl train CFG --launcher python`` (or the launcher args given); output kept in a log."""
    args = list(launcher) or ["--launcher", "python"]
    proc = subprocess.run(
        ["axolotl", "train", str(cfg), *args],
        env=env or axolotl_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    (tmp_path / "axolotl.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    return proc


def probe_records(tmp_path: Path) -> list[dict[str, Any]]:
    """The probe plugin's per-rank records of the run in ``tmp_path`` (rank order)."""
    files = sorted((tmp_path / "probe").glob("noise-rank*.json"))
    return [json.loads(f.read_text()) for f in files]


def save_result(name: str, record: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1))


def tail(proc: subprocess.CompletedProcess, n: int = 3000) -> str:
    return (proc.stdout + proc.stderr)[-n:]
