"""How the LLaMA-Factory and ms-swift entries read neftune's settings, and what they refuse.

No framework needed: these are the pure parts. The frameworks' own training runs are in
framework_tests/ (each framework in its own venv).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import pytest

from neftune.config import NEFTuneConfig
from neftune.integrations.llamafactory import LlamaFactoryError, split_neftune_args
from neftune.integrations.ms_swift import (
    PLUGIN_FILE,
    SwiftNEFTuneCallback,
    config_from_env,
    register,
)

LF_ARGS = {"model_name_or_path": "m", "stage": "sft", "packing": True}


def test_llamafactory_neftune_keys_become_the_config_and_leave_the_rest():
    args, config = split_neftune_args({**LF_ARGS, "neftune_alpha": 10, "neftune_seed": 3})
    assert args == LF_ARGS
    assert config == NEFTuneConfig(alpha=10.0, seed=3)


def test_llamafactory_defaults_and_explicit_null_of_its_own_key():
    args, config = split_neftune_args({**LF_ARGS, "neftune_noise_alpha": None})
    assert args == LF_ARGS and config == NEFTuneConfig()


@pytest.mark.parametrize("value", [5, 0.0])
def test_llamafactory_refuses_its_own_neftune_beside_ours(value):
    with pytest.raises(
        LlamaFactoryError, match=r"cfg.yaml sets neftune_noise_alpha: .*added twice.*neftune_alpha"
    ):
        split_neftune_args({**LF_ARGS, "neftune_noise_alpha": value}, source="cfg.yaml")


def test_llamafactory_unknown_and_bad_keys_are_named():
    with pytest.raises(
        LlamaFactoryError, match="unknown key neftune_alhpa; neftune's keys are neftune_alpha"
    ):
        split_neftune_args({**LF_ARGS, "neftune_alhpa": 5})
    with pytest.raises(LlamaFactoryError, match="distribution"):
        split_neftune_args({**LF_ARGS, "neftune_distribution": "cauchy"})


def test_swift_settings_from_the_environment():
    assert config_from_env({}) == NEFTuneConfig()
    env = {
        "NEFTUNE_ALPHA": "10",
        "NEFTUNE_SEED": "7",
        "NEFTUNE_DISTRIBUTION": "gaussian",
        "NEFTUNE_BACKEND": "",
    }
    assert config_from_env(env) == NEFTuneConfig(alpha=10.0, seed=7, distribution="gaussian")
    assert config_from_env({"NEFTUNE_IGNORE_TOKEN_IDS": "9, 8"}).ignore_token_ids == (8, 9)
    assert config_from_env({"NEFTUNE_IGNORE_TOKEN_IDS": "none"}).ignore_token_ids == ()
    with pytest.raises(ValueError, match="NEFTUNE_ALPHA='five'"):
        config_from_env({"NEFTUNE_ALPHA": "five"})
    with pytest.raises(ValueError, match="NEFTUNE_.*alpha must be >= 0"):
        config_from_env({"NEFTUNE_ALPHA": "-1"})


def test_swift_callback_refuses_transformers_hook(monkeypatch):
    monkeypatch.setenv("NEFTUNE_ALPHA", "5")
    callback = SwiftNEFTuneCallback(types.SimpleNamespace(neftune_noise_alpha=None), trainer=None)
    assert callback.config.alpha == 5.0
    with pytest.raises(ValueError, match="--neftune_noise_alpha 5 .* drop --neftune_noise_alpha"):
        SwiftNEFTuneCallback(types.SimpleNamespace(neftune_noise_alpha=5.0), trainer=None)


def test_swift_plugin_file_imports_the_way_ms_swift_imports_it(monkeypatch):
    """ms-swift puts the file's folder first on sys.path and imports it by its bare name: nothing in
    that folder may shadow a real package (our integrations/transformers.py would)."""
    from pathlib import Path

    folder = Path(PLUGIN_FILE).parent
    assert sorted(p.name for p in folder.glob("*.py")) == [
        "__init__.py",
        "__main__.py",
        "neftune_swift_plugin.py",
    ]
    callbacks_map: dict = {}
    fake = types.ModuleType("swift.callbacks")
    fake.callbacks_map = callbacks_map  # ms-swift's registry (the real one: framework_tests/ms_swift)
    monkeypatch.setitem(sys.modules, "swift", types.ModuleType("swift"))
    monkeypatch.setitem(sys.modules, "swift.callbacks", fake)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "neftune_swift_plugin", raising=False)
    importlib.import_module("neftune_swift_plugin")
    assert callbacks_map == {"neftune": SwiftNEFTuneCallback}


def test_swift_register_without_ms_swift_says_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "swift.callbacks", None)
    with pytest.raises(ImportError, match="needs ms-swift >= 4"):
        register()


def test_pad_token_id_comes_from_the_tokenizer_unless_given():
    from neftune.integrations.frameworks import pad_token_id_of, with_pad_token_id

    tokenizer = types.SimpleNamespace(pad_token_id=7)
    processor = types.SimpleNamespace(tokenizer=tokenizer)  # a VLM processor holds the tokenizer
    assert pad_token_id_of(tokenizer) == pad_token_id_of(processor) == 7
    assert pad_token_id_of(None) is None and pad_token_id_of(types.SimpleNamespace(pad_token_id=None)) is None
    assert with_pad_token_id(NEFTuneConfig(alpha=3.0), processor) == NEFTuneConfig(alpha=3.0, pad_token_id=7)
    assert with_pad_token_id(NEFTuneConfig(pad_token_id=2), tokenizer).pad_token_id == 2
    _, config = split_neftune_args({**LF_ARGS, "neftune_pad_token_id": 5, "neftune_ignore_token_ids": [3, 4]})
    assert config.pad_token_id == 5 and config.ignore_token_ids == (3, 4)


def test_llamafactory_command_without_llamafactory_says_how_to_install(tmp_path):
    pytest.importorskip("typer")
    if importlib.util.find_spec("llamafactory") is not None:
        pytest.skip("LLaMA-Factory is installed here")
    from conftest import cli

    config = tmp_path / "c.yaml"
    config.write_text("neftune_alpha: 5\n")
    code, out = cli("llamafactory", "train", config)
    assert code == 2 and "LLaMA-Factory is not installed" in out and "pip install llamafactory" in out
