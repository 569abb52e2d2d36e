#!/usr/bin/env python
"""End-to-end fine-tuning throughput: `neftune train` versus TRL SFTTrainer with neftune_noise_alpha.

Four variants, each a full trainer run of the same model on the same records, batch size,
max length and number of steps:

  ours_padded         neftune.finetune.training.train(TrainConfig(..., padding_free=False))
  ours_padding_free   neftune.finetune.training.train(TrainConfig(..., padding_free=True))   (its default)
  trl_padded          trl.SFTTrainer(model, args=SFTConfig(neftune_noise_alpha=alpha, ...))
  trl_padding_free    the same with SFTConfig(padding_free=True)

each run at every activation-checkpointing setting of ``--gradient-checkpointing`` (default
``off,on``: both), ours and TRL alike, so each comparison is like for like. Variant names carry
the setting: ``ours_padded@gc-on``. TRL gets ``SFTConfig(activation_checkpointing=...)``;
``neftune train`` has no such option (it runs without, for speed), so the benchmark turns it on
for our runs at train begin, where the Trainer would, with the Trainer's defaults. Every run
records what its model actually ran with (``settings.gradient_checkpointing``).

TRL is set up the way its documentation shows NEFTune (``SFTConfig(neftune_noise_alpha=5)``),
with its other defaults left alone except what must match (batch, steps, max length, seed,
learning rate, precision, checkpointing) and what costs time outside training (no checkpoints,
no reports). Its effective settings are recorded for every run.

Measured per run, over the steps after --warmup (device synchronised at both ends):
  real tokens/s   non-padding tokens of the batches actually fed to the model, counted by a
                  forward pre-hook on the model (attention_mask sum for padded batches; every
                  token of a padding-free batch, which has none), divided by the wall time
  peak memory     torch.cuda.max_memory_allocated over the whole run (GPU); on the CPU the
                  process's peak resident set size (meaningful per run only with subprocesses)

Data: synthetic instruction records with an Alpaca-like length histogram (see build_records:
total chat-templated lengths drawn from a log-normal with mean --mean-tokens, default 229,
sigma 0.6, clipped to [32, --max-length - 8]; prompt share uniform in [0.15, 0.5]; text made of
words that are single tokens of the tokenizer). The measured token-length histogram is
written to the JSON. Both trainers get the same records, in the same conversational
prompt/completion form.

Each run goes in its own subprocess by default (fresh CUDA context and allocator, separate
peak memory); variants repeat --repeats times (default 2) in rotated order; the summary gives
each variant's median and the ratios between ours and TRL at the same checkpointing setting.

    # GPU: 1B Llama shape (random weights), batch 16, 60 steps
    python benchmarks/bench_train_throughput.py --model 1b --batch 16 --steps 60 --out results/train_throughput.json
    # CPU smoke check (tiny preset, a few steps, in one process): plumbing, not performance
    python benchmarks/bench_train_throughput.py --smoke --out /tmp/train_throughput.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import MODEL_CONFIGS, build_llama, machine_info
from _synthetic_sft_data import build_records
from _throughput_meter import ThroughputMeter

from neftune.finetune.io import write_json_atomic, write_jsonl_atomic

VARIANTS = ("ours_padded", "ours_padding_free", "trl_padded", "trl_padding_free")


# ------------------------------------------------------------------------------------------- runs
def parse_ours_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``LABEL:key=value[,key=value...]`` -> (label, TrainConfig overrides); values parsed as JSON if they can be."""
    label, sep, rest = text.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
        raise argparse.ArgumentTypeError(f"{text!r}: expected LABEL:key=value[,key=value...]")
    overrides: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"{text!r}: {item!r} is not key=value")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return label, overrides


def check_train_config_fields(overrides: dict[str, Any]) -> None:
    from neftune.finetune.training import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SystemExit(
            f"--ours-variant: TrainConfig has no field(s) {unknown}; it has {sorted(known)}. A candidate "
            "default can only be measured once neftune.finetune.training.TrainConfig exposes it."
        )


def run_ours(
    spec: dict, padding_free: bool, meter: ThroughputMeter, out_dir: Path, overrides: dict | None = None
) -> None:
    from neftune.finetune.training import TrainConfig, train

    cfg = TrainConfig(
        data_seed=spec["seed"],  # the same held-out split as the TRL baseline's records
        model=spec["model"],
        data=spec["data"],
        out=str(out_dir),
        alpha=spec["alpha"],
        padding_free=padding_free,
        batch_size=spec["batch"],
        max_steps=spec["steps"],
        max_length=spec["max_length"],
        lr=spec["lr"],
        seed=spec["seed"],
        logging_steps=spec["logging_steps"],
        save_steps=10 * spec["steps"] + 1,  # no checkpoint inside the timed window
    )
    for key, value in (overrides or {}).items():
        setattr(cfg, key, value)
    train(cfg, overwrite=True, callbacks=[meter])


def run_trl(
    spec: dict, padding_free: bool, meter: ThroughputMeter, out_dir: Path, overrides: dict | None = None
) -> None:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from neftune.finetune.data.bundle import resolve_data
    from neftune.finetune.data.turns import training_rows
    from neftune.finetune.models import load_model_and_tokenizer

    cuda = torch.cuda.is_available()
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    model, tokenizer = load_model_and_tokenizer(
        spec["model"], dtype=torch.bfloat16 if bf16 else torch.float32
    )
    # The same records neftune.finetune.training.train uses (same held-out split), tokenized as it does.
    records = resolve_data(spec["data"], seed=spec["seed"]).train
    rows = training_rows(records, tokenizer)
    extra = {}
    if spec.get("gradient_checkpointing") in ("on", "off"):
        names = {f.name for f in dataclasses.fields(SFTConfig)}
        key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
        extra[key] = spec["gradient_checkpointing"] == "on"
    args = SFTConfig(
        output_dir=str(out_dir),
        neftune_noise_alpha=spec["alpha"],  # TRL's documented NEFTune switch
        per_device_train_batch_size=spec["batch"],
        max_steps=spec["steps"],
        # TRL refuses max_length with padding_free (it would not truncate); the records are shorter.
        max_length=None if padding_free else spec["max_length"],
        padding_free=padding_free,
        completion_only_loss=True,  # the loss on the completion_mask tokens, as neftune.finetune.training
        learning_rate=spec["lr"],
        seed=spec["seed"],
        data_seed=spec["seed"],
        bf16=bf16,
        use_cpu=not cuda,
        logging_steps=spec["logging_steps"],
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        **extra,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[meter],
    )
    trainer.train()


def run_variant(variant: str, spec: dict) -> dict:
    """One trainer run; returns the meter's figures.

    ``variant``: one of VARIANTS, or ``ours_padding_free+LABEL`` for a run with the TrainConfig
    overrides registered under LABEL in ``spec["ours_variants"]``; ``@gc-on`` / ``@gc-off`` /
    ``@gc-default`` at the end sets activation checkpointing.
    """
    name, _, gc = variant.partition("@gc-")
    base, _, label = name.partition("+")
    kind, _, padding = base.partition("_")
    padding_free = padding == "padding_free"
    overrides = spec.get("ours_variants", {}).get(label) if label else None
    spec = {**spec, "gradient_checkpointing": gc or "default"}
    meter = ThroughputMeter(spec["warmup"], gradient_checkpointing=kind == "ours" and gc == "on")
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-", dir=spec.get("workdir")) as tmp:
        start = time.perf_counter()
        (run_ours if kind == "ours" else run_trl)(spec, padding_free, meter, Path(tmp) / "run", overrides)
        total = time.perf_counter() - start
    result = {"variant": variant, **meter.result(), "wall_seconds_including_setup": total}
    if overrides:
        result["train_config_overrides"] = overrides
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def run_in_subprocess(variant: str, spec_path: Path, workdir: Path) -> dict:
    out = workdir / f"result-{variant}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--worker", variant, "--spec", str(spec_path), "--worker-out", str(out)]
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------- setup
def prepare_model(args, workdir: Path) -> tuple[str, Any]:
    """The model spec both trainers load, and its tokenizer: a preset/folder, or a random-init shape."""
    from transformers import AutoTokenizer

    from neftune.finetune.models import load_model_and_tokenizer

    random_shape = args.model in ("1b", "135m") or (args.model == "tiny" and args.tokenizer is not None)
    if not random_shape:  # a neftune preset ("tiny", "smollm2-135m") or a model folder
        _, tok = load_model_and_tokenizer(args.model)
        return args.model, tok
    tok_dir = args.tokenizer
    if tok_dir is None:
        from neftune.finetune.models import default_tokenizer_dir

        tok_dir = default_tokenizer_dir()
    tok = AutoTokenizer.from_pretrained(tok_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    folder = workdir / f"model-{args.model}"
    if not (folder / "config.json").exists():
        ids = {"vocab_size": len(tok), "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
        ids["pad_token_id"] = tok.pad_token_id
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        model = build_llama(args.model, dtype, torch.device("cpu"), **ids)
        model.save_pretrained(folder, safe_serialization=True)
        tok.save_pretrained(folder)
        del model
    return str(folder), tok


def summarize_runs(runs: list[dict]) -> tuple[dict, dict]:
    """Per variant: median real tokens/s over its repeats; ratios of medians at equal checkpointing."""
    summary: dict[str, dict] = {}
    for v in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == v]
        tps = [r["real_tokens_per_s"] for r in mine]
        mem = [r["peak_mem_mib"] for r in mine if r["peak_mem_mib"] is not None]
        summary[v] = {
            "real_tokens_per_s_median": statistics.median(tps),
            "real_tokens_per_s_all": tps,
            "repeats": len(tps),
            "peak_mem_mib_max": max(mem) if mem else None,
            "padding_fraction": statistics.fmean(r["padding_fraction"] for r in mine),
            "settings": mine[0]["settings"],
        }
    ratios = {}
    tags = dict.fromkeys(v.partition("@")[2] for v in summary)
    for tag in tags:
        at = f"@{tag}" if tag else ""
        for a, b in [
            ("ours_padding_free", "trl_padded"),
            ("ours_padding_free", "trl_padding_free"),
            ("ours_padded", "trl_padded"),
            ("trl_padding_free", "trl_padded"),
        ]:
            if a + at in summary and b + at in summary:
                ratios[f"{a}_vs_{b}{at}"] = (
                    summary[a + at]["real_tokens_per_s_median"] / summary[b + at]["real_tokens_per_s_median"]
                )
        for v in summary:  # candidate defaults against the run they modify
            if "+" in v and v.endswith(at) and "ours_padding_free" + at in summary:
                ratios[f"{v.partition('@')[0]}_vs_ours_padding_free{at}"] = (
                    summary[v]["real_tokens_per_s_median"]
                    / summary["ours_padding_free" + at]["real_tokens_per_s_median"]
                )
    return summary, ratios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default=None, help=f"{sorted(MODEL_CONFIGS)} (random init), a preset or a folder"
    )
    p.add_argument(
        "--tokenizer", type=Path, default=None, help="tokenizer folder (default: SmolLM2's cached one)"
    )
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default 16)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 60)")
    p.add_argument("--warmup", type=int, default=None, help="steps before timing starts (default 10)")
    p.add_argument("--repeats", type=int, default=2, help="runs per variant, in rotated order")
    p.add_argument("--records", type=int, default=None, help="synthetic records (default 2000)")
    p.add_argument("--mean-tokens", type=float, default=229.0)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--alpha", type=float, default=5.0)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--gradient-checkpointing",
        default=None,
        help="comma list of on / off / default (TRL's default, ours without): every variant runs at each; "
        "default off,on (smoke: off)",
    )
    p.add_argument(
        "--ours-variant",
        type=parse_ours_variant,
        action="append",
        default=[],
        metavar="LABEL:KEY=VALUE,...",
        help="extra run ours_padding_free+LABEL with these TrainConfig fields set (a candidate default), "
        "interleaved with the others; repeatable",
    )
    p.add_argument("--in-process", action="store_true", help="run the variants in this process")
    p.add_argument(
        "--workdir", type=Path, default=None, help="where the model/data/runs go (default: a temp dir)"
    )
    p.add_argument("--smoke", action="store_true", help="CPU plumbing check: tiny preset, few steps")
    p.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--spec", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:  # one run inside a subprocess
        spec = json.loads(args.spec.read_text())
        write_json_atomic(args.worker_out, run_variant(args.worker, spec))
        return 0

    smoke = args.smoke
    args.model = args.model or ("tiny" if smoke else "1b")
    args.batch = args.batch or (2 if smoke else 16)
    args.steps = args.steps or (3 if smoke else 60)
    args.warmup = args.warmup if args.warmup is not None else (1 if smoke else 10)
    args.records = args.records or (24 if smoke else 2000)
    if smoke:
        args.in_process = True
        if args.mean_tokens == 229.0:
            args.mean_tokens = 60.0  # keep the CPU run short
        args.max_length = min(args.max_length, 256)
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}; choose from {VARIANTS}")
    ours_variants = dict(args.ours_variant)
    for overrides in ours_variants.values():
        check_train_config_fields(overrides)
    variants += [f"ours_padding_free+{label}" for label in ours_variants]
    settings = (args.gradient_checkpointing or ("off" if smoke else "off,on")).split(",")
    if not settings or any(g not in ("on", "off", "default") for g in settings):
        p.error(
            f"--gradient-checkpointing: expected a comma list of on, off, default; got {args.gradient_checkpointing!r}"
        )
    variants = [f"{v}@gc-{g}" for g in settings for v in variants]
    if args.steps <= args.warmup:
        p.error("--steps must be larger than --warmup")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info = machine_info(device)
    print(f"torch {info['torch']}, transformers {info['transformers']}, trl {info['trl']}; device {device}")
    if device.type == "cpu":
        print("NOTE: CPU run: a plumbing check, not a performance measurement")

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        model_spec, tok = prepare_model(args, workdir)
        records, data_stats = build_records(tok, args.records, args.mean_tokens, args.max_length, args.seed)
        data_path = workdir / "records.jsonl"
        write_jsonl_atomic(data_path, records)
        print(
            f"data: {len(records)} records, mean {data_stats['mean_tokens']:.1f} tokens "
            f"(median {data_stats['median_tokens']}, p90 {data_stats['p90_tokens']}, max {data_stats['max_tokens']})"
        )
        spec = {
            "model": model_spec,
            "data": str(data_path),
            "alpha": args.alpha,
            "batch": args.batch,
            "steps": args.steps,
            "warmup": args.warmup,
            "max_length": args.max_length,
            "lr": args.lr,
            "seed": args.seed,
            "logging_steps": max(1, min(10, args.steps)),
            "gradient_checkpointing": settings,
            "ours_variants": ours_variants,
            "workdir": str(workdir),
        }
        spec_path = workdir / "spec.json"
        write_json_atomic(spec_path, spec)

        runs: list[dict] = []

        def write(complete: bool) -> None:
            """The JSON so far: rewritten after every run, so a run killed later loses only itself."""
            if args.out is None or not runs:
                return
            summary, ratios = summarize_runs(runs)
            payload = {
                "benchmark": "train_throughput",
                "smoke": smoke,
                "complete": complete,
                "machine": info,
                "settings": {k: v for k, v in spec.items() if k not in ("workdir", "data")}
                | {"model_arg": args.model, "repeats": args.repeats, "in_process": args.in_process},
                "data": data_stats,
                "runs": runs,
                "summary": summary,
                "ratios": ratios,
            }
            write_json_atomic(args.out, payload)

        for r in range(args.repeats):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for v in order:
                res = run_variant(v, spec) if args.in_process else run_in_subprocess(v, spec_path, workdir)
                res["repeat"] = r
                runs.append(res)
                mem = "-" if res["peak_mem_mib"] is None else f"{res['peak_mem_mib']:.0f} MiB"
                print(
                    f"  {v:<32} {res['real_tokens_per_s']:>10.1f} real tokens/s  "
                    f"{res['seconds_per_step'] * 1e3:>9.1f} ms/step  padding {res['padding_fraction']:.1%}  "
                    f"peak {mem}  grad ckpt {res['settings']['gradient_checkpointing']}"
                )
                write(complete=False)

        for name, value in summarize_runs(runs)[1].items():
            print(f"  {name}: {value:.2f}x")
        write(complete=True)
    if args.out is not None:
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
