"""Two arms at once (``--executor ray``) vs one after the other (``--executor local``): wall time.

Runs the same two-arm ``neftune compare`` (alphas 0 and 5, one seed, the tiny random Llama) as a
fresh command per repetition, the variants interleaved so that load from other processes hits
them alike, and writes the wall times of the whole command (start-up, Ray start-up, training,
evaluation) and the ratio of medians:

- ``local``: one arm after the other, torch with its default thread count (all cores);
- ``local-1thread``: the same with ``OMP_NUM_THREADS=1`` (what each Ray arm gets);
- ``ray``: a local Ray started for the run, 1 CPU per arm, both arms at once.

    python benchmarks/bench_ray_arms.py --reps 2 --out benchmarks/results/cpu-ray-arms.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SRC, machine_info, median_ci

from neftune.finetune.io import write_json_atomic

VARIANTS = ("local", "local-1thread", "ray")


def compare_command(out: Path, variant: str, max_steps: int) -> list[str]:
    args = [sys.executable, "-m", "neftune.cli", "compare", "--model", "tiny", "--alphas", "0,5"]
    args += ["--seeds", "1", "--max-steps", str(max_steps), "--batch-size", "4", "--max-length", "256"]
    args += ["--n-generate", "4", "--max-new-tokens", "16", "--curve-every", "0", "--no-report"]
    args += ["--executor", "ray" if variant == "ray" else "local", "--out", str(out)]
    return args


def run_once(variant: str, work: Path, max_steps: int, env: dict[str, str]) -> dict:
    out = work / variant
    shutil.rmtree(out, ignore_errors=True)
    env = dict(env)
    if variant == "local-1thread":
        env["OMP_NUM_THREADS"] = "1"
    load = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    start = time.perf_counter()
    proc = subprocess.run(compare_command(out, variant, max_steps), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    arms = json.loads((out / "results.json").read_text())["arms"]
    return {"wall_s": wall, "arm_seconds": [a["seconds"] for a in arms], "load_avg_1min_before": load}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=2, help="repetitions of each variant (interleaved)")
    parser.add_argument("--max-steps", type=int, default=20, help="optimizer steps per arm")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    env.pop("OMP_NUM_THREADS", None)  # "local": torch's default threads
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-ray-arms-") as tmp:
        work = Path(tmp)
        run_once("local", work, 1, env)  # warm the model cache and the file system once, untimed
        for rep in range(args.reps):
            for variant in VARIANTS:
                result = run_once(variant, work, args.max_steps, env)
                runs[variant].append(result)
                print(f"rep {rep} {variant:14s} {result['wall_s']:6.1f} s", flush=True)

    summary = {}
    for variant, results in runs.items():
        walls = [r["wall_s"] for r in results]
        summary[variant] = {
            "median_wall_s": statistics.median(walls),
            "walls_s": walls,
            "ci95": median_ci(walls),
        }
    ratio = summary["ray"]["median_wall_s"] / summary["local"]["median_wall_s"]
    ratio_1t = summary["ray"]["median_wall_s"] / summary["local-1thread"]["median_wall_s"]
    for variant in VARIANTS:
        print(f"{variant:14s} median {summary[variant]['median_wall_s']:6.1f} s")
    print(f"ray / local = {ratio:.2f}; ray / local-1thread = {ratio_1t:.2f}")
    if args.out:
        payload = {
            "machine": machine_info("cpu"),
            "load_average_at_end": os.getloadavg(),
            "settings": {
                "reps": args.reps,
                "max_steps": args.max_steps,
                "command": compare_command(Path("OUT"), "ray", args.max_steps)[1:],
            },
            "runs": runs,
            "summary": summary,
            "ratio_ray_over_local": ratio,
            "ratio_ray_over_local_1thread": ratio_1t,
        }
        write_json_atomic(args.out, payload)


if __name__ == "__main__":
    main()
