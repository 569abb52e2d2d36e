"""ms-swift's own ``swift sft`` with neftune's ``--external_plugins`` file, on a tiny local Llama (CPU).

Run with .venvs/ms_swift/bin/python (see run.sh). ms-swift's ``packing`` and ``padding_free`` demand a
flash-attention implementation (its argument check refuses sdpa/eager), which does not run on a CPU:
so the training here is padded, one sequence per row. It

1. runs ``swift sft ... --external_plugins <neftune's file> --callbacks neftune`` (NEFTUNE_ALPHA=5) with
   a second plugin that puts the independent probe on the model, and checks each sequence's noise norm
   (within tolerance of alpha/sqrt(3)) and zero noise on padding;
2. runs the same with ms-swift's own ``--neftune_noise_alpha 5`` (transformers' hook) and records it;
3. checks the refusal of ``--neftune_noise_alpha`` beside ``--callbacks neftune``, and records ms-swift's
   own refusal of ``--packing true`` without flash attention.

Writes results.json into --work.
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
sys.path.insert(0, str(HERE.parent))  # noise_check.py

from noise_check import build_tiny_llama, sentences, summary, verdict  # noqa: E402

ALPHA = 5.0
STEPS = 3


def swift_sft(
    work: Path, name: str, *extra: str, env: dict | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    swift = Path(sys.executable).with_name("swift")
    args = [
        str(swift), "sft", "--model", str(work / "model"), "--model_type", "llama", "--template", "llama",
        "--dataset", str(work / "train.jsonl"), "--tuner_type", "full", "--attn_impl", "sdpa",
        "--max_steps", str(STEPS), "--per_device_train_batch_size", "2", "--max_length", "512", "--system", "Be brief.",
        "--output_dir", str(work / f"out-{name}"), "--report_to", "none", "--save_strategy", "no",
        "--logging_steps", "1", "--dataloader_num_workers", "0", "--dataset_num_proc", "1",
        "--torch_dtype", "float32", "--split_dataset_ratio", "0", *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})})
    (work / f"{name}.log").write_text(proc.stdout + proc.stderr)
    return proc, round(time.perf_counter() - start, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    work = parser.parse_args().work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    import swift
    import transformers

    from neftune.integrations.ms_swift import PLUGIN_FILE

    build_tiny_llama(work / "model")
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in sentences(24)
    ]
    (work / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    probe_plugin = str(HERE / "probe_plugin.py")
    timings, problems, runs = {}, [], {}

    for name, extra, env in [
        ("neftune", ["--external_plugins", PLUGIN_FILE, probe_plugin, "--callbacks", "neftune", "noise_probe"],
         {"NEFTUNE_ALPHA": str(ALPHA), "NEFTUNE_SEED": "0"}),
        ("framework", ["--external_plugins", probe_plugin, "--callbacks", "noise_probe",
                       "--neftune_noise_alpha", str(ALPHA)], {}),
    ]:  # fmt: skip
        out = work / f"probe-{name}.json"
        proc, timings[f"{name}_run_s"] = swift_sft(
            work, name, *extra, env={**env, "NEFTUNE_PROBE_OUT": str(out)}
        )
        print(f"swift sft ({name}): exit {proc.returncode} in {timings[f'{name}_run_s']} s")
        if proc.returncode != 0 or not out.exists():
            problems.append(f"{name}: swift sft exited {proc.returncode}: {proc.stderr[-3000:]}")
            continue
        runs[name] = json.loads(out.read_text())
    if "neftune" in runs:
        problems += [f"neftune: {p}" for p in verdict(runs["neftune"], ALPHA)]

    proc, _ = swift_sft(work, "refused", "--external_plugins", PLUGIN_FILE, "--callbacks", "neftune",
                        "--neftune_noise_alpha", "5", env={"NEFTUNE_ALPHA": "5"})  # fmt: skip
    refused = proc.returncode != 0 and "drop --neftune_noise_alpha" in proc.stderr
    print(
        f"refusal --neftune_noise_alpha with --callbacks neftune: exit {proc.returncode}, message found: {refused}"
    )
    if not refused:
        problems.append(f"refusal: exit {proc.returncode}: {proc.stderr[-2000:]}")
    proc, _ = swift_sft(work, "packing", "--packing", "true")
    packing_refusal = next(
        (ln for ln in proc.stderr.splitlines() if ln.startswith("ValueError") and "flash attention" in ln),
        None,
    )
    print(f"ms-swift --packing true with sdpa: exit {proc.returncode}: {packing_refusal}")

    report = {
        "versions": {"ms-swift": swift.__version__, "transformers": transformers.__version__},
        "alpha": ALPHA,
        "target_norm": ALPHA / 3**0.5,
        "runs": {name: {"summary": summary(calls), "calls": calls} for name, calls in runs.items()},
        "packing_on_cpu": packing_refusal,
        "timings": timings,
        "problems": problems,
    }
    (work / "results.json").write_text(json.dumps(report, indent=1))
    for name, run in report["runs"].items():
        s = run["summary"]
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
