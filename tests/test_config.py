"""NEFTuneConfig travels: TrainConfig.noise -> attach -> NEFTuneCallback -> activate, checked once.

Also the one-name-per-setting rename (``noise_backend`` -> ``backend``): files written by older
versions (config.yaml, a run's record, an experiment's shared options) still load and resume.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import neftune
from neftune import NEFTuneConfig
from neftune.config import FIELDS, make_config
from neftune.finetune.training import TrainConfig, check_resume_config, upgrade_train_values

from conftest import cli, plain_trainer, tiny_llama


def test_make_config_defaults_number_and_overrides():
    assert make_config() == NEFTuneConfig()
    assert make_config(7.5) == NEFTuneConfig(alpha=7.5)
    base = NEFTuneConfig(alpha=10.0, distribution="gaussian", seed=3)
    assert make_config(base) is base  # no overrides: the same object travels
    changed = make_config(base, seed=4)
    assert (changed.alpha, changed.distribution, changed.seed) == (10.0, "gaussian", 4)
    assert base.seed == 3  # the caller's config is never modified


def test_make_config_refuses_unknown_and_conflicting_settings():
    with pytest.raises(TypeError, match=r"unknown NEFTune setting 'noise_alpha'.*alpha, distribution"):
        make_config(noise_alpha=5.0)
    with pytest.raises(TypeError, match="alpha given twice"):
        make_config(5.0, alpha=6.0)
    with pytest.raises(TypeError, match="NEFTuneConfig, alpha"):
        make_config("5")
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        make_config(NEFTuneConfig(), alpha=-1.0)  # overrides are checked like the fields
    assert FIELDS == (
        "alpha",
        "distribution",
        "scaling",
        "seed",
        "schedule",
        "backend",
        "ignore_token_ids",
        "pad_token_id",
    )


def test_activate_takes_the_config_object():
    model = tiny_llama()
    config = NEFTuneConfig(alpha=8.0, distribution="symmetric", seed=1, schedule="linear")
    handle = neftune.activate(model, config)
    assert handle.config is config and handle.alpha == 8.0
    handle.remove()
    handle = neftune.activate(model, config, alpha=2.0)
    assert handle.config.alpha == 2.0 and handle.config.distribution == "symmetric"
    handle.remove()
    with neftune.noisy_embeddings(model, config) as handle:
        assert handle.config is config
    with pytest.raises(TypeError, match="unknown NEFTune setting"):
        neftune.activate(model, config, sigma=1.0)
    assert not neftune.is_active(model)


def test_neftune_embedding_takes_the_config_object():
    emb = torch.nn.Embedding(10, 4)
    module = neftune.NEFTuneEmbedding(emb, NEFTuneConfig(alpha=3.0, distribution="gaussian"))
    assert (module.alpha, module.distribution, module.backend) == (3.0, "gaussian", "auto")
    assert neftune.NEFTuneEmbedding(emb, alpha=4.0).alpha == 4.0  # keyword spelling still works
    with pytest.raises(ValueError, match="per-sequence noise without a schedule"):
        neftune.NEFTuneEmbedding(emb, NEFTuneConfig(scaling="batch"))


def test_config_travels_from_train_config_through_attach_to_the_handle(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from neftune.integrations import attach
    from neftune.integrations import transformers as integration

    received = []
    real_activate = integration.activate

    def recording_activate(model, config=None, **kwargs):
        received.append(config)
        return real_activate(model, config, **kwargs)

    monkeypatch.setattr(integration, "activate", recording_activate)
    noise = TrainConfig(alpha=6.0, distribution="gaussian", schedule="cosine", seed=9, backend="torch").noise
    assert noise == NEFTuneConfig(6.0, "gaussian", "per_sequence", 9, "cosine", "torch")
    trainer = plain_trainer(tmp_path)
    callback = attach(trainer, noise)
    assert callback.config is noise
    trainer.train()
    assert len(received) == 1 and received[0] is noise  # the same object reached activate
    assert callback.handle is not None and not callback.handle.active


def test_train_config_validates_noise_once_through_neftune_config():
    with pytest.raises(ValueError, match="unknown distribution"):
        TrainConfig(distribution="laplace").validate()
    with pytest.raises(ValueError, match="scaling='batch'"):
        TrainConfig(scaling="batch", backend="triton").validate()
    assert not hasattr(TrainConfig(), "extra") and not hasattr(TrainConfig(), "noise_backend")


def test_old_run_records_are_read_under_todays_names(tmp_path):
    old = {"alpha": 5.0, "noise_backend": "torch", "extra": {}, "out": "x"}
    assert upgrade_train_values(old) == {"alpha": 5.0, "backend": "torch", "out": "x"}
    # An interrupted run written by an older version resumes with the same settings.
    cfg = TrainConfig(model="tiny", out=str(tmp_path), backend="torch")
    stored = {**dataclasses.asdict(cfg), "noise_backend": "torch", "extra": {}}
    del stored["backend"]
    (tmp_path / "neftune_run.json").write_text(json.dumps({"status": "interrupted", "config": stored}))
    check_resume_config(tmp_path, cfg)  # does not raise
    with pytest.raises(ValueError, match="backend"):
        check_resume_config(tmp_path, dataclasses.replace(cfg, backend="auto"))


def test_config_file_with_the_old_option_name_still_loads(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("model: tiny\nnoise_backend: triton\nscaling: batch\n")
    code, out = cli("train", "--config", str(path), "--out", str(tmp_path / "run"))
    assert code != 0
    assert "scaling='batch'" in out  # read as backend=triton and refused with the reason, not 'unknown'
    assert "unknown option" not in out
