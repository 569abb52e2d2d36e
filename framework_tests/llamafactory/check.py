"""LLaMA-Factory's own training, packed (``packing`` + ``neat_packing``, sdpa), on a tiny local Llama.

Run with .venvs/llamafactory/bin/python (see run.sh). It

1. trains through neftune's entry (``neftune.integrations.llamafactory.train``, what
   ``neftune llamafactory train`` calls) with ``neftune_alpha: 5``, with ``neat_packing`` (a 4-D
   block-diagonal mask) and with plain ``packing`` (boundaries only in position_ids), and checks, with
   the independent probe, the noise every packed sequence received: within tolerance of
   alpha/sqrt(3), zero on padding;
2. trains the same configs with LLaMA-Factory's own ``neftune_noise_alpha: 5`` (transformers' hook)
   and records what each sequence got there (not checked: the comparison for the docs);
3. runs the ``neftune llamafactory train`` command itself: one short training (exit 0), one relaunched
   through torchrun in two processes (``FORCE_TORCHRUN=1 NPROC_PER_NODE=2``, gloo on the CPU), and the
   refusals (``neftune_noise_alpha`` in the YAML or as an override, an unknown ``neftune_*`` key, a bad
   alpha): exit 2 and one line naming the key.

Writes results.json (per-sequence norms of both runs, timings) into --work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # probe.py, noise_check.py

from noise_check import build_tiny_llama, sentences, summary, verdict  # noqa: E402
from probe import NoiseProbe  # noqa: E402

ALPHA = 5.0


def probe_callback(pad_token_id: int, max_calls: int):
    """A TrainerCallback that puts a :class:`NoiseProbe` on the model when training begins."""
    from transformers import TrainerCallback

    class ProbeCallback(TrainerCallback):
        probe: NoiseProbe | None = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.probe = NoiseProbe(model, max_calls=max_calls, pad_token_id=pad_token_id)

        def on_train_end(self, args, state, control, **kwargs):
            self.probe.remove()

    return ProbeCallback()


def write_inputs(work: Path) -> tuple[dict, int]:
    """Tiny model, dataset (LLaMA-Factory's dataset_info.json + alpaca records); the base config."""
    model_dir, data_dir = work / "model", work / "data"
    pad = build_tiny_llama(model_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    records = [{"instruction": q, "input": "", "output": a} for q, a in sentences(48)]
    (data_dir / "tiny.json").write_text(json.dumps(records))
    (data_dir / "dataset_info.json").write_text(json.dumps({"tiny": {"file_name": "tiny.json"}}))
    base = {
        "model_name_or_path": str(model_dir),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "full",
        "dataset": "tiny",
        "dataset_dir": str(data_dir),
        "template": "empty",
        "cutoff_len": 384,
        "packing": True,
        "neat_packing": True,
        "flash_attn": "sdpa",
        "per_device_train_batch_size": 2,
        "max_steps": 3,
        "learning_rate": 1e-4,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "overwrite_output_dir": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
    }
    return base, pad


def write_yaml(path: Path, values: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    neftune = Path(sys.executable).with_name("neftune")
    return subprocess.run(
        [str(neftune), "llamafactory", "train", *args], capture_output=True, text=True, env=env
    )


def check_refusal(problems: list[str], name: str, proc: subprocess.CompletedProcess, must_name: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]  # after any warnings
    ok = proc.returncode == 2 and len(lines) == 1 and must_name in lines[0] and "Traceback" not in proc.stderr
    print(f"refusal {name}: exit {proc.returncode}: {lines[-1] if lines else '(no message)'}")
    if not ok:
        problems.append(f"refusal {name}: expected exit 2 and one line naming {must_name}, got exit "
                        f"{proc.returncode}, stderr: {proc.stderr[-2000:]}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    work = parser.parse_args().work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    import llamafactory
    import transformers
    from llamafactory.train.tuner import run_exp

    from neftune.integrations.llamafactory import train

    base, pad = write_inputs(work)
    timings, problems = {}, []

    # 1. neftune's entry, probe attached: neat_packing (4-D block-diagonal mask), then plain packing
    #    (a 2-D mask of ones; the boundaries are only in position_ids).
    ours = {**base, "output_dir": str(work / "out-neftune"), "neftune_alpha": ALPHA, "neftune_seed": 0}
    cfg = write_yaml(work / "neftune.yaml", ours)
    runs, mask_dims = {}, {}
    for name, overrides in [("neat_packing", []), ("packing", ["neat_packing=false"])]:
        probe = probe_callback(pad, max_calls=base["max_steps"])
        start = time.perf_counter()
        train(
            cfg, [*overrides, f"output_dir={work / ('out-neftune-' + name)}"], callbacks=[probe], launch=False
        )
        timings[f"neftune_{name}_run_s"] = round(time.perf_counter() - start, 1)
        runs[f"neftune_{name}"] = probe.probe.results()
        mask_dims[name] = sorted(
            {c["attention_mask"].dim() for c in probe.probe.calls if c["attention_mask"] is not None}
        )
        problems += [f"neftune ({name}): {p}" for p in verdict(runs[f"neftune_{name}"], ALPHA)]

    # 2. LLaMA-Factory's own NEFTune (transformers' hook) on the same configs.
    for name, neat in [("neat_packing", True), ("packing", False)]:
        theirs = {**base, "neat_packing": neat, "output_dir": str(work / f"out-framework-{name}")}
        probe = probe_callback(pad, max_calls=base["max_steps"])
        start = time.perf_counter()
        run_exp({**theirs, "neftune_noise_alpha": ALPHA}, callbacks=[probe])
        timings[f"framework_{name}_run_s"] = round(time.perf_counter() - start, 1)
        runs[f"framework_{name}"] = probe.probe.results()

    # 3. The command itself: one short training, then the refusals.
    start = time.perf_counter()
    proc = run_cli(str(cfg), "max_steps=1", f"output_dir={work / 'out-cli'}")
    timings["cli_run_s"] = round(time.perf_counter() - start, 1)
    print(f"neftune llamafactory train: exit {proc.returncode}")
    if proc.returncode != 0:
        problems.append(f"neftune llamafactory train exited {proc.returncode}: {proc.stderr[-3000:]}")
    # Two processes (gloo on the CPU), relaunched through torchrun as llamafactory-cli train does.
    start = time.perf_counter()
    env = {**os.environ, "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"}
    proc = run_cli(str(cfg), "max_steps=1", f"output_dir={work / 'out-torchrun'}", env=env)
    timings["cli_torchrun_2_processes_s"] = round(time.perf_counter() - start, 1)
    text = proc.stdout + proc.stderr
    print(f"FORCE_TORCHRUN=1 NPROC_PER_NODE=2 neftune llamafactory train: exit {proc.returncode}")
    if proc.returncode != 0 or "world size: 2" not in text or "neftune/alpha" not in text:
        problems.append(
            f"torchrun launch: exit {proc.returncode}, no 'world size: 2' or neftune/alpha: {text[-3000:]}"
        )
    both = write_yaml(work / "both.yaml", {**ours, "neftune_noise_alpha": ALPHA})
    check_refusal(problems, "neftune_noise_alpha in the YAML", run_cli(str(both)), "neftune_noise_alpha")
    check_refusal(problems, "neftune_noise_alpha override", run_cli(str(cfg), "neftune_noise_alpha=5"),
                  "neftune_noise_alpha")  # fmt: skip
    check_refusal(problems, "unknown neftune_ key", run_cli(str(cfg), "neftune_alhpa=5"), "neftune_alhpa")
    check_refusal(problems, "negative alpha", run_cli(str(cfg), "neftune_alpha=-1"), "alpha")

    report = {
        "versions": {"llamafactory": llamafactory.__version__, "transformers": transformers.__version__},
        "alpha": ALPHA,
        "target_norm": ALPHA / 3**0.5,
        "runs": {name: {"summary": summary(calls), "calls": calls} for name, calls in runs.items()},
        "attention_mask_dims": mask_dims,
        "timings": timings,
        "problems": problems,
    }
    (work / "results.json").write_text(json.dumps(report, indent=1))
    for name, run in report["runs"].items():
        s = run["summary"]
        if not s["sequences"]:
            print(f"{name:24s}: no sequences recorded")
            continue
        print(f"{name:24s}: {s['sequences']} sequences ({s['lengths']} tokens), noise norm "
              f"min {s['norm_min']:.3f} mean {s['norm_mean']:.3f} max {s['norm_max']:.3f} "
              f"(target {report['target_norm']:.3f}); padding {s['padding']}")  # fmt: skip
    print(f"attention_mask dims the model got: {mask_dims}")
    print(f"timings: {timings}")
    if mask_dims.get("neat_packing") != [4] or mask_dims.get("packing") != [2]:
        problems.append(f"expected a 4-D mask with neat_packing and a 2-D one without: {mask_dims}")
    for p in problems:
        print(f"FAIL {p}")
    print(f"results: {work / 'results.json'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
