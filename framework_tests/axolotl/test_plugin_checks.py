"""The plugin's later checks, called directly (the runs in test_train.py never trip them)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from neftune.integrations import NEFTuneCallback
from neftune.integrations import axolotl as plugin_module

from conftest import HIDDEN


def _model():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=40, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
    )
    return LlamaForCausalLM(config).train()


def _started_callback(model) -> NEFTuneCallback:
    callback = NEFTuneCallback(alpha=5.0)
    state = SimpleNamespace(global_step=0, max_steps=2)
    callback.on_train_begin(SimpleNamespace(neftune_noise_alpha=None), state, None, model=model)
    return callback


def test_first_step_without_a_noised_forward_stops_training():
    model = _model()
    callback = _started_callback(model)
    check = plugin_module._noise_check_class()(callback)
    try:
        with torch.no_grad():  # a forward that NEFTune must not noise
            model(input_ids=torch.ones(1, 4, dtype=torch.long))
        with pytest.raises(RuntimeError, match="optimizer step 1 ran but no forward .* was noised"):
            check.on_step_end(None, SimpleNamespace(global_step=1), None)
    finally:
        callback.remove()


def test_first_step_with_a_noised_forward_passes_and_is_checked_once():
    model = _model()
    callback = _started_callback(model)
    check = plugin_module._noise_check_class()(callback)
    try:
        model(input_ids=torch.ones(1, 4, dtype=torch.long))
        check.on_step_end(None, SimpleNamespace(global_step=1), None)
        assert check.checked
    finally:
        callback.remove()


def test_a_plugin_that_was_never_attached_fails_after_training():
    plugin = plugin_module.NEFTunePlugin()
    with pytest.raises(RuntimeError, match="trained WITHOUT NEFTune noise"):
        plugin.post_train({}, model=None)
