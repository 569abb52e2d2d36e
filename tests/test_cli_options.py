"""The command line's shared options, one-line errors, help at 80 columns, config files (issue 24)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("typer")

#: What the arms of an experiment vary (or what only a single run has): not options of compare/sweep.
PER_RUN = {"alpha", "seed", "scaling", "out", "overwrite", "resume", "config", "help"}


def _commands():
    import typer.main

    from neftune.cli import app

    return typer.main.get_command(app).commands


def _params(name: str) -> dict:
    return {p.name: p for p in _commands()[name].params}


def _raw(*args, width: int = 100) -> tuple[int, str]:
    """(exit code, output as printed): for checks that need the line breaks."""
    from typer.testing import CliRunner

    from neftune.cli import app

    result = CliRunner().invoke(
        app, [str(a) for a in args], env={"COLUMNS": str(width)}, terminal_width=width
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


@pytest.mark.parametrize("grid", ["compare", "sweep"])
def test_compare_and_sweep_take_every_train_and_eval_option(grid):
    """Every option of train (but what the arms vary) and of eval, under the same declaration."""
    train, evaluate, command = _params("train"), _params("eval"), _params(grid)
    singular_in_grid = {"distribution": "distributions", "schedule": "schedules"} if grid == "sweep" else {}
    for name, param in train.items():
        if name in PER_RUN:
            continue
        name = singular_in_grid.get(name, name)
        assert name in command, f"{grid} has no --{name.replace('_', '-')}"
        if name in train and name not in singular_in_grid.values():
            assert command[name].opts == param.opts, name
            assert command[name].help == param.help, name
            assert command[name].rich_help_panel == param.rich_help_panel, name
    for name in set(evaluate) - PER_RUN - {"model", "as_json", "batch_size"}:
        assert name in command, f"{grid} has no eval option --{name.replace('_', '-')}"
        if name not in ("data", "seed", "field_map"):  # eval: defaults from the run; seed: --data-seed
            assert command[name].opts == evaluate[name].opts, name
    assert "--eval-batch-size" in command["eval_batch_size"].opts
    assert "--eval-batch-size" in evaluate["batch_size"].opts, "the same spelling works in eval"


def test_the_experiment_gets_every_given_option():
    """compare's options reach every arm: training ones in cfg.train, evaluation ones in cfg.eval;
    what is not given stays the preset's."""
    from neftune.cli.grid import experiment_config as _experiment_config
    from neftune.experiments.plan import IFEVAL_MAX_NEW_TOKENS

    given = {
        "lora": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": "q_proj", "field_map": "instruction=q",
        "assistant_turns": "last", "grad_accum": 2, "warmup_ratio": 0.1, "data_seed": 3, "padding_free": False,
        "schedule": "linear", "n_train_loss": 7, "eval_batch_size": 3, "repetition_penalty": 1.2,
        "seeds": "0", "alphas": "0,5",
    }  # fmt: skip
    cfg = _experiment_config("quick", given)
    t = cfg.train
    assert (t.lora, t.lora_r, t.lora_alpha, t.lora_target_modules) == (True, 4, 8, "q_proj")
    assert (t.field_map, t.assistant_turns, t.grad_accum, t.warmup_ratio) == ("instruction=q", "last", 2, 0.1)
    assert (t.data_seed, t.padding_free) == (3, False)
    assert (t.data, t.max_steps) == ("builtin:quick", 50), "not given: the preset's"
    assert cfg.schedules == ["linear"] and cfg.seeds == [0] and cfg.alphas == [0.0, 5.0]
    assert cfg.eval == {"n_generate": 60, "max_new_tokens": 48, "ifeval_max_new_tokens": IFEVAL_MAX_NEW_TOKENS,
                        "n_train_loss": 7, "batch_size": 3, "repetition_penalty": 1.2}  # fmt: skip
    assert _experiment_config("quick", {"epochs": 2.0}).train.max_steps == -1, "--epochs wins"


def test_mains_experiment_options_reach_the_experiment_and_its_config(tmp_path, monkeypatch):
    """--fixed-data, --ifeval (one absolute path), --dry-run/--pilot (never written) through the shared
    path: the experiment's config.yaml, read back with --config, gives the same experiment."""
    from neftune.cli.grid import experiment_config as _experiment_config
    from neftune.cli.grid import grid_values as _grid_values
    from neftune.finetune.configfile import resolve_paths, write_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "if.jsonl").write_text("{}\n")
    given = {"fixed_data": True, "ifeval": "if.jsonl", "dry_run": True, "pilot": "runs/p", "seeds": "0"}
    cfg = _experiment_config("quick", given)
    assert cfg.data_seeds == "fixed" and cfg.eval["ifeval"] == str((tmp_path / "if.jsonl").resolve())
    names = set(_params("compare"))
    values = _grid_values("compare", "quick", cfg, Path("runs/x"), True, names)
    assert values["fixed_data"] is True and values["ifeval"] == cfg.eval["ifeval"]
    assert "dry_run" not in values and "pilot" not in values
    import yaml

    path = write_config(tmp_path / "runs" / "x" / "config.yaml", values, command="compare")
    read = resolve_paths(yaml.safe_load(path.read_text()), path.parent)
    again = _experiment_config("quick", {k: read[k] for k in ("fixed_data", "ifeval")})
    assert (again.data_seeds, again.eval["ifeval"]) == ("fixed", cfg.eval["ifeval"])
    assert _experiment_config("quick", {}).data_seeds == "per_seed"


def test_help_lists_every_command():
    code, output = _raw("-h", width=80)
    assert code == 0 and max(len(line) for line in output.splitlines()) <= 80
    for command in _commands():
        assert re.search(rf"│ {command}\b", output), command
    assert {"ifeval", "llamafactory", "trl"} <= set(_commands())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--alpha", "abc"], "Invalid value for '--alpha': Input should be a valid number"),
        (
            ["train", "--lora-alpha", "abc"],
            "Invalid value for '--lora-alpha': Input should be a valid integer",
        ),
        (["compare", "--lora-r", "x"], "Invalid value for '--lora-r'"),
        (["sweep", "--eval-batch-size", "1.5"], "Invalid value for '--eval-batch-size'"),
        (["train", "--alpah", "5"], "No such option: --alpah"),
        (["eval"], "Missing option '--model'"),
        (["train", "--out"], "Option '--out' requires an argument"),
        (["nope"], "No such command 'nope'"),
        (["compare", "--pilot"], "Option '--pilot' requires an argument"),
        (["ifeval", "--input", "x.jsonl"], "Missing option '--responses'"),
    ],
)
def test_usage_errors_are_one_line(args, message):
    code, output = _raw(*args)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, output
    assert lines[0].startswith("Error: ") and message in lines[0], output
    assert "╭" not in output and "-h" in lines[0]


def test_a_bad_value_in_a_config_file_says_where_it_comes_from(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lora_alpha: sixteen\n")
    code, output = _raw("train", "--config", path)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "(the value comes from the --config file)" in lines[0], output


@pytest.mark.parametrize(
    "command", ["train", "eval", "export", "compare", "sweep", "analyze", "viz", "report", "ifeval"]
)
def test_help_at_80_columns_cuts_no_option_name(command):
    code, output = _raw(command, "-h", width=80)
    assert code == 0 and "…" not in output, output
    assert max(len(line) for line in output.splitlines()) <= 80
    for param in _commands()[command].params:
        for spelling in [*param.opts, *param.secondary_opts]:
            if spelling.startswith("--"):
                assert re.search(rf"(?<![\w-]){re.escape(spelling)}(?![\w-])", output), (command, spelling)


def test_compare_help_says_how_to_install_ray():
    code, output = _raw("compare", "-h", width=100)
    assert code == 0 and "pip install 'neftune[ray]'" in " ".join(output.replace("│", " ").split())


def test_version_imports_neither_torch_nor_the_command_line():
    """`neftune --version` answers before torch, typer or rich is imported (measured: 0.17 s)."""
    code = (
        "import sys; sys.argv = ['neftune', '--version']; from neftune.__main__ import main; main(); "
        "print(sorted(m for m in ('torch', 'typer', 'rich', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    version_line, imported = result.stdout.strip().splitlines()
    assert version_line.startswith("neftune ") and imported == "[]", result.stdout
    import neftune

    assert neftune.__version__ and callable(neftune.activate) and neftune.noise.EPS_VARIANCE


# --------------------------------------------------------------------------- config files


def _names(command: str) -> dict[str, str]:
    from neftune.cli.common import option_names as _option_names

    return _option_names(_commands()[command])


def test_trl_names_in_a_config_file():
    from neftune.finetune.configfile import read_options

    raw = {
        "model_name_or_path": "tiny", "dataset_name": "d.jsonl", "use_peft": True, "max_seq_length": 128,
        "neftune_noise_alpha": 5, "learning_rate": 1e-4, "output_dir": "runs/x",
    }  # fmt: skip
    values, notes = read_options(raw, _names("train"), source="--config c.yaml", command="train")
    assert values == {"model": "tiny", "data": "d.jsonl", "lora": True, "max_length": 128, "alpha": 5,
                      "lr": 1e-4, "out": "runs/x"}  # fmt: skip
    assert notes == [
        "neftune_noise_alpha is read as alpha: neftune adds its own per-sequence noise "
        "(transformers' neftune_noise_alpha hook is never used)"
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"packing": True}, "'packing' (TRL's; neftune trains padding-free batches (padding_free: true)"),
        ({"dataset_text_field": "text"}, "other column names: field_map"),
        ({"lerning_rate": 1}, "'lerning_rate' (did you mean learning_rate?)"),
        ({"max_seq_len": 1}, "(did you mean max_seq_length?)"),
        (
            {"model": "a", "model_name_or_path": "b"},
            "'model_name_or_path' sets 'model', which an earlier key",
        ),
    ],
)
def test_config_names_that_are_not_options_say_what_to_use(raw, message):
    from neftune.finetune.configfile import ConfigFileError, read_options

    with pytest.raises(ConfigFileError) as info:
        read_options(raw, _names("train"), source="--config c.yaml", command="train")
    assert message in str(info.value), str(info.value)


def test_a_runs_config_is_the_base_of_an_experiment(tmp_path):
    """`compare --config runs/a5/config.yaml`: the run's options, its alpha beside the baseline."""
    from dataclasses import asdict

    from neftune.finetune.configfile import read_options
    from neftune.finetune.training import TrainConfig

    run = asdict(TrainConfig(alpha=5.0, lora=True, lora_r=8, grad_accum=2, field_map="instruction=q", seed=3))
    for command, grid in (("compare", {"alphas": [0.0, 5.0], "distribution": "uniform", "schedule": None}),
                          ("sweep", {"alphas": [0.0, 5.0], "distributions": ["uniform"], "schedules": [None]})):  # fmt: skip
        values, notes = read_options(run, _names(command), source="--config r.yaml", command=command)
        for key, value in grid.items():
            assert values[key] == value, (command, key)
        assert values["scalings"] == ["per_sequence"]
        assert (values["lora"], values["lora_r"], values["grad_accum"]) == (True, 8, 2)
        assert values["field_map"] == "instruction=q"
        assert "seed" not in values and "out" not in values and "alpha" not in values
        assert notes == [
            "--config r.yaml is a run's: its alpha 5 is compared with the baseline (alphas 0,5); its seed and "
            "out are not used (the seeds come from --seeds / --preset, the experiment folder from --out)"
        ]


def test_relative_paths_in_a_config_file_are_read_from_its_folder(tmp_path, monkeypatch):
    from neftune.finetune.configfile import relative_paths, resolve_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "proj" / "data").mkdir(parents=True)
    (tmp_path / "proj" / "data" / "qa.csv").write_text("q,a\n")
    (tmp_path / "proj" / "model").mkdir()
    values = {"data": "data/qa.csv", "model": "model", "out": "../runs/a"}
    assert resolve_paths(values, Path("proj")) == {
        "data": str(Path("proj/data/qa.csv")), "model": str(Path("proj/model")), "out": str(Path("runs/a"))
    }  # fmt: skip
    names = {"data": "builtin:quick@3", "model": "tiny", "out": str(tmp_path / "abs")}
    assert resolve_paths(names, Path("proj")) == names, "presets, built-in data and absolute paths stay"
    assert resolve_paths({"model": "someone/model", "data": "someone/set"}, Path("proj")) == {
        "model": "someone/model", "data": "someone/set"
    }, "hub ids (nothing of that name beside the file) stay"  # fmt: skip
    written = relative_paths({"data": "proj/data/qa.csv", "out": "runs/a", "model": "tiny"}, Path("runs/a"))
    assert written == {"data": str(Path("../../proj/data/qa.csv")), "out": ".", "model": "tiny"}
    assert resolve_paths(written, Path("runs/a")) == {"data": str(Path("proj/data/qa.csv")), "out": "runs/a",
                                                      "model": "tiny"}, "what is written reads back"  # fmt: skip
