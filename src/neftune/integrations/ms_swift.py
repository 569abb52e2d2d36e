"""ms-swift: neftune's callback under ``--callbacks neftune``, registered by an ``--external_plugins`` file.

    NEFTUNE_ALPHA=5 swift sft ... \\
        --external_plugins "$(python -m neftune.integrations.swift_plugin)" --callbacks neftune

ms-swift imports every ``--external_plugins`` file while it checks its arguments (it puts the file's
folder first on ``sys.path`` and imports it by its bare name, so the file lives alone in
``neftune/integrations/swift_plugin/``: our ``transformers.py`` beside it would shadow the real
package). That file calls :func:`register`, which adds ``"neftune"`` to ms-swift's ``callbacks_map``, and ``--callbacks neftune`` makes its trainer build
:class:`SwiftNEFTuneCallback` (a :class:`~neftune.integrations.transformers.NEFTuneCallback`).
ms-swift's parser refuses arguments it does not declare, so the settings come from the environment:
``NEFTUNE_ALPHA``, ``NEFTUNE_DISTRIBUTION``, ``NEFTUNE_SCALING``, ``NEFTUNE_SEED``,
``NEFTUNE_SCHEDULE``, ``NEFTUNE_BACKEND``, ``NEFTUNE_PAD_TOKEN_ID``, ``NEFTUNE_IGNORE_TOKEN_IDS``
(comma-separated ids, or ``none``) (the :class:`~neftune.NEFTuneConfig` fields; unset = default).
ms-swift's own ``--neftune_noise_alpha`` (transformers' hook) is refused when the trainer is built.

``python -m neftune.integrations.swift_plugin`` prints the plugin file's path (:data:`PLUGIN_FILE`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neftune.config import FIELDS, NEFTuneConfig
from neftune.integrations.frameworks import FrameworkNEFTuneCallback

__all__ = ["CALLBACK_NAME", "PLUGIN_FILE", "SwiftNEFTuneCallback", "config_from_env", "register"]

#: The name to pass to ``--callbacks``.
CALLBACK_NAME = "neftune"
#: The file to pass to ``--external_plugins``.
PLUGIN_FILE = str(Path(__file__).with_name("swift_plugin") / "neftune_swift_plugin.py")
_ENV_PREFIX = "NEFTUNE_"


def _token_ids(text: str) -> tuple[int, ...]:
    """``"151655,151656"`` (commas or spaces) -> a tuple of ids; ``"none"`` -> ``()`` (no placeholders)."""
    if text.lower() == "none":
        return ()
    return tuple(int(part) for part in text.replace(",", " ").split())


_PARSERS = {"alpha": float, "seed": int, "pad_token_id": int, "ignore_token_ids": _token_ids}


def config_from_env(environ: Mapping[str, str] | None = None) -> NEFTuneConfig:
    """A :class:`~neftune.NEFTuneConfig` from ``NEFTUNE_<FIELD>`` variables (unset or empty = default).

    A value that does not parse or check raises ``ValueError`` naming the variable.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in FIELDS:
        raw = environ.get(_ENV_PREFIX + name.upper(), "").strip()
        if raw:
            try:
                values[name] = _PARSERS.get(name, str)(raw)
            except ValueError:
                raise ValueError(f"{_ENV_PREFIX}{name.upper()}={raw!r} is not a valid {name}") from None
    try:
        return NEFTuneConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"neftune settings from {_ENV_PREFIX}* variables: {exc}") from None


class SwiftNEFTuneCallback(FrameworkNEFTuneCallback):
    """neftune's callback built the way ms-swift builds the callbacks it maps: ``cls(args, trainer)``;
    the pad id of the trainer's tokenizer unless ``NEFTUNE_PAD_TOKEN_ID`` names one."""

    def __init__(self, args: Any = None, trainer: Any = None) -> None:
        alpha = getattr(args, "neftune_noise_alpha", None)
        if alpha is not None:
            raise ValueError(
                f"--neftune_noise_alpha {alpha:g} (transformers' NEFTune hook) and --callbacks {CALLBACK_NAME} "
                f"would both add noise; drop --neftune_noise_alpha and set {_ENV_PREFIX}ALPHA instead"
            )
        super().__init__(config_from_env())
        self.args = args
        self.trainer = trainer


def register(callbacks_map: dict[str, Any] | None = None) -> None:
    """Add ``"neftune"`` to ms-swift's ``callbacks_map`` (ms-swift >= 4), or to the mapping given."""
    if callbacks_map is None:
        try:
            from swift.callbacks import callbacks_map
        except ImportError as exc:
            raise ImportError(
                f"neftune's ms-swift plugin needs ms-swift >= 4 (swift.callbacks.callbacks_map): {exc}"
            ) from exc
    callbacks_map[CALLBACK_NAME] = SwiftNEFTuneCallback
