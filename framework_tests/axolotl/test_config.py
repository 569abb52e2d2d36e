"""Config time: Axolotl's own loader (``axolotl.cli.config.load_cfg`` and the ``axolotl train`` CLI)
with neftune's plugin — the ``neftune_*`` keys in Axolotl's schema, refusals, loud broken installs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from neftune.integrations import axolotl as plugin_module

from conftest import PLUGIN, axolotl_env, run_axolotl, tail, write_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def load_cfg(monkeypatch, tmp_path):
    """Axolotl's config loader, in this process (offline, no telemetry)."""
    for key, value in axolotl_env(tmp_path).items():
        if key != "PATH":
            monkeypatch.setenv(key, value)
    from axolotl.cli.config import load_cfg
    from axolotl.integrations.base import PluginManager

    plugins = PluginManager.get_instance().plugins  # a process-wide singleton: fresh per test
    plugins.clear()
    yield load_cfg
    plugins.clear()


def test_neftune_keys_are_declared_in_axolotls_schema(load_cfg, tmp_path, tiny):
    cfg = load_cfg(
        str(write_config(tmp_path, tiny, plugins=[PLUGIN], neftune_alpha=10, neftune_distribution="gaussian"))
    )
    # Kept by Axolotl's validation (keys unknown to its schema are dropped) and typed by it.
    assert cfg.neftune_alpha == 10.0 and isinstance(cfg.neftune_alpha, float)
    assert cfg.neftune_distribution == "gaussian"
    assert cfg.get("neftune_noise_alpha") is None


def test_the_keys_join_axolotls_merged_schema(load_cfg, tmp_path, tiny):
    from axolotl.integrations.config import merge_input_args

    load_cfg(str(write_config(tmp_path, tiny, plugins=[PLUGIN])))  # registers the plugin
    _, schema = merge_input_args()
    fields = {name for name in schema.model_fields if name.startswith("neftune_")}
    assert fields == {"neftune_noise_alpha", *plugin_module.SETTINGS.values()}
    # Typed there as in NEFTuneArgs (neftune's own value checks run earlier, at register()).
    for name in plugin_module.SETTINGS.values():
        assert schema.model_fields[name].annotation == plugin_module.NEFTuneArgs.model_fields[name].annotation
    assert schema.model_fields["neftune_alpha"].annotation == float | None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"neftune_noise_alpha": 5}, "neftune_noise_alpha: 5 and the plugin"),
        ({"noisy_embedding_alpha": 5}, "noisy_embedding_alpha: 5 and the plugin"),  # Axolotl's old alias
        ({"neftune_alpha": -1}, "neftune_alpha"),
        ({"neftune_distribution": "laplace"}, "neftune_distribution"),
        ({"neftune_scaling": "batch", "neftune_backend": "triton"}, "neftune_backend"),
    ],
)
def test_bad_configs_are_refused_when_loaded(load_cfg, tmp_path, tiny, settings, message):
    with pytest.raises((ValueError, TypeError), match=message) as info:
        load_cfg(str(write_config(tmp_path, tiny, plugins=[PLUGIN], **settings)))
    assert "\n" not in str(info.value)  # one line


def test_cli_refuses_double_noise_before_loading_anything(tmp_path, tiny):
    cfg = write_config(tmp_path, tiny, neftune_noise_alpha=5)
    proc = run_axolotl(cfg, tmp_path, timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ValueError: neftune_noise_alpha: 5 and the plugin {PLUGIN} would both add noise")
    assert "remove neftune_noise_alpha" in last
    assert "Loading raw datasets" not in proc.stdout  # refused at config time


def test_cli_refuses_the_command_line_override_too(tmp_path, tiny):
    cfg = write_config(tmp_path, tiny)
    proc = run_axolotl(cfg, tmp_path, "--launcher", "python", "--neftune-noise-alpha", "5", timeout=300)
    assert proc.returncode != 0
    assert "neftune_noise_alpha: 5" in proc.stderr.strip().splitlines()[-1]


def _shadow_neftune(tmp_path: Path, broken: str, source: str) -> Path:
    """A copy of this repo's neftune package with one module replaced (a broken install)."""
    site = tmp_path / "broken-site"
    shutil.copytree(REPO / "src" / "neftune", site / "neftune", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "neftune" / broken).write_text(source)
    return site


def test_broken_install_stops_axolotl_loudly(tmp_path, tiny):
    """Axolotl only logs a plugin's ImportError; a broken neftune must stop the run instead."""
    site = _shadow_neftune(
        tmp_path, "integrations/transformers.py", "raise ImportError('simulated: transformers too old')\n"
    )
    env = axolotl_env(tmp_path)
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    proc = run_axolotl(write_config(tmp_path, tiny), tmp_path, env=env, timeout=300)
    assert proc.returncode != 0, tail(proc)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"RuntimeError: {PLUGIN}: neftune is installed but its Trainer integration")
    assert "simulated: transformers too old" in last
    assert "Loading raw datasets" not in proc.stdout


def test_a_plugin_line_python_cannot_import_is_only_logged_by_axolotl(load_cfg, tmp_path, tiny, capsys):
    """The one case no plugin code can catch (neftune absent, or its core raising ImportError):
    Axolotl logs "Failed to load plugin" and drops the neftune_* keys. Pinned here, documented
    in docs/integrations.md (look for ``neftune/alpha`` in the training logs)."""
    cfg = load_cfg(str(write_config(tmp_path, tiny, plugins=["neftune_not_installed.NEFTunePlugin"])))
    assert "neftune_alpha" not in cfg
    assert "No module named 'neftune_not_installed'" in capsys.readouterr().out
