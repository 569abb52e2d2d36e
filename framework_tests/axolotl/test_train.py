"""``axolotl train`` (Axolotl 0.19, its own CLI) on a tiny local Llama with sample packing: the noise
each packed sequence received, with neftune's plugin and with Axolotl's own ``neftune_noise_alpha``.
"""

from __future__ import annotations

import math

import pytest

from conftest import (
    ALPHA,
    PLUGIN,
    PROBE,
    TARGET,
    axolotl_env,
    probe_records,
    run_axolotl,
    save_result,
    tail,
    tolerance,
    write_config,
)


def _sequences(record: dict) -> list[tuple[int, float]]:
    return [(int(n), float(norm)) for call in record["calls"] for n, norm in call["sequences"]]


def _check_per_sequence(record: dict) -> None:
    calls = record["calls"]
    assert calls, "the probe recorded no training forward"
    sequences = _sequences(record)
    assert len(sequences) >= 2 * len(calls), f"expected several packed sequences per call, got {sequences}"
    for length, norm in sequences:
        tol = tolerance(length)
        assert abs(norm / TARGET - 1) <= tol, (
            f"sequence of {length} tokens got noise norm {norm:.3f}, target {TARGET:.3f} +- {tol:.1%}"
        )
    for call in calls:
        assert call["padding"] == 0.0, f"padding got noise of norm {call['padding']}"


def _summary(record: dict) -> dict:
    norms = [norm for _, norm in _sequences(record)]
    return {
        "sequences": len(norms),
        "min": min(norms),
        "max": max(norms),
        "mean": sum(norms) / len(norms),
        "padding": [call["padding"] for call in record["calls"]],
        "target": TARGET,
    }


def test_plugin_gives_each_packed_sequence_its_noise(tmp_path, tiny):
    cfg = write_config(tmp_path, tiny)
    proc = run_axolotl(cfg, tmp_path)
    assert proc.returncode == 0, tail(proc)
    assert f"{PLUGIN}: per-sequence NEFTune attached" in proc.stdout + proc.stderr
    (record,) = probe_records(tmp_path)
    assert record["pad_token_id"] == tiny["pad_token_id"]
    _check_per_sequence(record)
    save_result("neftune_plugin", {**_summary(record), "calls": record["calls"]})


def test_axolotl_own_hook_scales_by_the_packed_row(tmp_path, tiny):
    """Measured for the README: what ``neftune_noise_alpha: 5`` gives the same packed batches."""
    cfg = write_config(tmp_path, tiny, plugins=[PROBE], neftune_alpha=None, neftune_noise_alpha=ALPHA)
    proc = run_axolotl(cfg, tmp_path)
    assert proc.returncode == 0, tail(proc)
    (record,) = probe_records(tmp_path)
    summary = _summary(record)
    save_result("axolotl_neftune_noise_alpha", {**summary, "calls": record["calls"]})
    # transformers' hook scales by the whole packed row (T = 256 tokens): a sequence of L tokens
    # gets alpha/sqrt(3) * sqrt(L / T) (<= the target), and the padded tail is noised.
    for length, norm in _sequences(record):
        expected = TARGET * math.sqrt(length / 256)
        assert abs(norm / expected - 1) <= tolerance(length), (length, norm, expected)
    assert any(p > 0 for p in summary["padding"])


LORA = {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "lora_target_linear": True}


@pytest.mark.parametrize("adapter", ["lora", "qlora"])
def test_plugin_with_lora_and_qlora(tmp_path, tiny, adapter):
    # Axolotl's fused LoRA kernels (on by default) need CUDA ("Torch not compiled with CUDA
    # enabled"; for 4-bit weights they dequantize on a CUDA stream): off on this CPU.
    settings = dict(LORA, adapter=adapter, lora_qkv_kernel=False, lora_o_kernel=False, lora_mlp_kernel=False)
    if adapter == "qlora":  # bitsandbytes 0.50 runs 4-bit layers on the CPU
        settings["load_in_4bit"] = True
    proc = run_axolotl(write_config(tmp_path, tiny, **settings), tmp_path)
    assert proc.returncode == 0, tail(proc)
    (record,) = probe_records(tmp_path)
    assert record["model_type"].startswith("Peft")  # the probe saw the PEFT-wrapped model
    assert (record["linear4bit_modules"] > 0) == (adapter == "qlora")
    _check_per_sequence(record)  # once, not twice: doubled noise would be sqrt(2) x the target
    save_result(f"neftune_plugin_{adapter}", _summary(record))


def test_each_rank_of_a_multi_process_launch_draws_its_own_noise(tmp_path, tiny):
    """``axolotl train --launcher torchrun -- --nproc_per_node 2``: DDP over gloo on the CPU.

    Axolotl 0.19 cannot put a multi-process model on a CPU by itself; probe_plugin's test-only
    ``NEFTUNE_TEST_CPU_DDP`` switch changes only its device_map (see there).
    """
    cfg = write_config(tmp_path, tiny)
    env = axolotl_env(tmp_path, NEFTUNE_TEST_CPU_DDP="1")
    proc = run_axolotl(cfg, tmp_path, "--launcher", "torchrun", "--", "--nproc_per_node", "2", env=env)
    assert proc.returncode == 0, tail(proc)
    records = probe_records(tmp_path)
    assert [r["rank"] for r in records] == [0, 1]
    for record in records:
        _check_per_sequence(record)
    # Axolotl seeds every rank alike (seed: 0). Ranks sharing one noise stream would put the same
    # uniform draw, scaled, on the first token of each rank's first batch (cosine 1.0); independent
    # draws in d = 64 dimensions have cosine ~ N(0, 1/64): |cos| < 0.75 is 6 standard deviations.
    first, second = (r["first_direction"] for r in records)
    cosine = sum(a * b for a, b in zip(first, second, strict=True))
    assert abs(cosine) < 0.75, cosine
    save_result("neftune_plugin_two_ranks", {"cosine_first_token_noise": cosine, **_summary(records[1])})
