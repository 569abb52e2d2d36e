"""Config files, familiar option names, help, console and nonsense values (issue 13, points 3, 4, 6, 7, 9)."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import yaml

from neftune.finetune.training import RUN_FILE, TrainConfig

from conftest import cli

pytest.importorskip("trl")
pytestmark = pytest.mark.usefixtures("neftune_cache")


def _train_command():
    import typer.main

    from neftune.cli import app

    return typer.main.get_command(app).commands["train"]


def test_every_train_config_field_is_one_option_with_its_default():
    """One definition per option: the command's parameters are TrainConfig's fields, same defaults."""
    params = {p.name: p for p in _train_command().params}
    for f in fields(TrainConfig):
        if f.name == "extra":
            continue
        assert f.name in params, f"TrainConfig.{f.name} has no --{f.name.replace('_', '-')}"
        default = params[f.name].default
        expected = getattr(TrainConfig(), f.name)
        assert (str(default) if f.name == "out" else default) == expected, f.name


def test_config_file_with_command_line_overrides_and_reproduction(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text(
        "model: tiny\nlearning_rate: 3.0e-4\nmax-steps: 2\nper_device_train_batch_size: 2\n"
        "max_length: 256\nalpha: 7\nschedule: linear\nlora: true\nlora_alpha: 8\n"
    )
    out = tmp_path / "a"
    code, text = cli("train", "--config", config, "--alpha", "3", "--output-dir", out)
    assert code == 0, text
    run = json.loads((out / RUN_FILE).read_text())["config"]
    assert run["alpha"] == 3.0, "the command line overrides the file"
    assert (run["lr"], run["max_steps"], run["batch_size"], run["schedule"]) == (3e-4, 2, 2, "linear")
    assert run["lora"] is True and run["lora_alpha"] == 8
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert set(written) == {f.name for f in fields(TrainConfig)} - {"extra"}
    assert written == {k: v for k, v in run.items() if k != "extra"}

    again = tmp_path / "b"
    code, text = cli("train", "--config", out / "config.yaml", "--out", again)
    assert code == 0, text
    rerun = json.loads((again / RUN_FILE).read_text())["config"]
    assert {**rerun, "out": None} == {**run, "out": None}, "config.yaml reproduces the run"

    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps({**written, "out": str(tmp_path / "c")}))
    code, text = cli("train", "--config", as_json)
    assert code == 0, text
    assert json.loads((tmp_path / "c" / RUN_FILE).read_text())["config"]["lr"] == 3e-4


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (
            "lerning_rate: 1e-4\nalpha: 5\nbogus: 1\n",
            "c.yaml",
            "unknown options for neftune train: 'lerning_rate' (did you mean learning_rate?), 'bogus'; known:",
        ),
        ("[1, 2]\n", "c.yaml", "expected a mapping of option names to values, got list"),
        ("alpha: [5\n", "c.yaml", "invalid YAML"),
        ("{", "c.json", "invalid JSON"),
        ("alpha: 5\nalpha_x: 1\n", "c.yml", "'alpha_x'"),
        (
            "lr: 1e-4\nlearning_rate: 2e-4\n",
            "c.yaml",
            "'learning_rate' sets 'lr', which an earlier key already set",
        ),
        ("alpha: strong\n", "c.yaml", "Invalid value for '--alpha'"),
    ],
)
def test_bad_config_files(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    code, text = cli("train", "--model", "tiny", "--config", path, "--out", tmp_path / "r")
    assert code == 2 and message in text, text
    assert not (tmp_path / "r").exists()


def test_missing_config_file(tmp_path):
    code, text = cli("train", "--config", tmp_path / "nope.yaml")
    assert code == 2 and "nope.yaml: no such file" in text, text


def test_sweep_config_round_trip_and_reproduce_line(tmp_path):
    """compare/sweep write their resolved options; `--config` of that file resumes the same grid."""
    out = tmp_path / "s"
    config = tmp_path / "grid.yaml"
    config.write_text(
        "model: tiny\nalphas: [0, 5]\ndistributions: uniform\nschedules: [constant]\nseeds: 1\n"
        "max_steps: 1\nbatch_size: 2\nmax_length: 256\nn_generate: 1\nmax_new_tokens: 2\ncurve_every: 0\n"
        "report: false\n"
    )
    code, text = cli("sweep", "--config", config, "--output-dir", out)
    assert code == 0, text
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["alphas"] == [0.0, 5.0] and written["seeds"] == [0] and written["out"] == str(out)
    assert written["schedules"] == ["constant"] and written["preset"] == "quick"
    results = json.loads((out / "results.json").read_text())
    assert results["command"] == f"neftune sweep --config {out / 'config.yaml'} --out {out}"
    code, text = cli("sweep", "--config", out / "config.yaml")
    assert code == 0 and "finished a" not in text, "the same experiment: nothing retrained"


@pytest.mark.parametrize("command", ["eval", "compare", "sweep"])
def test_config_unknown_keys_for_every_command(tmp_path, command):
    path = tmp_path / "c.yaml"
    path.write_text("model: tiny\nnot_an_option: 1\n")
    code, text = cli(command, "--config", path)
    assert code == 2 and f"unknown option for neftune {command}: 'not_an_option'" in text, text


def test_version_and_short_help():
    from importlib.metadata import PackageNotFoundError, version

    code, text = cli("--version")
    try:
        expected = version("neftune")
    except PackageNotFoundError:
        expected = "(not installed)"
    assert code == 0 and text == f"neftune {expected}"
    code, text = cli("train", "-h")
    assert code == 0 and "--learning-rate" in text


def test_help_shows_defaults_groups_and_presets():
    import re

    from typer.testing import CliRunner

    from neftune.cli import app

    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "100"}, terminal_width=100)
    text = result.output
    flat = re.sub(r"[\s│]+", " ", text)
    for panel in ("Model", "Data", "Noise", "Training", "LoRA", "Output"):
        assert f"╭─ {panel} " in text, panel
    for param in _train_command().params:
        if param.name in ("help", "config", "overwrite", "resume") or param.default in (None, False):
            continue
        default = param.default
        shown = (
            {True: param.opts[0][2:], False: None}.get(default, default)
            if isinstance(default, bool)
            else default
        )
        assert f"[default: {shown}]" in flat, (param.name, shown)
    assert "[default: (2 x --lora-r)]" in flat and "Not the noise: that is --alpha" in flat
    for alias in ("--output-dir", "--learning-rate", "--num-train-epochs", "--per-device-train-batch-size",
                  "--gradient-accumulation-steps", "--warmup-ratio", "--lr-scheduler-type", "--report-to",
                  "--lora-alpha", "--lora-dropout", "--lora-target-modules"):  # fmt: skip
        assert alias in flat, alias
    assert not re.search(r"\[default: \]|\[\s+default", text)

    compare = re.sub(
        r"[\s│]+", " ", CliRunner().invoke(app, ["compare", "--help"], terminal_width=100).output
    )
    assert "quick: builtin:quick, alphas 0,10 x 3 seeds, 50 steps" in compare
    assert "standard: builtin:standard, alphas 0,5,10,15 x 3 seeds, 1 epoch, batch 16" in compare


def test_transformers_spellings_and_console(tmp_path):
    """TRL's option names mean the same; the console shows a header, one bar and a summary."""
    out = tmp_path / "run"
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"instruction": f"Say {i}", "output": f"{i}"} for i in range(5)]))
    code, text = cli(
        "train", "--model", "tiny", "--data", data, "--max-length", "256", "--max-steps", "3",
        "--output-dir", out, "--learning-rate", "1e-3", "--num-train-epochs", "2",
        "--per-device-train-batch-size", "8", "--gradient-accumulation-steps", "1", "--warmup-ratio", "0.1",
        "--lr-scheduler-type", "linear", "--report-to", "none", "--lora", "--lora-alpha", "4",
        "--lora-dropout", "0.1", "--lora-target-modules", "q_proj,v_proj",
    )  # fmt: skip
    assert code == 0, text
    cfg = json.loads((out / RUN_FILE).read_text())["config"]
    assert (cfg["lr"], cfg["epochs"], cfg["batch_size"], cfg["warmup_ratio"]) == (1e-3, 2.0, 8, 0.1)
    assert (cfg["lr_scheduler_type"], cfg["lora_alpha"], cfg["lora_dropout"]) == ("linear", 4, 0.1)
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"] and adapter["lora_alpha"] == 4
    assert adapter["base_model_name_or_path"] == "tiny", "a name that loads elsewhere, not a cache path"

    assert "neftune train: tiny (LoRA r=16)" in text and "4 training records, 1 held out" in text
    assert "3 steps (batch 8 x accumulation 1)" in text and "on cpu" in text
    assert "Note: a step takes 8 sequences" in text, "batch larger than the data is pointed out"
    assert "training" in text and "3/3" in text and "Done in" in text and "Next: neftune eval" in text
    for noise in ("{'loss'", "Tokenizing", "Writing model shards", "Loading weights", "it/s"):
        assert noise not in text, noise
    assert (out / "neftune.log").stat().st_size > 0
    log = json.loads((out / "train_log.json").read_text())
    assert sum("loss" in row for row in log) == 3, "a 3-step run logs its loss every step"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-steps", "0"], "max_steps must be >= 1, or -1 to train by epochs; got 0"),
        (["--max-steps", "-5"], "max_steps must be >= 1, or -1 to train by epochs; got -5"),
        (["--warmup-ratio", "1.5"], "warmup_ratio must be in [0, 1), got 1.5"),
        (["--lora-dropout", "1"], "lora_dropout must be in [0, 1), got 1.0"),
        (["--lora-alpha", "0"], "lora_alpha must be > 0, got 0"),
        (["--lr-scheduler-type", "sawtooth"], "unknown lr_scheduler_type 'sawtooth'"),
        (["--report-to", "carrier-pigeon"], "unknown report_to 'carrier-pigeon'"),
    ],
)
def test_values_that_make_no_sense(tmp_path, args, message):
    code, text = cli("train", "--model", "tiny", "--out", tmp_path / "r", *args)
    assert code == 2 and message in text, text
    assert not (tmp_path / "r").exists()


def test_report_to_a_backend_that_is_not_installed(tmp_path):
    from transformers.integrations.integration_utils import get_available_reporting_integrations

    if "wandb" in get_available_reporting_integrations():
        pytest.skip("wandb is installed here")
    code, text = cli("train", "--model", "tiny", "--report-to", "wandb", "--out", tmp_path / "r")
    assert code == 2 and "the wandb package is not installed here (pip install wandb)" in text, text


def test_export_merges_a_lora_run_into_a_standalone_model(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from neftune.finetune.evaluation import load_for_eval
    from neftune.finetune.models import resolve_model

    run = tmp_path / "run"
    code, text = cli(
        "train", "--model", "tiny", "--lora", "--max-steps", "2", "--batch-size", "2", "--max-length", "256",
        "--lr", "1e-2", "--out", run,
    )  # fmt: skip
    assert code == 0, text
    out = tmp_path / "merged"
    code, text = cli("export", "--model", run, "--no-merge", "--out", out)
    assert code == 2 and "export it with --merge" in text, text
    code, text = cli("export", "--model", run, "--merge", "--out", out)
    assert code == 0 and "Exported base model with the LoRA adapter merged in" in text, text
    assert not (out / "adapter_config.json").exists()
    exported = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no PEFT
    merged, _ = load_for_eval(str(run))
    base = AutoModelForCausalLM.from_pretrained(resolve_model("tiny"))
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        got, want, before = (m.eval()(ids).logits for m in (exported, merged, base))
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, before, atol=1e-4), "the adapter's training changed the model"
    code, text = cli("export", "--model", run, "--out", out)
    assert code == 2 and "is not empty" in text


def test_not_informative_reasons():
    from neftune.experiments.informative import not_informative_reasons

    def arm(length, acc, loss, status="complete"):
        return {
            "status": status,
            "eval": {"length_chars": length, "accuracy/x": acc},
            "train": {"train_loss": loss},
        }

    assert not_informative_reasons({"arms": [arm(12.0, 0.3, 1.2), arm(10.0, 0.0, 1.1)]}) == []
    reasons = not_informative_reasons({"arms": [arm(0.0, 0.0, float("nan")), arm(0.0, 0.0, None)]})
    assert [r.split()[0] for r in reasons] == ["every", "accuracy", "no"]
    assert not_informative_reasons({"arms": [arm(0.0, 0.0, None, status="pending")]}) == []
