"""`neftune compare` / `sweep` orchestration: planning, resume, refusal of mixed options, failures."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from neftune.experiments import run as runmod
from neftune.experiments.plan import (
    Arm,
    ExperimentConfig,
    from_preset,
    parse_floats,
    parse_names,
    parse_seeds,
)
from neftune.experiments.run import ARM_FILE, RESULTS_FILE, NullProgress, run_experiment
from neftune.experiments.setting import Setting
from neftune.finetune.training import RunError

from conftest import tiny_experiment

pytest.importorskip("trl")
pytestmark = pytest.mark.usefixtures("neftune_cache")


class Recorder(NullProgress):
    """A Progress that remembers which arms ran and which were skipped, and the training steps."""

    def __init__(self):
        self.started, self.skipped, self.steps = [], [], []

    def arm_started(self, index, total, arm):
        self.started.append(arm.id)

    def arm_skipped(self, index, total, arm):
        self.skipped.append(arm.id)

    def __call__(self, stage, done, total, **fields):
        if stage == "train":
            self.steps.append((done, total))


# --------------------------------------------------------------------------- planning (no training)


def test_settings_put_the_baseline_once_and_first():
    cfg = ExperimentConfig(
        alphas=[10.0, 0.0, 5.0],
        seeds=[0, 1],
        distributions=["uniform", "gaussian"],
        schedules=[None, "linear"],
    )
    settings = cfg.settings()
    assert settings[0] == Setting(0.0) and sum(s.is_no_noise for s in settings) == 1
    assert len(settings) == 1 + 2 * 2 * 2
    arms = cfg.arms()
    assert len(arms) == len(settings) * 2
    assert len({a.id for a in arms}) == len(arms), "arm ids are unique"
    assert [a.seed for a in arms[: len(settings)]] == [0] * len(settings), "seed-major order"


def test_arm_ids_are_filesystem_safe():
    arm = Arm(Setting(7.5, "symmetric", "warmup:0.2"), 3)
    assert arm.id == "a7.5-symmetric-warmup0.2-s3"
    assert Arm(Setting(5.0, "uniform", None), 0).id == "a5-uniform-constant-s0"


def test_scalings_run_every_noisy_setting_with_each_scaling():
    cfg = ExperimentConfig(alphas=[0.0, 5.0, 10.0], seeds=[0], scalings=["per_sequence", "batch"])
    settings = cfg.settings()
    assert settings == [
        Setting(0.0),
        Setting(5.0, scaling="per_sequence"),
        Setting(5.0, scaling="batch"),
        Setting(10.0, scaling="per_sequence"),
        Setting(10.0, scaling="batch"),
    ]
    ids = [a.id for a in cfg.arms()]
    assert ids[1:3] == ["a5-uniform-constant-s0", "a5-uniform-constant-batch-s0"], "default ids unchanged"
    batch = cfg.train_config(cfg.arms()[2], "x")
    assert batch.scaling == "batch" and batch.padding_free, "padding-free batches: where the scalings differ"
    # The dict form round-trips and leaves the default out (older results read the same).
    assert Setting(5.0).to_dict() == {"alpha": 5.0, "distribution": "uniform", "schedule": None}
    assert Setting.from_mapping(Setting(5.0, scaling="batch").to_dict()) == Setting(5.0, scaling="batch")


def test_scalings_at_some_alphas_only():
    # The scaling study: the baseline, alpha 10 per-sequence and alpha 10 with transformers' batch
    # scaling; and the GPU grid, alphas 0/5/10/15 per-sequence plus alpha 10 batch-scaled.
    cfg = ExperimentConfig(alphas=[0.0, 10.0], seeds=[0], scalings=["per_sequence", "batch"])
    assert cfg.settings() == [Setting(0.0), Setting(10.0), Setting(10.0, scaling="batch")]
    gpu = ExperimentConfig(alphas=[0.0, 5.0, 10.0, 15.0], seeds=[0], scalings=["per_sequence", "batch@10"])
    gpu.validate()
    assert gpu.settings() == [
        Setting(0.0),
        Setting(5.0),
        Setting(10.0),
        Setting(10.0, scaling="batch"),
        Setting(15.0),
    ]
    assert gpu.train_config(Arm(Setting(10.0, scaling="batch"), 0), "x").padding_free
    with pytest.raises(RunError, match="alpha 7 is not a noisy alpha"):
        replace(gpu, scalings=["per_sequence", "batch@7"]).validate()
    with pytest.raises(RunError, match="batch@10"):
        replace(gpu, scalings=["batch@ten"]).validate()


def test_each_seed_draws_its_own_data_and_prompts_unless_fixed():
    from neftune.finetune.data.bundle import resolve_data
    from neftune.finetune.training import TrainConfig

    cfg = ExperimentConfig(seeds=[0, 1], train=TrainConfig(data="builtin:quick"))
    arm0, arm1 = Arm(Setting(0.0), 0), Arm(Setting(5.0), 1)
    assert cfg.arm_data(arm0) == ("builtin:quick@0", 0) and cfg.arm_data(arm1) == ("builtin:quick@1", 1)
    tc = cfg.train_config(arm1, "x")
    assert (tc.data, tc.data_seed) == ("builtin:quick@1", 1)
    # Seed 0's data is the data of before (builtin:quick is builtin:quick@0); seed 1 has other prompts.
    prompts = [
        [r.messages[0]["content"] for r in resolve_data(spec).ifeval["ifeval_seen_types"]]
        for spec in ("builtin:quick", "builtin:quick@0", "builtin:quick@1")
    ]
    assert prompts[0] == prompts[1] and not set(prompts[0]) & set(prompts[2])
    fixed = replace(cfg, data_seeds="fixed")
    assert fixed.arm_data(arm1) == ("builtin:quick", 0)
    assert replace(cfg, train=TrainConfig(data="builtin:quick@7")).arm_data(arm1) == ("builtin:quick@7", 1)
    assert replace(cfg, train=TrainConfig(data="my.jsonl")).arm_data(arm1) == ("my.jsonl", 1)
    with pytest.raises(RunError, match="data_seeds must be one of"):
        replace(cfg, data_seeds="sometimes").validate()


def test_experiments_from_before_data_seeds_resume_as_fixed():
    from neftune.experiments.run import _default_shared, _differences, _upgraded

    old = {k: v for k, v in tiny_experiment().shared().items() if k != "data_seeds"}
    assert _upgraded(old)["data_seeds"] == "fixed"
    # Resuming one with today's default would mix designs: refused, with the option named.
    assert _differences(_upgraded(old), tiny_experiment().shared(), _default_shared()) == [
        "data_seeds: 'fixed' then, 'per_seed' now"
    ]
    assert _differences(_upgraded(old), tiny_experiment(data_seeds="fixed").shared(), _default_shared()) == []


def test_train_config_varies_only_the_arm_fields():
    cfg = tiny_experiment()
    tc = cfg.train_config(Arm(Setting(5.0, "gaussian", "cosine"), 4), "x")
    assert (tc.alpha, tc.distribution, tc.schedule, tc.seed, tc.out) == (5.0, "gaussian", "cosine", 4, "x")
    assert tc.model == "tiny" and tc.max_steps == 2


def test_parsers():
    assert parse_floats("0, 5,10", "alphas") == [0.0, 5.0, 10.0]
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("0,4,7") == [0, 4, 7]
    assert parse_names("constant,linear", "schedules") == [None, "linear"]
    with pytest.raises(RunError, match="alphas must be comma-separated numbers"):
        parse_floats("5,x", "alphas")
    assert parse_seeds("0") == [0], "--seeds 0 is the seed 0 (a count of 0 seeds means nothing)"
    with pytest.raises(RunError, match="seeds must be a count"):
        parse_seeds("-1")
    with pytest.raises(RunError, match="unknown preset"):
        from_preset("huge")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"alphas": []}, "at least one alpha"),
        ({"alphas": [0.0, -1.0]}, "alphas must be >= 0"),
        ({"alphas": [5.0, 5.0]}, "duplicates"),
        ({"seeds": [1, 1]}, "duplicates"),
        ({"distributions": ["laplace"]}, "unknown distributions"),
        ({"schedules": ["sawtooth"]}, "schedule"),
        ({"eval": {"temperature": 0.7}}, "unknown eval options"),
        ({"eval": {"n_generate": -1}}, "n_generate must be >= 0, got -1"),
        ({"eval": {"repetition_penalty": 0.0}}, "repetition_penalty must be a finite number > 0"),
        ({"curve_every": -1}, "curve-every"),
        ({"scalings": ["padded"]}, "unknown scalings"),
        ({"scalings": ["batch", "batch"]}, "without duplicates"),
        ({"scalings": []}, "without duplicates"),
    ],
)
def test_bad_experiment_options(change, message):
    with pytest.raises((RunError, ValueError, TypeError), match=message):
        replace(tiny_experiment(), **change).validate()


def test_presets_are_valid():
    for name in ("quick", "standard", "full"):
        cfg = from_preset(name)
        cfg.validate()
        assert cfg.settings()[0].is_no_noise and len(cfg.seeds) >= 3


# --------------------------------------------------------------------------- running (tiny model)


def test_compare_runs_resumes_and_refuses_mixed_options(tmp_path):
    folder = tmp_path / "cmp"
    rec = Recorder()
    results = run_experiment(
        tiny_experiment(), folder, command="neftune compare ...", progress=rec, report=False
    )
    assert results["status"] == "complete" and results["schema"] == "neftune.results/1"
    assert rec.started == ["a0-uniform-constant-s0", "a5-uniform-constant-s0"]
    assert (2, 2) in rec.steps, "training reports its steps through the experiment"
    assert results["baseline"] == {"alpha": 0.0, "distribution": "uniform", "schedule": None}
    assert results["config"]["primary_metric"] == "ifeval/prompt_strict"
    on_disk = json.loads((folder / RESULTS_FILE).read_text())
    assert on_disk["arms"] == results["arms"]
    for arm in results["arms"]:
        assert arm["status"] == "complete" and arm["train"]["global_step"] == 2
        for key in ("loss/train", "loss/eval_heldout_templates", "accuracy/eval_heldout_families"):
            assert key in arm["eval"]
        assert [s for s, _ in arm["curves"]["train_loss"]] == [1, 2]
        steps = [p["step"] for p in arm["curves"]["eval"]]
        assert steps == [0, 1, 2], "noise-off curve points at step 0 and every curve_every steps"
        assert "accuracy/eval_heldout_templates" in arm["curves"]["eval"][-1]
    noised = results["arms"][1]
    log = json.loads((folder / noised["dir"] / "train_log.json").read_text())
    assert any(row.get("neftune/alpha") == 5.0 for row in log), "the noised arm trained with alpha 5"
    baseline_log = json.loads((folder / results["arms"][0]["dir"] / "train_log.json").read_text())
    assert not any(row.get("neftune/alpha") for row in baseline_log)

    # A rerun recomputes nothing.
    arm_files = sorted(folder.glob(f"arms/*/{ARM_FILE}"))
    stamps = [p.stat().st_mtime_ns for p in arm_files]
    rec2 = Recorder()
    again = run_experiment(tiny_experiment(), folder, progress=rec2, report=False)
    assert rec2.started == [] and len(rec2.skipped) == 2
    assert [p.stat().st_mtime_ns for p in arm_files] == stamps
    assert [a["eval"] for a in again["arms"]] == [a["eval"] for a in results["arms"]]

    # A broken arm (evaluation lost) is redone from its evaluation: the training is kept.
    broken = folder / noised["dir"]
    (broken / ARM_FILE).unlink()
    (broken / "eval" / "eval.json").unlink()
    run_file = broken / "neftune_run.json"
    trained_at = run_file.stat().st_mtime_ns
    rec3 = Recorder()
    redone = run_experiment(tiny_experiment(), folder, progress=rec3, report=False)
    assert rec3.started == [noised["id"]] and rec3.steps == [], "no training step was redone"
    assert run_file.stat().st_mtime_ns == trained_at
    assert redone["status"] == "complete" and (broken / "eval" / "eval.json").exists()

    # A changed training option is refused. (Seeds and alphas are not among the stored options, so
    # more of them would add arms instead; not run here, as that means training another arm.)
    with pytest.raises(RunError, match="max_steps: 2 then, 3 now"):
        run_experiment(
            replace(tiny_experiment(), train=replace(tiny_experiment().train, max_steps=3)),
            folder,
            report=False,
        )


def test_failed_arm_is_recorded_and_resumed(tmp_path, monkeypatch):
    folder = tmp_path / "cmp"
    real = runmod.run_arm

    def flaky(cfg, arm, *args, **kw):
        if arm.setting.alpha == 5.0:
            raise RuntimeError("out of memory (simulated)")
        return real(cfg, arm, *args, **kw)

    monkeypatch.setattr(runmod, "run_arm", flaky)
    with pytest.raises(RuntimeError, match="simulated"):
        run_experiment(tiny_experiment(curve_every=0), folder, report=False)
    results = json.loads((folder / RESULTS_FILE).read_text())
    assert results["status"] == "running"
    assert [a["status"] for a in results["arms"]] == ["complete", "failed"]
    assert "out of memory" in results["arms"][1]["error"]

    monkeypatch.setattr(runmod, "run_arm", real)
    rec = Recorder()
    done = run_experiment(tiny_experiment(curve_every=0), folder, progress=rec, report=False)
    assert done["status"] == "complete" and rec.started == ["a5-uniform-constant-s0"]
    assert done["arms"][0]["curves"]["eval"] == [], "curve_every 0 measures no curve"


def test_refuses_a_folder_that_is_not_an_experiment(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(RunError, match="holds no neftune experiment"):
        run_experiment(tiny_experiment(), folder, report=False)
    assert (folder / "notes.txt").read_text() == "keep me"
    assert os.listdir(folder) == ["notes.txt"]


def test_options_added_by_a_later_version_count_as_their_default():
    from neftune.experiments.run import _differences

    old = {"train": {"max_steps": 50}, "curve_every": 25}
    defaults = {"train": {"max_steps": -1, "backend": "auto"}, "curve_every": 10}
    same = {"train": {"max_steps": 50, "backend": "auto"}, "curve_every": 25}
    assert _differences(old, same, defaults) == []
    changed = {"train": {"max_steps": 50, "backend": "torch"}, "curve_every": 25}
    assert _differences(old, changed, defaults) == ["train.backend: 'auto' then, 'torch' now"]


def test_library_overwrite_never_deletes_a_users_files(tmp_path):
    """run_experiment(overwrite=True) replaces only a previous experiment, like the CLI's --overwrite."""
    from neftune.experiments.run import clear_experiment

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="holds no neftune experiment"):
        run_experiment(tiny_experiment(), folder, overwrite=True, report=False)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    for name in ("experiment.json", "results.json", "config.yaml"):
        (folder / name).write_text("{}")
    (folder / "arms" / "a0-uniform-constant-s0").mkdir(parents=True)
    data = folder / "arms" / "my_data.jsonl"  # protected: the data being trained on
    data.write_text("{}\n")
    assert clear_experiment(folder, protect=[data]) == ["arms/my_data.jsonl"]
    assert sorted(p.name for p in folder.iterdir()) == ["arms", "notes.txt"]
    # Not written by the experiment either (no arm.json, no run): kept without protection too.
    assert clear_experiment(folder) == ["arms/my_data.jsonl"] and data.read_text() == "{}\n"


def test_library_overwrite_replaces_a_previous_experiment_beside_a_users_file(tmp_path):
    folder = tmp_path / "exp"
    (folder / "arms" / "old-arm").mkdir(parents=True)
    (folder / "arms" / "old-arm" / "arm.json").write_text("{}")
    (folder / "arms" / "old-arm" / "neftune_run.json").write_text('{"status": "complete", "written": []}')
    (folder / "experiment.json").write_text('{"shared": {"train": {"max_steps": 999}}}')
    (folder / "notes.txt").write_text("mine")
    results = run_experiment(
        tiny_experiment(alphas=[0.0], curve_every=0), folder, overwrite=True, report=False
    )
    assert results["status"] == "complete"
    assert (folder / "notes.txt").read_text() == "mine"
    assert not (folder / "arms" / "old-arm").exists()


# --------------------------------------------------------------------------- the planner, before the run


def test_dry_run_states_the_detectable_effect_from_a_pilot(tmp_path):
    """`compare --dry-run` trains nothing, writes nothing, and says what the grid could detect:
    from a pilot (here the committed CPU study), or that it cannot say without one."""
    from pathlib import Path

    from conftest import cli

    pilot = Path(__file__).resolve().parents[1] / "docs" / "results" / "smollm2-135m-cpu-ifeval-quick"
    out = tmp_path / "study"
    args = ["compare", "--preset", "quick", "--alphas", "0,10", "--scalings", "per_sequence,batch"]
    code, text = cli(*args, "--seeds", "5", "--dry-run", "--pilot", pilot, "--out", out)
    assert code == 0, text
    assert not out.exists(), "a dry run creates nothing"
    assert "15 arms = 3 settings" in text and "alpha 10, batch scaling" in text
    assert "seed s on data seed s" in text
    # 5 seeds, prompts drawn per seed, from a 3-seed pilot that shared its prompts.
    assert (
        "Detectable effect on prompts with every instruction followed (strict) (ifeval/prompt_strict)" in text
    )
    assert "with 5 seeds x 80 prompts drawn per seed" in text and "3 seeds x 80 prompts shared" in text
    assert "Time: about" in text and "(15 arms to run x the median" in text and "of the 12 arms of" in text
    assert "Already finished" not in text
    fixed = cli(*args, "--seeds", "5", "--fixed-data", "--dry-run", "--pilot", pilot, "--out", out)[1]
    assert "with 5 seeds x 80 prompts shared by every seed" in fixed
    code, text = cli(*args, "--seeds", "5", "--dry-run", "--out", out)
    assert code == 0 and "cannot be said before the run without a pilot" in text
    code, text = cli(*args, "--dry-run", "--pilot", tmp_path / "nothing", "--out", out)
    assert code == 2 and "results.json not found" in text


def test_dry_run_of_a_started_experiment_counts_only_the_arms_left(tmp_path):
    """Resuming a study with one more seed: the plan names the finished arms and times only the rest."""
    import json
    import shutil
    from pathlib import Path

    from conftest import cli

    study = Path(__file__).resolve().parents[1] / "docs" / "results" / "smollm2-135m-cpu-scaling-quick"
    out = tmp_path / "study"
    shutil.copytree(study, out, ignore=shutil.ignore_patterns("report"))
    seeds = json.loads((out / "results.json").read_text())["config"]["seeds"]
    finished = sorted(p.parent.name for p in (out / "arms").glob("*/arm.json"))
    assert len(finished) == 3 * len(seeds)  # 3 settings
    more = ",".join(str(s) for s in [*seeds, max(seeds) + 1])
    code, text = cli("compare", "--config", out / "config.yaml", "--seeds", more, "--dry-run", "--out", out)
    assert code == 0, text
    assert f"{3 * (len(seeds) + 1)} arms = 3 settings" in text
    assert f"Already finished in {out}: {len(finished)} of them" in text and all(a in text for a in finished)
    assert "runs the other 3" in text and "(3 arms to run x the median" in text
    assert sorted(p.name for p in (out / "arms").iterdir()) == finished, "a dry run writes nothing"
