"""The progress protocol (neftune.finetune.progress): running counts, the rich adapter, the producers' reports."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console
from rich.progress import Progress

from neftune.finetune.progress import RichBars, Tally


def _rich() -> Progress:
    return Progress(console=Console(file=io.StringIO()), auto_refresh=False)


def test_tally_reports_the_running_count_of_each_batch():
    seen = []
    tally = Tally(lambda *args, **fields: seen.append((args, fields)), "evaluate", total=7)
    tally.add(0)
    for n in (3, 3, 1):
        tally.add(n)
    assert seen == [(("evaluate", done, 7), {}) for done in (0, 3, 6, 7)]


def test_rich_bars_start_one_bar_per_stage_and_stack_them():
    bar = _rich()
    bars = RichBars(bar)
    bars("noise", 1, 3)
    bars("noise", 3, 3)
    bars("nearest", 10, 40)
    assert [(t.description, t.completed, t.total) for t in bar.tasks] == [
        ("noise", 3, 3),
        ("nearest", 10, 40),
    ]


def test_rich_bars_replace_the_previous_stage_and_draw_unknown_totals_open():
    bar = _rich()
    keep = bar.add_task("arms", total=2)
    bars = RichBars(bar, describe=lambda stage: f"a0: {stage}", replace=True)
    bars("train", 0, None)
    bars("train", 2, 0)  # transformers' max_steps 0: not known
    assert [(t.description, t.total) for t in bar.tasks] == [("arms", 2), ("a0: train", None)]
    bars("evaluate", 4, 12)
    assert bar.tasks[0].id == keep
    assert [(t.description, t.completed, t.total) for t in bar.tasks[1:]] == [("a0: evaluate", 4, 12)]


def test_rich_bars_show_fields_only_from_reports_that_carry_them():
    from neftune.cli.train import _loss_and_alpha

    bar = _rich()
    bars = RichBars(bar, show=_loss_and_alpha)
    bars("train", 0, 10)
    assert bar.tasks[0].fields == {"loss": "", "alpha": ""}, "blank columns until the first logged loss"
    bars("train", 2, 10, loss=1.23456, alpha=5.0)
    bars("train", 3, 10)  # a step without a log keeps the last loss shown
    assert bar.tasks[0].fields == {"loss": "loss 1.235", "alpha": "alpha 5"}
    bars("train", 4, 10, loss=0.5, alpha=None)
    assert bar.tasks[0].fields == {"loss": "loss 0.5", "alpha": ""}, "alpha None: no noise, no column"
    assert bar.tasks[0].completed == 4


def test_experiment_bars_follow_the_arm_and_its_stages(monkeypatch):
    from neftune.cli import grid as climod
    from neftune.experiments.plan import Arm
    from neftune.experiments.setting import Setting

    monkeypatch.setattr(climod, "console", Console(file=io.StringIO()))
    bar = _rich()
    bars = climod.ExperimentBars(bar, total=2)
    assert [t.description for t in bar.tasks] == ["arms", ""], "a blank run bar before the first arm"
    arm = Arm(Setting(5.0), 0)
    bars.arm_started(0, 2, arm)
    bars("train", 0, None)
    bars("train", 1, 2, loss=2.0, alpha=5.0)
    assert [(t.description, t.completed, t.total) for t in bar.tasks] == [
        ("arms", 0, 2),
        (f"{arm.id}: train", 1, 2),
    ]
    assert bar.tasks[1].fields == {"eta": ""}
    bars("evaluate", 0, 6)
    assert [t.description for t in bar.tasks] == ["arms", f"{arm.id}: evaluate"]


def test_training_callback_reports_steps_and_logged_losses():
    pytest.importorskip("transformers")
    from neftune.finetune.training import _progress_callback

    seen = []
    callback = _progress_callback(lambda *args, **fields: seen.append((args, fields)))
    state = SimpleNamespace(global_step=0, max_steps=4)
    callback.on_train_begin(None, state, None)
    state.global_step = 1
    callback.on_step_end(None, state, None)
    callback.on_log(None, state, None, logs={"loss": 2.5, "neftune/alpha": 5.0})
    callback.on_log(None, state, None, logs={"train_runtime": 1.0})  # the end-of-training summary
    callback.on_log(None, state, None, logs={"loss": 2.4})  # no noise: no alpha logged
    assert seen == [
        (("train", 0, 4), {}),
        (("train", 1, 4), {}),
        (("train", 1, 4), {"loss": 2.5, "alpha": 5.0}),
        (("train", 1, 4), {"loss": 2.4, "alpha": None}),
    ]
