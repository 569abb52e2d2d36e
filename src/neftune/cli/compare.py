"""``neftune compare``: every (setting, seed) arm against the baseline, the same in all else."""

from __future__ import annotations

from pathlib import Path

import typer

from . import options as opts
from .common import EVAL_DEFAULTS as _E
from .common import TRAIN_DEFAULTS as _T
from .common import Config
from .grid import (
    GridAlphas,
    GridBatchSize,
    GridCurveEvery,
    GridData,
    GridEpochs,
    GridMaxNewTokens,
    GridMaxSteps,
    GridNGenerate,
    GridSeeds,
    run_grid,
)


def compare(
    ctx: typer.Context,
    preset: opts.Preset = "quick",
    model: opts.Model = _T.model,
    data: GridData = None,
    alphas: GridAlphas = None,
    seeds: GridSeeds = None,
    distribution: opts.Distribution = _T.distribution,
    scalings: opts.Scalings = None,
    out: opts.ExperimentOut = Path("runs/compare"),
    lora: opts.Lora = _T.lora,
    epochs: GridEpochs = None,
    max_steps: GridMaxSteps = None,
    lr: opts.Lr = _T.lr,
    batch_size: GridBatchSize = None,
    max_length: opts.MaxLength = _T.max_length,
    n_generate: GridNGenerate = None,
    max_new_tokens: GridMaxNewTokens = None,
    repetition_penalty: opts.RepetitionPenalty = _E.repetition_penalty,
    curve_every: GridCurveEvery = None,
    eval_batch_size: opts.EvalBatchSize = _E.batch_size,
    ifeval: opts.IfevalFile = None,
    overwrite: opts.ExperimentOverwrite = False,
    report: opts.Report = True,
    config: Config = None,
    executor: opts.Executor = "local",
    ray_address: opts.RayAddress = None,
    cpus_per_arm: opts.CpusPerArm = 1.0,
    gpus_per_arm: opts.GpusPerArm = None,
    max_retries: opts.MaxRetries = 2,
    fixed_data: opts.FixedData = False,
    dry_run: opts.DryRun = False,
    pilot: opts.Pilot = None,
    # Every other option of train and eval (what the arms vary aside), the same in every arm.
    schedule: opts.Schedule = _T.schedule,
    trust_remote_code: opts.TrustRemoteCode = _T.trust_remote_code,
    data_seed: opts.DataSeed = _T.data_seed,
    field_map: opts.FieldMap = _T.field_map,
    padding_free: opts.PaddingFree = _T.padding_free,
    assistant_turns: opts.AssistantTurns = _T.assistant_turns,
    backend: opts.Backend = _T.backend,
    lr_scheduler_type: opts.LrSchedulerType = _T.lr_scheduler_type,
    warmup_ratio: opts.WarmupRatio = _T.warmup_ratio,
    grad_accum: opts.GradAccum = _T.grad_accum,
    bf16: opts.Bf16 = _T.bf16,
    lora_r: opts.LoraR = _T.lora_r,
    lora_alpha: opts.LoraAlpha = _T.lora_alpha,
    lora_dropout: opts.LoraDropout = _T.lora_dropout,
    lora_target_modules: opts.LoraTargetModules = _T.lora_target_modules,
    n_train_loss: opts.NTrainLoss = _E.n_train_loss,
    logging_steps: opts.LoggingSteps = _T.logging_steps,
    save_steps: opts.SaveSteps = _T.save_steps,
    report_to: opts.ReportTo = _T.report_to,
) -> None:
    """Train and evaluate every (alpha, seed) arm, everything else identical; report what differs beyond
    seed noise. Takes every option of train and eval; --config RUN/config.yaml compares that run's setting
    (LoRA, learning rate, data, field map, ...) with the baseline."""
    options = dict(locals())
    del options["ctx"]
    run_grid("compare", ctx, options)
