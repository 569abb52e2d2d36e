"""A second ``--external_plugins`` file for the ms-swift test: ``--callbacks noise_probe`` puts the
independent probe (framework_tests/probe.py) on the model and writes its results to $NEFTUNE_PROBE_OUT."""

import os
import sys
from pathlib import Path

from swift.callbacks import callbacks_map
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from probe import NoiseProbe


class ProbeCallback(TrainerCallback):
    def __init__(self, args=None, trainer=None):
        self.probe = None
        self.trainer = trainer

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        pad = getattr(kwargs.get("processing_class"), "pad_token_id", None)
        self.probe = NoiseProbe(
            model, max_calls=int(os.environ.get("NEFTUNE_PROBE_CALLS", "3")), pad_token_id=pad
        )

    def on_train_end(self, args, state, control, **kwargs):
        self.probe.dump(os.environ["NEFTUNE_PROBE_OUT"])
        self.probe.remove()


callbacks_map["noise_probe"] = ProbeCallback
