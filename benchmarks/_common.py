"""Shared helpers for the benchmark scripts: machine description, order statistics, model configs.

Kept dependency-light (torch only at import time) so every script starts fast.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import shlex
import statistics
import sys
from pathlib import Path

import torch

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))  # run from a checkout without installing

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Llama-shaped configs for random-weight models (keyword arguments of transformers.LlamaConfig).
MODEL_CONFIGS: dict[str, dict] = {
    # ~1.2B parameters, TinyLlama-like shape with 24 layers.
    "1b": {
        "vocab_size": 32000,
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "num_key_value_heads": 4,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
    },
    # SmolLM2-135M(-Instruct): the same shape as its config.json (rope theta left at the default,
    # which does not change the cost).
    "135m": {
        "vocab_size": 49152,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": True,
    },
    # For CPU smoke runs only.
    "tiny": {
        "vocab_size": 256,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
    },
}


def build_llama(
    name_or_config: str | dict, dtype: torch.dtype, device: torch.device, seed: int = 0, **overrides
):
    """A randomly initialised ``LlamaForCausalLM`` (sdpa attention) of a named or given shape.

    ``overrides`` replace config entries (e.g. ``vocab_size`` and token ids of a tokenizer).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = MODEL_CONFIGS[name_or_config] if isinstance(name_or_config, str) else name_or_config
    cfg = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, **cfg, **overrides}
    config = LlamaConfig(**cfg)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    return model.to(dtype)


def machine_info(device: torch.device | str) -> dict:
    """Where and with what a benchmark ran: date, command, host, GPU, library versions."""
    device = torch.device(device)
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET"),
    }
    for mod in ("triton", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # not installed, or broken: record that, don't fail the benchmark
            info[mod] = None
    return info


def summarize(times_ms: list[float]) -> dict:
    """Median, mean, quartiles, min and count of a list of timings (ms)."""
    qs = statistics.quantiles(times_ms, n=4, method="inclusive") if len(times_ms) > 1 else [times_ms[0]] * 3
    return {
        "median_ms": statistics.median(times_ms),
        "mean_ms": statistics.fmean(times_ms),
        "p25_ms": qs[0],
        "p75_ms": qs[2],
        "min_ms": min(times_ms),
        "n": len(times_ms),
    }


def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free confidence interval for the median (order statistics, binomial).

    With ``n`` sorted values, ``[x_(k), x_(n-k+1)]`` covers the median with probability
    ``1 - 2 P(Binomial(n, 1/2) < k)``; returns the narrowest such interval with coverage
    ``>= level``, or None when ``n`` is too small for any (n < 6 at 95%).
    """
    x = sorted(values)
    n = len(x)
    best = None
    for k in range(1, n // 2 + 1):
        tail = sum(math.comb(n, i) for i in range(k)) / 2**n  # P(B < k)
        if 1 - 2 * tail >= level:
            best = (x[k - 1], x[n - k])
        else:
            break
    return best


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
