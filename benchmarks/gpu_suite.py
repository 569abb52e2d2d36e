#!/usr/bin/env python
"""The GPU run in one command: environment, CUDA tests, hook probe, noise op, step overhead, throughput.

Each step runs in its own process under its own timeout, clipped to what is left of one overall
budget (``--budget-s``), and writes its JSON into ``--out`` as soon as it ends; ``suite.json``
(the environment and every step's status, time and log tail) is rewritten after each step and
``suite.log`` holds every step's full output. A step that fails or times out is recorded and the
suite goes on. Files (8 at most, what the device tool brings back; ``--tag v2`` names them
``noise_op-v2.json`` etc., to be committed as ``benchmarks/results/h200-<name>-v2.json``):

  suite.json  suite.log  gpu_tests.json  hook_probe.json  noise_op.json
  step_overhead_135m.json  step_overhead_1b.json  train_throughput.json

Steps, in order, sized for an 8-minute budget on an H200 (expected seconds in GPU_TIMEOUTS):
  env                  install the carried wheels (``--wheels DIR``, into ``--site``), record the
                       versions the steps will import and the GPU (nvidia-smi), check trl/datasets
  gpu_tests            ``pytest -m gpu`` on the test files holding CUDA-only tests, from JUnit XML
  hook_probe           probe_hook.py: host syncs, kernels, host latency and GPU time per noised forward
  noise_op             bench_noise_op.py: 8x2048x4096 bf16 and three more shapes, 15 interleaved
                       rounds of 20 calls: hook, torch path, fused kernel, first kernel, no-RNG control
  step_overhead_135m   bench_step_overhead.py, 135M shape, 4 x 2048, 10 rounds x 3 steps (first dropped)
  step_overhead_1b     the same, ~1B shape
  train_throughput     bench_train_throughput.py: ours vs TRL, padded and padding-free, each with
                       activation checkpointing off and on, 2 repeats (16 runs), ~1B, batch 16

``--dry`` runs the same steps with tiny sizes on the CPU (TRITON_INTERPRET=1), in about a
minute: the test suite runs it so this script cannot rot. How to prepare and launch the GPU call:
docs/performance.md ("Running the suite on the GPU machine").

    python3 benchmarks/gpu_suite.py --wheels .gpu/wheels --tokenizer .gpu/tokenizer --tag v2 --out $OUT
    python benchmarks/gpu_suite.py --dry --out /tmp/suite
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SRC = REPO / "src"

STEPS = (
    "env",
    "gpu_tests",
    "hook_probe",
    "noise_op",
    "step_overhead_135m",
    "step_overhead_1b",
    "train_throughput",
)
#: Each step's own timeout (s) on the GPU; the overall budget clips them. Expected on an H200
#: (from the first suite's runs, scaled to these sizes): env ~25, tests ~100 (Triton compiles),
#: probe ~20, noise op ~25, overhead ~25 + ~35, throughput ~210 (16 runs of ~13 s): ~440 in all.
GPU_TIMEOUTS = {
    "env": 90,
    "gpu_tests": 160,
    "hook_probe": 90,
    "noise_op": 120,
    "step_overhead_135m": 90,
    "step_overhead_1b": 120,
    "train_throughput": 300,
}
DRY_TIMEOUTS = dict.fromkeys(STEPS, 120)
#: Seconds kept back from the budget for writing the summary after the last step.
RESERVE_S = 5
LOG_TAIL = 3000

VERSION_MODULES = (
    "torch",
    "triton",
    "transformers",
    "trl",
    "datasets",
    "pyarrow",
    "peft",
    "accelerate",
    "tokenizers",
    "safetensors",
    "huggingface_hub",
    "numpy",
    "pytest",
)


@dataclass
class Step:
    name: str
    argv: list[str]  # run with this checkout's Python
    out: str | None  # JSON the step writes (None: the suite writes it)
    needs: str | None = None  # why it cannot run, decided before it starts
    extra: dict = field(default_factory=dict)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, payload: dict) -> None:
    """Atomic JSON write (temp file + rename) without importing neftune (the suite stays standalone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------ env step
def env_report() -> dict:
    """Versions as the steps will see them (run in a child with the steps' environment)."""
    import importlib
    import platform

    info: dict = {"python": platform.python_version(), "executable": sys.executable, "modules": {}}
    for name in VERSION_MODULES:
        try:
            mod = importlib.import_module(name)
            info["modules"][name] = {"version": getattr(mod, "__version__", "?"), "file": mod.__file__}
        except Exception as exc:  # record what is missing or broken; never fail the report
            info["modules"][name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    import torch

    info["cuda_available"] = torch.cuda.is_available()
    info["torch_cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "memory_gib": props.total_memory / 2**30,
            "multiprocessors": props.multi_processor_count,
            "capability": f"{props.major}.{props.minor}",
            "bf16": torch.cuda.is_bf16_supported(),
        }
    try:  # what the throughput step needs beyond the image: trl and datasets working together
        from datasets import Dataset
        from trl import SFTConfig  # noqa: F401

        Dataset.from_list([{"prompt": "a", "completion": "b"}])
        info["trl_datasets_ok"] = True
    except Exception as exc:
        info["trl_datasets_ok"] = False
        info["trl_datasets_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    from neftune.kernels import backend

    info["neftune_file"] = __import__("neftune").__file__
    info["FUSED_KERNEL_GPU_VERIFIED"] = backend.FUSED_KERNEL_GPU_VERIFIED
    return info


def nvidia_smi() -> str | None:
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit",
                "--format=csv",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return (out.stdout or out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable: {exc}"


# ------------------------------------------------------------------------------------ pytest summary
def junit_summary(xml_path: Path) -> dict:
    """Counts and failing test ids with their first message line, from pytest's JUnit XML."""
    root = ET.parse(xml_path).getroot()
    cases = root.iter("testcase")
    summary = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": [], "skips": {}}
    for case in cases:
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag: child for child in case}
        if "failure" in kinds or "error" in kinds:
            tag = "failure" if "failure" in kinds else "error"
            summary["failed" if tag == "failure" else "errors"] += 1
            msg = (kinds[tag].get("message") or kinds[tag].text or "").strip().splitlines()
            summary["failures"].append({"test": test_id, "message": msg[0][:500] if msg else ""})
        elif "skipped" in kinds:
            summary["skipped"] += 1
            reason = (kinds["skipped"].get("message") or "").strip()[:200]
            summary["skips"][reason] = summary["skips"].get(reason, 0) + 1
        else:
            summary["passed"] += 1
    return summary


# ------------------------------------------------------------------------------------ the plan
def json_name(stem: str, tag: str | None) -> str:
    """``noise_op.json``, or ``noise_op-v2.json`` with ``--tag v2``."""
    return f"{stem}-{tag}.json" if tag else f"{stem}.json"


def plan(args, out: Path, env_info: dict | None) -> list[Step]:
    py = [sys.executable]
    b = str(BENCH)
    if args.dry:
        probe = ["--device", "cpu", "--model", "tiny", "--batch", "2", "--seq", "32", "--iters", "5"]
        noise = ["--device", "cpu", "--shapes", "2x64x128", "--warmup", "1", "--rounds", "2", "--calls", "1"]
        noise += ["--threads", "1"]
        overhead = {m: ["--smoke", "--rounds", "2", "--threads", "1"] for m in ("135m", "1b")}
        tests = ["tests/test_kernels.py", "tests/test_backend_dispatch.py"]
        throughput = ["--smoke", "--variants", "ours_padding_free,trl_padding_free", "--repeats", "1"]
        throughput += ["--gradient-checkpointing", "on"]
    else:
        probe = ["--model", "135m", "--batch", "4", "--seq", "2048"]
        noise = ["--dtype", "bf16", "--shapes", "8x2048x4096,4x4096x8192,1x8192x16384,16x512x2048"]
        noise += ["--rounds", "15", "--calls", "20"]
        overhead = {
            m: [
                "--models",
                m,
                "--batch",
                "4",
                "--seq",
                "2048",
                "--rounds",
                str(args.rounds),
                "--steps-per-round",
                "3",
            ]
            for m in ("135m", "1b")
        }
        # The files that hold CUDA-only tests (collecting every test module would also need what
        # the others import); picks up gpu-marked tests added anywhere under tests/.
        tests = sorted(
            str(f.relative_to(REPO))
            for f in (REPO / "tests").glob("test_*.py")
            if "mark.gpu" in f.read_text()
        )
        throughput = ["--model", "1b", "--batch", "16", "--steps", str(args.steps), "--warmup", "3"]
        throughput += ["--records", "600", "--repeats", "2", "--gradient-checkpointing", "off,on"]
        throughput += ["--workdir", str(Path(tempfile.gettempdir()) / "neftune-bt")]
    if args.tokenizer is not None:
        throughput += ["--tokenizer", str(args.tokenizer)]

    name = functools.partial(json_name, tag=args.tag)
    junit = Path(tempfile.gettempdir()) / f"neftune-gpu-tests-{os.getpid()}.xml"
    steps = [
        Step("env", [], None),
        Step(
            "gpu_tests",
            [*py, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", f"--junitxml={junit}", *tests],
            None,
            extra={"junit": junit},
        ),
        Step(
            "hook_probe",
            [*py, f"{b}/probe_hook.py", *probe, "--out", str(out / name("hook_probe"))],
            name("hook_probe"),
        ),
        Step(
            "noise_op",
            [*py, f"{b}/bench_noise_op.py", *noise, "--out", str(out / name("noise_op"))],
            name("noise_op"),
        ),
    ]
    for m in ("135m", "1b"):
        step = f"step_overhead_{m}"
        steps.append(
            Step(
                step,
                [*py, f"{b}/bench_step_overhead.py", *overhead[m], "--out", str(out / name(step))],
                name(step),
            )
        )
    tt = Step(
        "train_throughput",
        [*py, f"{b}/bench_train_throughput.py", *throughput, "--out", str(out / name("train_throughput"))],
        name("train_throughput"),
    )
    if env_info is not None and not env_info.get("trl_datasets_ok", False):
        tt.needs = f"trl/datasets unusable: {env_info.get('trl_datasets_error')}"
    steps.append(tt)
    return steps


def child_env(args) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(SRC)]
    if args.site is not None and args.wheels is not None:
        paths.insert(0, str(args.site))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    if args.dry:
        env["TRITON_INTERPRET"] = "1"
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["OMP_NUM_THREADS"] = "1"  # tiny tensors: more threads only contend on a shared CPU
    else:
        env.pop("TRITON_INTERPRET", None)
    return env


def run_process(argv: list[str], env: dict, timeout: float, log) -> tuple[int | None, str, float]:
    """Run ``argv`` in its own process group; kill the group at ``timeout``. (rc or None, output, s)."""
    t0 = time.monotonic()
    log.write(f"\n===== {_now()} $ {shlex.join(argv)}\n")
    log.flush()
    with tempfile.TemporaryFile(mode="w+") as buf:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=buf, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc: int | None = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the step's own process group: its workers too
            proc.wait()
            rc = None
        buf.seek(0)
        output = buf.read()
    log.write(output)
    log.write(f"\n===== exit {rc if rc is not None else 'TIMEOUT'} after {time.monotonic() - t0:.1f} s\n")
    log.flush()
    return rc, output, time.monotonic() - t0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the JSON files and suite.log")
    p.add_argument("--dry", action="store_true", help="tiny sizes on the CPU (TRITON_INTERPRET=1)")
    p.add_argument("--wheels", type=Path, default=None, help="folder of carried wheels to install first")
    p.add_argument("--site", type=Path, default=Path("/tmp/neftune-site"), help="where the wheels go")
    p.add_argument("--tokenizer", type=Path, default=None, help="SmolLM2 tokenizer folder (throughput)")
    p.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget for all steps")
    p.add_argument("--only", default=None, help="comma list of steps to run (env always runs)")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds of the step-overhead steps")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps per throughput run (3 warm-up)")
    p.add_argument("--tag", default=None, help="suffix of the files written, e.g. v2: noise_op-v2.json")
    p.add_argument("--env-report", type=Path, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)

    if args.env_report is not None:  # child mode: write the versions the steps see
        _write_json(args.env_report, env_report())
        return 0

    start = time.monotonic()
    deadline = start + args.budget_s
    only = set(STEPS) if args.only is None else {"env", *args.only.split(",")}
    unknown = only - set(STEPS)
    if unknown:
        p.error(f"--only: unknown step(s) {sorted(unknown)}; steps are {', '.join(STEPS)}")
    if args.wheels is not None and not args.wheels.is_dir():
        p.error(f"--wheels {args.wheels}: no such folder")
    if args.tokenizer is not None and not (args.tokenizer / "tokenizer_config.json").exists():
        p.error(f"--tokenizer {args.tokenizer}: no tokenizer_config.json there")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    timeouts = DRY_TIMEOUTS if args.dry else GPU_TIMEOUTS
    env = child_env(args)
    summary: dict = {
        "suite": "gpu_suite",
        "dry": args.dry,
        "started": _now(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "budget_s": args.budget_s,
        "env": {},
        "steps": [],
        "finished": False,
    }
    summary_path = out / json_name("suite", args.tag)

    with open(out / f"suite{'-' + args.tag if args.tag else ''}.log", "a") as log:
        # ---- env: install wheels, then record versions as the steps will see them
        t0 = time.monotonic()
        record = {"name": "env", "status": "ok"}
        if args.wheels is not None:
            wheels = sorted(str(w) for w in args.wheels.glob("*.whl"))
            pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
            pip += ["--no-cache-dir", "--upgrade", "--target", str(args.site), *wheels]
            rc, output, _ = run_process(pip, env, min(timeouts["env"], deadline - time.monotonic()), log)
            summary["env"]["wheels"] = [Path(w).name for w in wheels]
            if rc != 0:
                record["status"] = "failed"
                record["log_tail"] = output[-LOG_TAIL:]
        report = Path(tempfile.gettempdir()) / f"neftune-env-{os.getpid()}.json"
        rc, output, _ = run_process(
            [sys.executable, __file__, "--out", str(out), "--env-report", str(report)], env, 120, log
        )
        if rc == 0:
            summary["env"].update(json.loads(report.read_text()))
            report.unlink()
        else:
            record["status"] = "failed"
            record["log_tail"] = output[-LOG_TAIL:]
        summary["env"]["nvidia_smi"] = nvidia_smi()
        record["seconds"] = time.monotonic() - t0
        summary["steps"].append(record)
        _write_json(summary_path, summary)

        for step in plan(args, out, summary["env"])[1:]:
            record = {"name": step.name}
            left = deadline - time.monotonic() - RESERVE_S
            if step.name not in only:
                record["status"] = "not selected"
            elif step.needs:
                record["status"] = "skipped"
                record["reason"] = step.needs
            elif left < 5:
                record["status"] = "skipped"
                record["reason"] = f"budget spent ({args.budget_s:.0f} s)"
            else:
                timeout = min(timeouts[step.name], left)
                if step.out is not None:
                    (out / step.out).unlink(missing_ok=True)  # a stale file must not pass for this run's
                rc, output, seconds = run_process(step.argv, env, timeout, log)
                record.update(
                    status="ok" if rc == 0 else ("timed_out" if rc is None else "failed"),
                    returncode=rc,
                    seconds=round(seconds, 1),
                    timeout_s=round(timeout, 1),
                    log_tail=output[-LOG_TAIL:],
                )
                if step.name == "gpu_tests":
                    junit = step.extra["junit"]
                    tests = {"command": shlex.join(step.argv), "status": record["status"]}
                    if junit.exists():
                        tests.update(junit_summary(junit))
                        junit.unlink()
                        if rc not in (0, 5):  # 5: no test collected (nothing marked gpu)
                            record["status"] = "failed"
                        elif rc == 5:
                            record["status"] = "ok"
                    _write_json(out / json_name("gpu_tests", args.tag), tests)
                    record["json"] = json_name("gpu_tests", args.tag)
                elif step.out is not None:
                    record["json"] = step.out
                    if not (out / step.out).exists():  # the script died before writing its JSON
                        _write_json(out / step.out, {"step": step.name, **record})
            summary["steps"].append(record)
            _write_json(summary_path, summary)
            status = record["status"] + (f" ({record['reason']})" if "reason" in record else "")
            print(f"{step.name:<20} {status:<10} {record.get('seconds', 0):>7.1f} s", flush=True)

    summary["finished"] = True
    summary["wall_s"] = round(time.monotonic() - start, 1)
    _write_json(summary_path, summary)
    failed = [s["name"] for s in summary["steps"] if s["status"] not in ("ok", "not selected")]
    print(f"suite: {summary['wall_s']} s; {'all steps ok' if not failed else 'not ok: ' + ', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
