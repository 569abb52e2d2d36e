"""Kill `neftune compare` with SIGKILL at random moments, resume it, and check nothing is lost or redone.

Each trial starts the same `neftune compare` command (tiny model, 2 alphas x 2 seeds by default) in
a subprocess and SIGKILLs it after a random delay; a last run lets it finish. After every kill:

- `results.json`, `experiment.json` and every `arm.json` that exists parse as complete JSON
  (atomic writes: a reader never sees half a file);
- `results.json` never calls an arm complete whose `arm.json` is missing;
- an arm finished in an earlier trial keeps its `arm.json` byte for byte (never recomputed).

At the end every arm is complete, exactly once (its `arm.json` was written by one run only).

    python tests/fault_injection_compare.py --trials 10 --out /tmp/fi-compare [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ARGS = [
    "--model", "tiny", "--alphas", "0,5", "--seeds", "2", "--max-steps", "3", "--batch-size", "2",
    "--max-length", "256", "--n-generate", "1", "--max-new-tokens", "2", "--curve-every", "1",
]  # fmt: skip


def _command(folder: Path) -> list[str]:
    return [sys.executable, "-m", "neftune.cli", "compare", *ARGS, "--out", str(folder), "--no-report"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_folder(folder: Path) -> dict[str, str]:
    """Assert the invariants above; return {arm id: sha256 of arm.json} for finished arms."""
    for name in ("results.json", "experiment.json"):
        path = folder / name
        if path.exists():
            json.loads(path.read_text())  # raises on a half-written file
    finished = {}
    for arm_file in sorted(folder.glob("arms/*/arm.json")):
        record = json.loads(arm_file.read_text())
        assert record["status"] == "complete", f"{arm_file} exists but is not complete"
        finished[arm_file.parent.name] = _digest(arm_file)
    results = folder / "results.json"
    if results.exists():
        for arm in json.loads(results.read_text())["arms"]:
            if arm["status"] == "complete":
                assert arm["id"] in finished, (
                    f"results.json says {arm['id']} is complete, arm.json is missing"
                )
    return finished


def run_trials(folder: Path, trials: int, *, seed: int = 0, max_delay: float = 45.0) -> dict:
    """Kill ``trials`` times at uniform random delays in [1, max_delay] s, then finish; return a summary."""
    rng = random.Random(seed)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    shutil.rmtree(folder, ignore_errors=True)
    seen: dict[str, str] = {}
    kills = []
    for trial in range(trials):
        delay = rng.uniform(1.0, max_delay)
        proc = subprocess.Popen(_command(folder), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            proc.wait(timeout=delay)
            killed = False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = True
        if not killed and proc.returncode != 0:
            raise AssertionError(f"trial {trial}: compare failed: {proc.stderr.read().decode()[-2000:]}")
        finished = check_folder(folder)
        for arm_id, digest in seen.items():
            assert finished.get(arm_id) == digest, f"trial {trial}: finished arm {arm_id} was recomputed"
        new = sorted(set(finished) - set(seen))
        seen.update(finished)
        kills.append({"trial": trial, "delay_s": round(delay, 2), "killed": killed, "newly_finished": new})
        print(f"trial {trial}: {'killed' if killed else 'exited'} after {delay:.1f} s; finished now: {new}")
    start = time.perf_counter()
    final = subprocess.run(_command(folder), env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-2000:]
    finished = check_folder(folder)
    for arm_id, digest in seen.items():
        assert finished[arm_id] == digest, f"final run recomputed {arm_id}"
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "complete" and all(a["status"] == "complete" for a in results["arms"])
    return {
        "trials": kills,
        "kills": sum(k["killed"] for k in kills),
        "arms": len(results["arms"]),
        "finished_before_final_run": len(seen),
        "final_run_seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("/tmp/neftune-fault-injection-compare"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=45.0)
    args = parser.parse_args()
    summary = run_trials(args.out, args.trials, seed=args.seed, max_delay=args.max_delay)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
