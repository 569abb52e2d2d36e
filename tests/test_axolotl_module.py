"""neftune.integrations.axolotl without Axolotl installed (this venv): it imports, its config helpers
work, and its ``neftune_*`` keys cover every ``NEFTuneConfig`` setting. The plugin itself runs
against the real Axolotl in framework_tests/axolotl (``bash framework_tests/run.sh axolotl``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

pytest.importorskip("pydantic")
if importlib.util.find_spec("axolotl") is not None:  # pragma: no cover - the main venv has no axolotl
    pytest.skip("these tests are about an install without Axolotl", allow_module_level=True)

from neftune.config import FIELDS, NEFTuneConfig
from neftune.integrations import axolotl as plugin_module


def test_import_neftune_does_not_import_axolotl_or_the_plugin():
    code = (
        "import sys, neftune, neftune.integrations; "
        "print(sorted(m for m in sys.modules if m.startswith(('axolotl', 'neftune.integrations.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_config_setting_has_a_yaml_key():
    assert set(plugin_module.SETTINGS) == set(FIELDS)
    assert all(key == f"neftune_{field}" for field, key in plugin_module.SETTINGS.items())


def test_config_from_axolotl_reads_the_keys_and_the_pad_id():
    cfg = {"neftune_alpha": 10, "neftune_distribution": "gaussian", "neftune_seed": 3, "base_model": "x"}
    config = plugin_module.config_from_axolotl(cfg, pad_token_id=7)
    assert config == NEFTuneConfig(alpha=10.0, distribution="gaussian", seed=3, pad_token_id=7)
    explicit = plugin_module.config_from_axolotl({**cfg, "neftune_pad_token_id": 0}, pad_token_id=7)
    assert explicit.pad_token_id == 0
    assert plugin_module.config_from_axolotl({}) == NEFTuneConfig()


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"neftune_alpha": float("nan")}, "^neftune_alpha: alpha must be finite"),
        ({"neftune_scaling": "row"}, "^neftune_scaling: unknown scaling 'row'"),
        ({"neftune_alpha": 5, "neftune_schedule": "sometimes"}, "^neftune_schedule: "),
        ({"neftune_alpah": 5}, "unknown key neftune_alpah .* the keys are neftune_alpha, "),
    ],
)
def test_bad_values_name_the_yaml_key(cfg, message):
    with pytest.raises((TypeError, ValueError), match=message) as info:
        plugin_module.config_from_axolotl(cfg)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("key", ["neftune_noise_alpha", "noisy_embedding_alpha"])
def test_axolotls_own_neftune_is_refused_in_one_line(key):
    with pytest.raises(
        ValueError, match=f"^{key}: 5 and the plugin neftune.integrations.axolotl.NEFTunePlugin"
    ):
        plugin_module.refuse_double_noise({key: 5, "neftune_alpha": 5})
    plugin_module.refuse_double_noise({"neftune_noise_alpha": None, "neftune_alpha": 5})  # unset: fine


def test_the_plugin_says_it_needs_axolotl():
    with pytest.raises(ImportError, match="pip install axolotl"):
        plugin_module.NEFTunePlugin()


def test_args_model_types():
    from pydantic import ValidationError

    args = plugin_module.NEFTuneArgs(neftune_alpha=5, neftune_seed=1)
    assert args.neftune_alpha == 5.0 and args.neftune_distribution is None
    with pytest.raises(ValidationError, match="neftune_seed"):
        plugin_module.NEFTuneArgs(neftune_seed="often")


def test_pad_id_from_the_trainers_tokenizer_or_processor():
    from types import SimpleNamespace

    tokenizer = SimpleNamespace(pad_token_id=3)
    assert plugin_module._pad_token_id(SimpleNamespace(processing_class=tokenizer)) == 3
    processor = SimpleNamespace(tokenizer=tokenizer)  # a multimodal processor
    assert plugin_module._pad_token_id(SimpleNamespace(processing_class=processor)) == 3
    assert plugin_module._pad_token_id(SimpleNamespace(processing_class=None, tokenizer=tokenizer)) == 3
    assert (
        plugin_module._pad_token_id(SimpleNamespace(processing_class=SimpleNamespace(pad_token_id=None)))
        is None
    )
