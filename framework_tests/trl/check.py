"""``neftune trl sft`` against TRL's own ``sft`` script, packed (BFD, padding-free), on a tiny local Llama.

Run with neftune's .venv (see run.sh). It

1. runs :func:`neftune.integrations.trl_cli.sft` (what each process ``neftune trl sft`` launches runs)
   with ``--neftune_alpha 5`` and checks, with the independent probe, the noise every packed sequence
   received: within tolerance of alpha/sqrt(3), zero on padding;
2. runs TRL's own ``trl.scripts.sft.main`` on the same arguments with ``--neftune_noise_alpha 5``
   (transformers' hook) and records what each sequence got (not checked: the docs' comparison);
3. runs the command itself, ``neftune trl sft --config sft.yaml`` (TRL's YAML plus neftune_alpha,
   through accelerate launch): exit 0 and neftune's values in the training logs; and its refusals.

Writes results.json into --work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # probe.py, noise_check.py

from noise_check import build_tiny_llama, sentences, summary, verdict  # noqa: E402
from probe import NoiseProbe  # noqa: E402

ALPHA = 5.0
STEPS = 3


def probe_callback():
    from transformers import TrainerCallback

    class ProbeCallback(TrainerCallback):
        probe: NoiseProbe | None = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.probe = NoiseProbe(model, max_calls=STEPS)

    return ProbeCallback()


@contextlib.contextmanager
def trl_trainer_with(callback):
    """TRL's own script, with only the probe added to the trainer it builds (the harness's access)."""
    import trl

    original = trl.SFTTrainer

    class WithProbe(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(callback)

    trl.SFTTrainer = WithProbe
    try:
        yield
    finally:
        trl.SFTTrainer = original


def run_cli(*args: str) -> subprocess.CompletedProcess:
    neftune = Path(sys.executable).with_name("neftune")
    return subprocess.run([str(neftune), "trl", "sft", *args], capture_output=True, text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    work = parser.parse_args().work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    import transformers
    import trl
    from trl.scripts.sft import main as trl_sft_main
    from trl.scripts.sft import make_parser as trl_sft_parser

    from neftune.integrations.trl_cli import sft

    model_dir, data_dir = work / "model", work / "data"
    build_tiny_llama(model_dir)
    data_dir.mkdir(exist_ok=True)
    rows = [{"text": f"{q}\n{a}"} for q, a in sentences(24)]
    (data_dir / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    common = {
        "model_name_or_path": str(model_dir),
        "dataset_name": str(data_dir),
        "packing": True,
        "max_length": 256,
        "per_device_train_batch_size": 2,
        "max_steps": STEPS,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "dtype": "float32",
        "dataloader_num_workers": 0,
    }
    argv = [s for k, v in common.items() for s in ((f"--{k}",) if v is True else (f"--{k}", str(v)))]
    timings, problems = {}, []

    # 1. neftune's per-process entry, probe attached.
    probe = probe_callback()
    start = time.perf_counter()
    sft([*argv, "--output_dir", str(work / "out-neftune"), "--neftune_alpha", str(ALPHA), "--neftune_seed", "0"],
        callbacks=[probe])  # fmt: skip
    timings["neftune_run_s"] = round(time.perf_counter() - start, 1)
    neftune_results = probe.probe.results()
    problems += [f"neftune: {p}" for p in verdict(neftune_results, ALPHA)]

    # 2. TRL's own script with transformers' hook (--neftune_noise_alpha).
    probe = probe_callback()
    theirs = [*argv, "--output_dir", str(work / "out-trl"), "--neftune_noise_alpha", str(ALPHA)]
    start = time.perf_counter()
    with trl_trainer_with(probe):
        trl_sft_main(*trl_sft_parser().parse_args_and_config(theirs, fail_with_unknown_args=False))
    timings["trl_hook_run_s"] = round(time.perf_counter() - start, 1)
    framework_results = probe.probe.results()

    # 3. The command: TRL's YAML with neftune_alpha in it, launched as `trl sft` launches.
    import yaml

    config = work / "sft.yaml"
    yaml_values = {**common, "max_steps": 1, "output_dir": str(work / "out-cli"), "neftune_alpha": ALPHA}
    config.write_text(yaml.safe_dump(yaml_values))
    start = time.perf_counter()
    proc = run_cli("--config", str(config))
    timings["cli_run_s"] = round(time.perf_counter() - start, 1)
    print(f"neftune trl sft --config sft.yaml: exit {proc.returncode}")
    if proc.returncode != 0 or "neftune/alpha" not in proc.stdout + proc.stderr:
        problems.append(
            f"neftune trl sft: exit {proc.returncode}, no neftune/alpha in its logs: {proc.stderr[-3000:]}"
        )
    for name, args, must in [
        (
            "--neftune_noise_alpha",
            ["--config", str(config), "--neftune_noise_alpha", "5"],
            "--neftune_noise_alpha",
        ),
        ("negative --neftune_alpha", ["--config", str(config), "--neftune_alpha", "-1"], "alpha"),
    ]:
        proc = run_cli(*args)
        # One "Error:" line naming the option (TRL's own deprecation warnings may precede it).
        lines = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
        print(f"refusal {name}: exit {proc.returncode}: {lines[-1] if lines else '(no message)'}")
        if proc.returncode != 2 or len(lines) != 1 or must not in lines[0] or "Traceback" in proc.stderr:
            problems.append(f"refusal {name}: exit {proc.returncode}, stderr {proc.stderr[-2000:]}")

    report = {
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__},
        "alpha": ALPHA,
        "target_norm": ALPHA / 3**0.5,
        "neftune": {"summary": summary(neftune_results), "calls": neftune_results},
        "framework": {"summary": summary(framework_results), "calls": framework_results},
        "timings": timings,
        "problems": problems,
    }
    (work / "results.json").write_text(json.dumps(report, indent=1))
    for name in ("neftune", "framework"):
        s = report[name]["summary"]
        if s["sequences"]:
            print(f"{name:9s}: {s['sequences']} sequences ({s['lengths']} tokens), noise norm "
                  f"min {s['norm_min']:.3f} mean {s['norm_mean']:.3f} max {s['norm_max']:.3f} "
                  f"(target {report['target_norm']:.3f}); padding {s['padding']}")  # fmt: skip
    print(f"timings: {timings}")
    for p in problems:
        print(f"FAIL {p}")
    print(f"results: {work / 'results.json'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
