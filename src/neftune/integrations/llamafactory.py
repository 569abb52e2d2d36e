"""LLaMA-Factory: its own training (``run_exp``) with neftune's per-sequence noise.

    neftune llamafactory train config.yaml [key=value ...]      # = llamafactory-cli train, plus noise
    python -m neftune.integrations.llamafactory config.yaml [key=value ...]

The YAML is LLaMA-Factory's own, plus ``neftune_*`` keys (the :class:`~neftune.NEFTuneConfig` fields:
``neftune_alpha``, ``neftune_distribution``, ``neftune_scaling``, ``neftune_seed``,
``neftune_schedule``, ``neftune_backend``, ``neftune_pad_token_id``; the pad id defaults to that of
the tokenizer LLaMA-Factory builds, which pads packed rows with it, each pad token at position 0).
They are taken out before LLaMA-Factory parses the rest, so its parser still rejects anything it
does not know. LLaMA-Factory's own ``neftune_noise_alpha``
(transformers' hook) is refused: the noise would be added twice.

LLaMA-Factory has no plugin mechanism, but ``run_exp(args, callbacks=[...])`` hands callbacks to the
trainer it builds: neftune's callback
(:class:`~neftune.integrations.frameworks.FrameworkNEFTuneCallback`) goes there. Multi-GPU
runs are relaunched through ``torchrun`` the way ``llamafactory-cli train`` does (``FORCE_TORCHRUN=1``
or more than one device; ``NPROC_PER_NODE``, ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``,
``MASTER_PORT`` as there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import FIELDS, NEFTuneConfig

__all__ = ["LlamaFactoryError", "load_args", "split_neftune_args", "train"]

#: The prefix of neftune's keys in a LLaMA-Factory config.
PREFIX = "neftune_"
#: LLaMA-Factory's own NEFTune switch (it sets TrainingArguments.neftune_noise_alpha).
FRAMEWORK_KEY = "neftune_noise_alpha"


class LlamaFactoryError(ValueError):
    """A config this command refuses, with a one-line message saying what to change."""


def load_args(config: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """LLaMA-Factory's arguments from a ``.yaml``/``.yml``/``.json`` file plus ``key=value`` overrides.

    Read as ``llamafactory-cli train FILE key=value ...`` reads them (OmegaConf: the overrides are
    merged over the file).
    """
    from omegaconf import OmegaConf

    path = Path(config)
    if path.suffix not in (".yaml", ".yml", ".json"):
        raise LlamaFactoryError(f"{config}: LLaMA-Factory configs are .yaml, .yml or .json files")
    if not path.is_file():
        raise LlamaFactoryError(f"{config}: no such config file")
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise LlamaFactoryError(f"override {bad[0]!r} is not key=value (as in llamafactory-cli train)")
    base = (
        OmegaConf.create(json.loads(path.read_text()))
        if path.suffix == ".json"
        else OmegaConf.load(path.absolute())
    )
    merged = OmegaConf.to_container(OmegaConf.merge(base, OmegaConf.from_cli(list(overrides))))
    if not isinstance(merged, dict):
        raise LlamaFactoryError(f"{config}: expected a mapping of LLaMA-Factory arguments")
    return merged


def split_neftune_args(
    args: dict[str, Any], source: str = "the config"
) -> tuple[dict[str, Any], NEFTuneConfig]:
    """``(LLaMA-Factory's arguments, NEFTuneConfig)`` from one config mapping.

    ``neftune_<field>`` keys become the config (the other fields keep their defaults); LLaMA-Factory's
    ``neftune_noise_alpha`` and unknown ``neftune_*`` keys are refused with a :class:`LlamaFactoryError`.
    """
    if args.get(FRAMEWORK_KEY) is not None:
        raise LlamaFactoryError(
            f"{source} sets {FRAMEWORK_KEY}: {args[FRAMEWORK_KEY]} (LLaMA-Factory's own NEFTune) and "
            f"`neftune llamafactory train` adds neftune's noise: it would be added twice; remove "
            f"{FRAMEWORK_KEY} and set neftune_alpha instead"
        )
    framework = {k: v for k, v in args.items() if not (k.startswith(PREFIX) and k != FRAMEWORK_KEY)}
    ours = {k[len(PREFIX) :]: v for k, v in args.items() if k.startswith(PREFIX) and k != FRAMEWORK_KEY}
    unknown = sorted(set(ours) - set(FIELDS))
    if unknown:
        raise LlamaFactoryError(
            f"{source}: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(PREFIX + k for k in unknown)}; neftune's keys are "
            f"{', '.join(PREFIX + f for f in FIELDS)}"
        )
    framework.pop(FRAMEWORK_KEY, None)  # an explicit `neftune_noise_alpha: null` is LLaMA-Factory's default
    try:
        config = NEFTuneConfig(**ours)
    except (TypeError, ValueError) as exc:
        raise LlamaFactoryError(f"{source}: {exc}") from None
    return framework, config


def _distributed() -> bool:
    """Whether ``llamafactory-cli train`` would relaunch itself through torchrun here."""
    from llamafactory.extras.misc import get_device_count, is_env_enabled, use_ray

    return is_env_enabled("FORCE_TORCHRUN") or (get_device_count() > 1 and not use_ray())


def _torchrun(config: str | Path, overrides: Sequence[str]) -> int:
    """Run this module under torchrun with LLaMA-Factory's environment variables; its exit code."""
    from llamafactory.extras.misc import find_available_port, get_device_count

    env = os.environ
    command = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", env.get("NNODES", "1"),
        "--node_rank", env.get("NODE_RANK", "0"),
        "--nproc_per_node", env.get("NPROC_PER_NODE", str(get_device_count())),
        "--master_addr", env.get("MASTER_ADDR", "127.0.0.1"),
        "--master_port", env.get("MASTER_PORT", str(find_available_port())),
        "-m", __name__, str(config), *overrides,
    ]  # fmt: skip
    return subprocess.run(command, env={**env, "NEFTUNE_LLAMAFACTORY_WORKER": "1"}).returncode


def train(
    config: str | Path,
    overrides: Sequence[str] = (),
    *,
    callbacks: Sequence[Any] = (),
    launch: bool = True,
) -> int:
    """Run LLaMA-Factory's ``run_exp`` on ``config`` (+ ``key=value`` overrides) with neftune's callback.

    ``callbacks``: more trainer callbacks, after neftune's. ``launch``: relaunch through torchrun
    when LLaMA-Factory would (multi-GPU); the workers call this with ``launch=False``. Returns the
    exit code (0). Raises :class:`LlamaFactoryError` for a refused config, and when training
    finished without the noise ever being switched on (a stage whose trainer runs no callbacks).
    """
    from .frameworks import FrameworkNEFTuneCallback

    source = f"{config} with the overrides {' '.join(overrides)}" if overrides else str(config)
    args, noise = split_neftune_args(load_args(config, overrides), source=source)
    if launch and _distributed():
        return _torchrun(config, overrides)
    from llamafactory.train.tuner import run_exp

    callback = FrameworkNEFTuneCallback(noise)  # + the tokenizer's pad id (LLaMA-Factory pads with it)
    run_exp(args, callbacks=[callback, *callbacks])
    if callback.handle is None:  # on_train_begin never ran
        raise LlamaFactoryError(
            f"{config}: LLaMA-Factory finished without starting NEFTuneCallback (stage "
            f"{args.get('stage', 'sft')!r}): no noise was added; use a stage that trains with a "
            "transformers Trainer (pt, sft, rm, dpo, kto)"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m neftune.integrations.llamafactory CONFIG [key=value ...]`` (also torchrun's workers)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    try:
        return train(argv[0], argv[1:], launch=os.environ.get("NEFTUNE_LLAMAFACTORY_WORKER") != "1")
    except LlamaFactoryError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
