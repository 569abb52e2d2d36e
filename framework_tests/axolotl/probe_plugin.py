"""A test-only Axolotl plugin that attaches the independent noise probe (framework_tests/probe.py).

Listed in the test YAMLs after neftune's plugin (or alone, to measure Axolotl's own
``neftune_noise_alpha``), through Axolotl's own ``plugins:`` mechanism. It writes, per rank,
``$NEFTUNE_PROBE_DIR/noise-rank<R>.json``: the probe's per-sequence norms of every recorded
training forward, the pad id it treated as padding, and the unit direction of the noise on the
first token of the first recorded forward (to tell the ranks' noise streams apart).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from axolotl.integrations.base import BasePlugin
from probe import NoiseProbe


class DirectionProbe(NoiseProbe):
    """``NoiseProbe`` that also keeps the noise vector of the first token it saw."""

    first_direction: list[float] | None = None

    def _post(self, module, inputs, output):
        if self.first_direction is None and module.training and torch.is_grad_enabled():
            with torch.no_grad():
                noise = (output.detach().float() - module.forward(inputs[0]).float())[0, 0]
            norm = float(noise.norm())
            if norm > 0:
                self.first_direction = (noise / norm).tolist()
        super()._post(module, inputs, output)


class ProbePlugin(BasePlugin):
    def __init__(self) -> None:
        super().__init__()
        self.probe: DirectionProbe | None = None
        self.pad_token_id: int | None = None

    def post_trainer_create(self, cfg, trainer) -> None:
        tokenizer = getattr(trainer, "processing_class", None) or trainer.tokenizer
        self.pad_token_id = tokenizer.pad_token_id
        max_calls = int(os.environ.get("NEFTUNE_PROBE_CALLS", "4"))
        self.probe = DirectionProbe(trainer.model, max_calls=max_calls, pad_token_id=self.pad_token_id)

    def post_train(self, cfg, model) -> None:
        out = Path(os.environ["NEFTUNE_PROBE_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        rank = int(os.environ.get("RANK", "0"))
        record = {
            "rank": rank,
            "pad_token_id": self.pad_token_id,
            "calls": self.probe.results(),
            "first_direction": self.probe.first_direction,
            "model_type": type(model).__name__,
            "linear4bit_modules": sum(type(m).__name__ == "Linear4bit" for m in model.modules()),
        }
        (out / f"noise-rank{rank}.json").write_text(json.dumps(record))
        self.probe.remove()


def _cpu_device_map_for_multi_process() -> None:
    """Test-only: let Axolotl's multi-process path run on a CPU (``NEFTUNE_TEST_CPU_DDP=1``).

    Axolotl 0.19's ``normalize_config`` sets ``device_map = {"": LOCAL_RANK}`` whenever
    world_size > 1, which transformers 5.16 refuses without an accelerator ("Cannot access
    accelerator device"). This wraps it (in the modules that call it) to put the model on the CPU
    instead; everything else — torchrun, the DDP-wrapped trainer, the plugins — is Axolotl's own.
    Imported with this plugin, i.e. before Axolotl normalizes the config.
    """
    import axolotl.cli.config as cli_config
    import axolotl.utils.config as utils_config

    original = utils_config.normalize_config

    def normalize_config(cfg):
        original(cfg)
        if not torch.cuda.is_available() and (cfg.world_size or 1) > 1:
            cfg.device_map = "cpu"

    cli_config.normalize_config = normalize_config
    utils_config.normalize_config = normalize_config


if os.environ.get("NEFTUNE_TEST_CPU_DDP") == "1":
    _cpu_device_map_for_multi_process()
