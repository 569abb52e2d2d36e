"""Axolotl plugin: per-sequence NEFTune from one line of an Axolotl YAML.

    plugins:
      - neftune.integrations.axolotl.NEFTunePlugin
    neftune_alpha: 5            # optional, as are neftune_distribution, neftune_scaling, neftune_seed,
                                # neftune_schedule, neftune_backend, neftune_ignore_token_ids,
                                # neftune_pad_token_id

The ``neftune_*`` keys are declared to Axolotl through its plugin-arguments mechanism
(:class:`NEFTuneArgs`, merged into Axolotl's config schema), so Axolotl validates them and keeps
them in the loaded config. The plugin

- refuses, when the config is loaded, a config that also sets Axolotl's own ``neftune_noise_alpha``
  (the noise would be added twice) and any ``neftune_*`` value that :class:`~neftune.NEFTuneConfig`
  rejects;
- attaches :class:`~neftune.integrations.transformers.NEFTuneCallback` to the trainer Axolotl
  builds (with :func:`~neftune.integrations.transformers.attach`, so the hooks also come off if
  training raises), with the tokenizer's pad id as ``pad_token_id`` so the padded tail of a packed
  row gets no noise; each rank of a multi-process launch draws its own noise (``neftune.activate``);
- raises after the first optimizer step if no training forward was noised (the model bypassed the
  hooked embedding).

Loud failures: Axolotl's plugin loader only logs an ``ImportError`` and trains on without the
plugin. So this module imports nothing of neftune at import time that could fail: a broken neftune
install is reported by :class:`NEFTunePlugin`'s constructor as a ``RuntimeError``, which stops
Axolotl. This module imports without Axolotl (``import neftune`` never imports it); the plugin
itself needs Axolotl.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

try:  # Optional: the plugin needs Axolotl, this module (the args model, the helpers) does not.
    from axolotl.integrations.base import BasePlugin
except ImportError:  # pragma: no cover - exercised where Axolotl is absent
    BasePlugin = object  # type: ignore[assignment,misc]
    _HAVE_AXOLOTL = False
else:
    _HAVE_AXOLOTL = True

# Under "axolotl": Axolotl's logging config shows INFO only for its own loggers.
logger = logging.getLogger("axolotl.neftune_plugin")

__all__ = ["PLUGIN", "NEFTuneArgs", "NEFTunePlugin", "config_from_axolotl", "refuse_double_noise"]

#: The line users put under ``plugins:``.
PLUGIN = f"{__name__}.NEFTunePlugin"
#: The YAML keys, each the ``NEFTuneConfig`` field of the same name after ``neftune_``.
PREFIX = "neftune_"


class NEFTuneArgs(BaseModel):
    """The ``neftune_*`` keys of an Axolotl config (merged into Axolotl's schema by the plugin).

    Types are checked here by Axolotl's validation; values (alpha >= 0 and finite, known
    distribution/scaling/backend/schedule) by :class:`~neftune.NEFTuneConfig` when the config loads.
    A key left out takes ``NEFTuneConfig``'s default; ``neftune_pad_token_id`` defaults to the
    tokenizer's pad id.
    """

    neftune_alpha: float | None = Field(
        default=None, json_schema_extra={"description": "NEFTune noise magnitude (paper: 5, 10, 15)"}
    )
    neftune_distribution: str | None = Field(
        default=None, json_schema_extra={"description": "uniform | gaussian | symmetric"}
    )
    neftune_scaling: str | None = Field(
        default=None,
        json_schema_extra={"description": "per_sequence (each packed sequence's length) | batch"},
    )
    neftune_seed: int | None = Field(
        default=None, json_schema_extra={"description": "seed of a private noise stream per rank"}
    )
    neftune_schedule: str | None = Field(
        default=None, json_schema_extra={"description": "alpha schedule name (e.g. linear_decay)"}
    )
    neftune_backend: str | None = Field(
        default=None, json_schema_extra={"description": "auto | torch | triton"}
    )
    neftune_ignore_token_ids: list[int] | None = Field(
        default=None,
        json_schema_extra={
            "description": "token ids that get no noise and do not count in L (default: the model's "
            "image/video/audio placeholder ids; [] for none)"
        },
    )
    neftune_pad_token_id: int | None = Field(
        default=None,
        json_schema_extra={
            "description": "token id whose whole sequences get no noise (default: tokenizer pad)"
        },
    )


#: NEFTuneConfig field -> YAML key.
SETTINGS = {name[len(PREFIX) :]: name for name in NEFTuneArgs.model_fields}


#: Axolotl's own NEFTune keys (``noisy_embedding_alpha`` is its deprecated alias).
AXOLOTL_KEYS = ("neftune_noise_alpha", "noisy_embedding_alpha")


def refuse_double_noise(cfg: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` if ``cfg`` also sets Axolotl's own NEFTune (``neftune_noise_alpha``)."""
    for key in AXOLOTL_KEYS:
        alpha = cfg.get(key)
        if alpha is not None:
            raise ValueError(
                f"{key}: {alpha} and the plugin {PLUGIN} would both add noise to the embeddings: "
                f"remove {key} from the config (use neftune_alpha: {alpha} instead)"
            )


def config_from_axolotl(cfg: Mapping[str, Any], *, pad_token_id: int | None = None) -> Any:
    """The checked ``NEFTuneConfig`` of an Axolotl config's ``neftune_*`` keys.

    ``pad_token_id`` is used when the config has no ``neftune_pad_token_id``. A bad value, or a
    ``neftune_*`` key that is not a setting (a typo Axolotl would silently drop), raises
    ``ValueError``/``TypeError`` naming the YAML key, in one line.
    """
    from ..config import FIELDS, make_config

    unknown = sorted(
        k for k in cfg if str(k).startswith(PREFIX) and k not in SETTINGS.values() and k not in AXOLOTL_KEYS
    )
    if unknown:
        raise ValueError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for {PLUGIN}; "
            f"the keys are {', '.join(SETTINGS.values())}"
        )
    settings = {field: cfg.get(key) for field, key in SETTINGS.items() if cfg.get(key) is not None}
    if "pad_token_id" not in settings and pad_token_id is not None:
        settings["pad_token_id"] = pad_token_id
    for field, value in settings.items():  # one at a time first, to name the key that is wrong
        if field not in FIELDS:
            raise TypeError(f"{SETTINGS[field]}: not a setting of this neftune version ({', '.join(FIELDS)})")
        try:
            make_config(**{field: value})
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{SETTINGS[field]}: {exc}") from exc
    try:
        return make_config(**settings)
    except (TypeError, ValueError) as exc:  # a combination (e.g. backend with scaling)
        raise type(exc)(f"{', '.join(SETTINGS[f] for f in settings)}: {exc}") from exc


def _load_runtime() -> Any:
    """neftune's Trainer integration, imported now; any failure becomes a ``RuntimeError``.

    Not an ``ImportError``: Axolotl's plugin loader catches those, logs them and trains without
    the plugin, i.e. without noise.
    """
    try:
        from . import transformers as runtime
    except Exception as exc:
        raise RuntimeError(
            f"{PLUGIN}: neftune is installed but its Trainer integration does not import "
            f"({type(exc).__name__}: {exc}); reinstall neftune (pip install 'neftune[transformers]') "
            "or remove the plugin line from the config"
        ) from exc
    return runtime


def _pad_token_id(trainer: Any) -> int | None:
    """The pad id of the tokenizer the trainer was given (None when it has none)."""
    for name in ("processing_class", "tokenizer"):
        owner = getattr(trainer, name, None)
        for tokenizer in (owner, getattr(owner, "tokenizer", None)):  # a processor wraps a tokenizer
            pad = getattr(tokenizer, "pad_token_id", None)
            if isinstance(pad, int) and not isinstance(pad, bool):
                return pad
    return None


class NEFTunePlugin(BasePlugin):
    """Axolotl plugin that gives every packed or padded sequence per-sequence NEFTune noise."""

    def __init__(self) -> None:
        if not _HAVE_AXOLOTL:
            raise ImportError(f"{PLUGIN} is an Axolotl plugin: pip install axolotl")
        super().__init__()
        self.runtime = _load_runtime()
        self.callback: Any = None

    def get_input_args(self) -> str:
        return f"{__name__}.NEFTuneArgs"

    def register(self, cfg: Mapping[str, Any]) -> None:
        """At config load (before Axolotl's validation): refuse double noise and bad values."""
        refuse_double_noise(cfg)
        config_from_axolotl(cfg)

    def post_trainer_create(self, cfg: Mapping[str, Any], trainer: Any) -> None:
        # Again here for a config that reached the trainer builder without load_cfg; the callback
        # also refuses TrainingArguments.neftune_noise_alpha when training starts.
        refuse_double_noise(cfg)
        config = config_from_axolotl(cfg, pad_token_id=_pad_token_id(trainer))
        self.callback = self.runtime.attach(trainer, config)
        trainer.add_callback(_noise_check_class()(self.callback))
        logger.info("%s: per-sequence NEFTune attached (%r)", PLUGIN, config)

    def post_train(self, cfg: Mapping[str, Any], model: Any) -> None:
        """Last line of defence: the plugin was loaded but no trainer hook of this Axolotl attached it."""
        if self.callback is None:
            raise RuntimeError(
                f"{PLUGIN} was loaded but Axolotl never called post_trainer_create: the model was "
                "trained WITHOUT NEFTune noise (is this Axolotl version supported? see docs/integrations.md)"
            )


_CHECK_CLASS: type | None = None


def _noise_check_class() -> type:
    """A ``TrainerCallback`` that raises when the first optimizer step had no noised forward.

    Made on first use: the transformers import it needs is deferred (see :func:`_load_runtime`).
    """
    global _CHECK_CLASS
    if _CHECK_CLASS is None:
        from transformers import TrainerCallback

        class NoiseReachedCheck(TrainerCallback):
            """Fails the run when NEFTune's hook saw no training forward in the first step."""

            def __init__(self, callback: Any) -> None:
                self.callback = callback
                self.checked = False

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                handle = self.callback.handle
                if self.checked or handle is None:
                    return
                self.checked = True
                if handle.noised_calls == 0:
                    raise RuntimeError(
                        f"{PLUGIN}: optimizer step {state.global_step} ran but no forward through "
                        f"{handle.path or 'the input embedding'} was noised (the model bypassed the "
                        "hooked embedding, or ran it without autograd); training stopped"
                    )

        _CHECK_CLASS = NoiseReachedCheck
    return _CHECK_CLASS
