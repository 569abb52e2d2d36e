"""What ``compare`` and ``sweep`` share: their options' preset defaults, the experiment config from the
given options, the folder's preparation, the bars, the dry-run plan and the printed verdicts."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from ..finetune.configfile import CONFIG_NAME
from ..finetune.evaluation import EvalConfig
from ..finetune.progress import RichBars
from ..finetune.training import TrainConfig
from . import options as opts
from .common import TRAIN_DEFAULTS as _T
from .common import (
    LibraryLog,
    click_api,
    console,
    fail,
    listing,
    quiet_libraries,
    resume_command,
    tidy_paths,
    user_errors,
)

# --------------------------------------------------------------------------- experiments


class ExperimentBars:
    """Rich bars for :func:`neftune.experiments.run.run_experiment`: one across arms, one per run."""

    def __init__(self, bar, total: int, on_first=None) -> None:
        self.bar = bar
        self.on_first = on_first  # called once, when run_experiment has marked the folder as its own
        self.durations: list[float] = []
        self.done = 0
        self.total = total
        self.overall = bar.add_task("arms", total=total, eta="ETA after the first arm")
        self.arm = ""
        # One bar per stage of the arm running in this process (`ARM: start`, `ARM: train`, ...),
        # blank before the first; only the bar across arms fills the ETA column.
        self.run = RichBars(
            bar,
            describe=lambda stage: f"{self.arm}: {stage}" if stage else "",
            replace=True,
            show=lambda fields: {"eta": ""},
        )
        self.run("", 0, None)
        self.first_start = 0.0

    def _eta(self) -> str:
        if not self.durations:
            return "ETA after the first arm"
        # Wall time per finished arm since the first one started: right whether arms run one
        # after the other or several at once (--executor ray).
        per_arm = (time.monotonic() - self.first_start) / len(self.durations)
        left = (self.total - self.done) * per_arm
        return f"ETA {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"

    def _first(self) -> None:
        if self.on_first is not None:
            self.on_first()
            self.on_first = None

    def arm_started(self, index: int, total: int, arm) -> None:
        self._first()
        self.first_start = self.first_start or time.monotonic()
        self.arm = arm.id
        self.run("start", 0, None)

    def arm_skipped(self, index: int, total: int, arm) -> None:
        self._first()
        self.done += 1
        self.bar.update(self.overall, advance=1, eta=self._eta())

    def arm_finished(self, index: int, total: int, arm, seconds: float) -> None:
        self.done += 1
        self.durations.append(seconds)
        self.bar.update(self.overall, advance=1, eta=self._eta())
        console.print(f"finished {arm.id} in {seconds:.0f} s")

    def arm_retried(self, index: int, total: int, arm, attempt: int, where: str) -> None:
        console.print(f"[yellow]retrying[/] {arm.id} (attempt {attempt}, {where}): its previous worker died")

    def __call__(self, stage: str, done: int, total: int | None, **fields) -> None:
        self.run(stage, done, total)


def _prepare_experiment_folder(out: Path, overwrite: bool, protect: list[Path], cfg, kind: str) -> None:
    """Refuse a folder with other content; with ``overwrite``, remove only a previous experiment's entries."""
    from ..experiments.run import clear_experiment
    from ..finetune.outdirs import creation_problem, entries

    problem = creation_problem(out)
    if problem:
        fail(f"cannot use --out {out}: {problem}")
    present = entries(out)
    if not present:
        return
    if "experiment.json" not in present:
        did = (
            "--overwrite replaces only a previous neftune experiment, so nothing was deleted; "
            if overwrite
            else ""
        )
        fail(
            f"--out {out} is not empty and holds no neftune experiment (experiment.json); {did}neftune writes only "
            f"into a new or empty folder: choose another --out (e.g. {out / 'experiment'})"
        )
    if overwrite:
        kept = clear_experiment(out, protect)
        if kept:
            console.print(
                f"Kept (--overwrite removes only what neftune wrote): {escape(listing(kept))}",
                highlight=False,
                soft_wrap=True,
            )
        if entries(out):
            # The user's own files stay; mark the folder as a new experiment (experiments.run's own
            # record) so that run_experiment, which refuses a non-empty unmarked folder, takes it.
            from ..experiments.run import _check_experiment

            _check_experiment(out, cfg, kind)


def grid_values(kind: str, preset: str, cfg, out: Path, report: bool, names: set[str]) -> dict:
    """Every option of this experiment as resolved (preset filled in): what its config.yaml holds,
    so that ``--config`` of it runs (resumes) the same experiment. ``names``: the command's options."""
    from dataclasses import asdict

    from ..experiments.plan import SHARED_TRAIN_FIELDS

    values: dict = {"preset": preset, "alphas": list(cfg.alphas), "seeds": list(cfg.seeds)}
    if kind == "sweep":
        values["distributions"] = list(cfg.distributions)
        values["schedules"] = [s or "constant" for s in cfg.schedules]
    else:
        values["distribution"] = cfg.distributions[0]
        values["schedule"] = cfg.schedules[0] or "constant"
    values["scalings"] = ",".join(cfg.scalings)
    if "fixed_data" in names:
        values["fixed_data"] = cfg.data_seeds == "fixed"
    train = asdict(cfg.train)
    values.update({k: train[k] for k in SHARED_TRAIN_FIELDS if k in names})
    values.pop("epochs" if cfg.train.max_steps > 0 else "max_steps", None)  # the one not in effect
    for key, value in sorted(cfg.eval.items()):
        name = _EVAL_OPTION.get(key, key)
        if name in names:
            values[name] = value
    values.update(curve_every=cfg.curve_every, report=report, out=str(out))
    return values


#: ``ExperimentConfig.eval`` keys whose option has another name in compare and sweep.
_EVAL_OPTION = {"batch_size": "eval_batch_size"}


def _given(ctx: typer.Context, options: dict) -> dict:
    """The options the user set (command line or ``--config``), not left at their defaults."""
    ParameterSource = click_api().core.ParameterSource
    return {
        k: v for k, v in options.items() if ctx.get_parameter_source(k) not in (None, ParameterSource.DEFAULT)
    }


def experiment_config(preset: str, given: dict):
    """The :class:`~neftune.experiments.plan.ExperimentConfig` of ``--preset`` with every given option
    applied: grid options, training options (all of train's but what the arms vary) and evaluation ones."""
    from dataclasses import fields, replace

    from ..experiments.plan import ARM_FIELDS, from_preset, parse_floats, parse_names, parse_seeds

    cfg = from_preset(preset)
    if "alphas" in given:
        cfg.alphas = parse_floats(given["alphas"], "alphas")
    if "seeds" in given:
        cfg.seeds = parse_seeds(given["seeds"])
    if "distribution" in given:
        cfg.distributions = parse_names(given["distribution"], "distributions")[:1]
    if "distributions" in given:
        cfg.distributions = parse_names(given["distributions"], "distributions")
    if "schedule" in given:
        cfg.schedules = (
            [None] if given["schedule"] is None else parse_names(given["schedule"], "schedules")[:1]
        )
    if "schedules" in given:
        cfg.schedules = parse_names(given["schedules"], "schedules")
    if given.get("scalings") is not None:
        cfg.scalings = [str(x) for x in parse_names(given["scalings"], "scalings")]
    if given.get("curve_every") is not None:
        cfg.curve_every = given["curve_every"]
    if given.get("fixed_data"):
        cfg.data_seeds = "fixed"
    train_fields = {f.name for f in fields(TrainConfig)} - {*ARM_FIELDS, "scaling"}
    train = {k: v for k, v in given.items() if k in train_fields}
    if "epochs" in train and "max_steps" not in train:
        train["max_steps"] = -1  # --epochs given: train by epochs, not the preset's steps
    # None (compare's default of data, epochs, max_steps, batch_size): the preset's or TrainConfig's.
    required = ("model", "data", "lora", "epochs", "max_steps", "batch_size", "max_length")
    train = {k: v for k, v in train.items() if not (v is None and k in required)}
    cfg.train = replace(cfg.train, **train)
    eval_fields = {f.name for f in fields(EvalConfig)} - {"model", "data", "out", "seed", "field_map"}
    eval_fields -= {"trust_remote_code", "batch_size"}
    evals = {k: v for k, v in given.items() if k in eval_fields and v is not None}
    if given.get("eval_batch_size") is not None:
        evals["batch_size"] = given["eval_batch_size"]
    if evals.get("ifeval") is not None:  # the arms read it from their own folders: one absolute path
        evals["ifeval"] = str(Path(evals["ifeval"]).resolve())
    cfg.eval.update(evals)
    return cfg


def run_grid(kind: str, ctx: typer.Context, options: dict, always: tuple[str, ...] = ()) -> None:
    """compare / sweep: check everything, prepare ``--out``, run the arms, print the verdicts.

    ``always``: options applied even at their default (sweep's grid)."""
    import shlex

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..experiments.executors import make_executor
    from ..experiments.run import run_experiment
    from ..finetune.configfile import write_config
    from ..finetune.data.bundle import resolve_data
    from ..finetune.models import check_model
    from ..finetune.training import TrainingInterrupted

    out: Path = options["out"]
    try:
        runner = make_executor(
            options["executor"],
            address=options["ray_address"],
            cpus_per_arm=options["cpus_per_arm"],
            gpus_per_arm=options["gpus_per_arm"],
            max_retries=options["max_retries"],
        )
        given = tidy_paths({**_given(ctx, options), **{k: options[k] for k in always}})
        cfg = experiment_config(options["preset"], given)
        cfg.validate()
        if 0.0 not in cfg.alphas:
            fail(
                f"--alphas {','.join(f'{a:g}' for a in cfg.alphas)} has no baseline: add 0 (no noise), "
                f"e.g. --alphas 0,{','.join(f'{a:g}' for a in cfg.alphas)}; without it, {kind} cannot say "
                "whether the noise helped"
            )
        t = cfg.train
        # Bad data or model: refused before any folder changes.
        resolve_data(t.data, seed=t.data_seed, field_map=t.field_map)
        check_model(t.model)
    except user_errors() as exc:
        fail(str(exc))
    if options.get("dry_run"):
        _print_plan(kind, cfg, out, options.get("pilot"))
        return
    protect = [Path(p) for p in (cfg.train.data, cfg.train.model) if Path(p).exists()]
    _prepare_experiment_folder(out, options["overwrite"], protect, cfg, kind)
    n_arms = len(cfg.arms())
    console.print(
        f"neftune {kind}: {n_arms} arms ({len(cfg.settings())} settings x {len(cfg.seeds)} seeds) "
        f"of {cfg.train.model}{' (LoRA)' if cfg.train.lora else ''} on {cfg.train.data} -> {out}",
        soft_wrap=True,
        highlight=False,
    )
    values = grid_values(kind, options["preset"], cfg, out, options["report"], set(options))
    command = f"{resume_command(out, kind)} --out {shlex.quote(str(out))}"
    quiet_libraries()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
    )
    try:
        with LibraryLog(out, "experiment.json"), Progress(*columns, console=console) as bar:
            bars = ExperimentBars(
                bar, n_arms, on_first=lambda: write_config(out / CONFIG_NAME, values, command=kind)
            )
            results = run_experiment(
                cfg,
                out,
                kind=kind,
                command=command,
                overwrite=False,
                progress=bars,
                report=options["report"],
                executor=runner,
            )
    except KeyboardInterrupt as exc:
        where = ""
        if isinstance(exc, TrainingInterrupted):
            saved = (
                f"checkpoint of step {exc.checkpoint_step}" if exc.checkpoint_step else "no checkpoint yet"
            )
            where = f" (arm {exc.out.name} at step {exc.step}/{exc.total}, {saved})"
        console.print(
            f"[yellow]Interrupted[/]{escape(where)}; finished arms are kept in {escape(str(out))}. "
            f"Resume: {escape(resume_command(out, kind))}",
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(130) from None
    except user_errors() as exc:
        fail(str(exc))
    except Exception as exc:  # an arm crashed: say where, keep what finished
        fail(
            f"an arm failed ({type(exc).__name__}: {exc}); finished arms are kept in {out}. "
            f"Fix the cause and resume: {resume_command(out, kind)}",
            code=1,
        )
    write_config(out / CONFIG_NAME, values, command=kind)
    _print_experiment_summary(out, results, options["report"])


def _print_plan(kind: str, cfg, out: Path, pilot: Path | None) -> None:
    """``--dry-run``: what would run, how long it may take, and the effect it could detect."""
    import statistics

    from ..experiments.answers import load_experiment_answers
    from ..experiments.labels import setting_labels
    from ..experiments.plan import detectable_before_run
    from ..experiments.report import load_results
    from ..experiments.run import EXPERIMENT_FILE, finished_arms
    from ..experiments.stats import summarize

    settings = cfg.settings()
    labels = setting_labels(settings)
    n_arms = len(cfg.arms())
    design = (
        "every seed on the same data and evaluation prompts"
        if cfg.data_seeds == "fixed"
        else "seed s on data seed s (its own training data and evaluation prompts)"
    )
    lines = [
        f"neftune {kind} --dry-run: nothing is trained or written.",
        f"{n_arms} arms = {len(settings)} settings ({', '.join(labels[s] for s in settings)}) x {len(cfg.seeds)} seeds "
        f"({', '.join(map(str, cfg.seeds))}) of {cfg.train.model} on {cfg.train.data} -> {out}",
        f"Data: {design}.",
    ]
    done = finished_arms(out, cfg) if (out / EXPERIMENT_FILE).is_file() else []
    to_run = n_arms - len(done)
    if done:
        lines.append(
            f"Already finished in {out}: {len(done)} of them ({', '.join(a.id for a in done)}); "
            f"a run skips them and runs the other {to_run}."
        )
    source = pilot if pilot is not None else (out if (out / "results.json").is_file() else None)
    summary = None
    if source is not None:
        try:
            results = load_results(source)
            summary = summarize(results, answers=load_experiment_answers(source, results))
        except (ValueError, OSError) as exc:
            fail(f"--pilot {source}: {exc}")
        secs = [a["seconds"] for a in results["arms"] if isinstance(a.get("seconds"), (int, float))]
        if secs and summary.n_complete:
            median = statistics.median(secs)
            lines.append(
                f"Time: about {to_run * median / 60:.0f} min ({to_run} arms to run x the median {median:.0f} s of the "
                f"{len(secs)} arms of {source}; the same preset and machine are assumed)."
            )
        if not summary.n_complete:
            summary = None
        else:
            from ..finetune.evaluation import EvalConfig

            caps = {a.caps.get("ifeval") for a in summary.answers.values()} - {None}
            cap = int(cfg.eval.get("ifeval_max_new_tokens", EvalConfig(model="").ifeval_max_new_tokens))
            if caps and max(caps) < cap:
                lines.append(
                    f"Note: the pilot capped instruction answers at {max(caps)} new tokens, this run at {cap}: "
                    "its evaluations generate longer answers and take longer than the pilot's."
                )
    lines.append(detectable_before_run(cfg, summary, str(source)))
    for line in lines:
        console.print(escape(line), soft_wrap=True, highlight=False)


def _print_experiment_summary(out: Path, results: dict, report: bool) -> None:
    done = sum(a["status"] == "complete" for a in results["arms"])
    console.print(f"[green]Done:[/] {done}/{len(results['arms'])} arms in {out}")
    print_headline(results, out)
    if report:
        console.print(
            f"Report: {out / 'report' / 'report.html'}  (Markdown: {out / 'report' / 'summary.md'})"
        )
    else:
        console.print(f"Report: neftune report {out}")


def print_headline(results: dict, folder: Path | None = None) -> None:
    """The statistics' plain-words verdicts (and, for sweeps, the recommendation) on stdout; with
    ``folder``, from the arms' stored answers too, as the report computes them."""
    from ..experiments.answers import load_experiment_answers
    from ..experiments.findings import headline_sentences, recommend, status_sentence
    from ..experiments.informative import not_informative_reasons
    from ..experiments.stats import summarize

    summary = summarize(results, answers=load_experiment_answers(folder, results) if folder else None)
    reasons = not_informative_reasons(results)
    if reasons:
        lines = [
            status_sentence(summary),
            "Not informative, no verdict: "
            + "; ".join(reasons)
            + ". Train longer or on more data, then rerun.",
        ]
    else:
        lines = [status_sentence(summary), *headline_sentences(summary)]
    if results.get("kind") == "sweep" and summary.primary_metric and not reasons:
        lines.append("Recommendation: " + recommend(summary).reason)
    out = Console()
    for line in lines:
        if line:
            out.print("- " + escape(line), highlight=False)


# Options of compare and sweep whose default comes from --preset.
GridAlphas = opts.shown(opts.Alphas, opts.FROM_PRESET)
GridSeeds = opts.shown(opts.Seeds, opts.FROM_PRESET)
GridData = opts.shown(opts.Data, opts.FROM_PRESET)
GridEpochs = opts.shown(opts.Epochs, opts.FROM_PRESET)
GridMaxSteps = opts.shown(opts.MaxSteps, opts.FROM_PRESET)
GridBatchSize = opts.shown(opts.BatchSize, f"{opts.FROM_PRESET}, else {_T.batch_size}")
GridNGenerate = opts.shown(opts.NGenerate, opts.FROM_PRESET)
GridMaxNewTokens = opts.shown(opts.MaxNewTokens, opts.FROM_PRESET)
GridCurveEvery = opts.shown(opts.CurveEvery, opts.FROM_PRESET)
