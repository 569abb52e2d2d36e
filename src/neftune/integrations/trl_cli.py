"""``neftune trl sft``: TRL's ``trl sft`` command with neftune's per-sequence noise.

    neftune trl sft --model_name_or_path M --dataset_name D --packing --neftune_alpha 5 ...
    neftune trl sft --config sft.yaml                      # TRL's YAML, plus neftune_* keys

It takes exactly ``trl sft``'s arguments, parsed by TRL's own ``TrlParser`` over the dataclasses TRL's
``sft`` script declares (so ``--config`` YAMLs, ``--accelerate_config`` and accelerate's launch
options work as there), plus :class:`NEFTuneArguments` (``--neftune_alpha``, ``--neftune_seed``, ...;
dashes work too). Like ``trl sft``, it runs the training through ``accelerate launch``; each process
calls TRL's own ``trl.scripts.sft.main`` with :class:`~neftune.integrations.transformers.NEFTuneCallback`
attached to the ``SFTTrainer`` it builds. ``--neftune_noise_alpha`` (transformers' hook) is refused:
the noise would be added twice.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from neftune.config import NEFTuneConfig

__all__ = ["NEFTuneArguments", "TrlCliError", "launch", "make_parser", "sft"]

_DEFAULTS = NEFTuneConfig()


class TrlCliError(ValueError):
    """Arguments this command refuses, with a one-line message saying what to change."""


@dataclass
class NEFTuneArguments:
    """neftune's settings on TRL's command line (the :class:`~neftune.NEFTuneConfig` fields)."""

    neftune_alpha: float = field(
        default=_DEFAULTS.alpha,
        metadata={
            "help": "neftune: noise magnitude alpha (paper: 5, 10, 15); per sequence, none on padding."
        },
    )
    neftune_distribution: str = field(
        default=_DEFAULTS.distribution,
        metadata={"help": "neftune: noise distribution.", "choices": ["uniform", "gaussian", "symmetric"]},
    )
    neftune_scaling: str = field(
        default=_DEFAULTS.scaling,
        metadata={
            "help": "neftune: per_sequence (each sequence's true length) or batch (transformers' formula).",
            "choices": ["per_sequence", "batch"],
        },
    )
    neftune_seed: int | None = field(
        default=None, metadata={"help": "neftune: seed of a private, reproducible noise stream."}
    )
    neftune_schedule: str | None = field(
        default=None, metadata={"help": "neftune: alpha schedule name (see neftune.schedules)."}
    )
    neftune_backend: str = field(
        default=_DEFAULTS.backend,
        metadata={"help": "neftune: noise backend.", "choices": ["auto", "torch", "triton"]},
    )
    neftune_ignore_token_ids: list[int] | None = field(
        default=None,
        metadata={
            "help": "neftune: token ids that get no noise and do not count in L (a VLM's image placeholders); "
            "default: read from the model's config."
        },
    )
    neftune_pad_token_id: int | None = field(
        default=None,
        metadata={
            "help": "neftune: a sequence made only of this token id is padding (default: the tokenizer's pad id)."
        },
    )

    def to_config(self) -> NEFTuneConfig:
        try:
            return NEFTuneConfig(
                alpha=self.neftune_alpha,
                distribution=self.neftune_distribution,
                scaling=self.neftune_scaling,
                seed=self.neftune_seed,
                schedule=self.neftune_schedule,
                backend=self.neftune_backend,
                ignore_token_ids=self.neftune_ignore_token_ids,
                pad_token_id=self.neftune_pad_token_id,
            )
        except (TypeError, ValueError) as exc:
            raise TrlCliError(f"--neftune_* options: {exc}") from None


def make_parser(prog: str = "neftune trl sft") -> Any:
    """TRL's ``TrlParser`` over the dataclasses of TRL's own ``sft`` script, plus :class:`NEFTuneArguments`."""
    from trl import TrlParser
    from trl.scripts.sft import make_parser as trl_sft_parser

    return TrlParser((*trl_sft_parser().dataclass_types, NEFTuneArguments), prog=prog)


def _split(parsed: Sequence[Any]) -> tuple[list[Any], Any, NEFTuneConfig]:
    """(TRL's dataclasses, its SFTConfig, the checked NEFTuneConfig); refuses transformers' own hook."""
    *trl_args, ours = parsed
    training_args = next(a for a in trl_args if hasattr(a, "neftune_noise_alpha"))
    if training_args.neftune_noise_alpha is not None:
        raise TrlCliError(
            f"--neftune_noise_alpha {training_args.neftune_noise_alpha:g} (transformers' NEFTune hook) and "
            "neftune's noise would both be added; drop --neftune_noise_alpha and use --neftune_alpha"
        )
    return trl_args, training_args, ours.to_config()


@contextlib.contextmanager
def _sft_trainer_with(config: NEFTuneConfig, callbacks: Sequence[Any]) -> Iterator[list[Any]]:
    """While open, ``trl.SFTTrainer`` (the name TRL's ``sft`` script builds its trainer from) is a subclass
    that attaches neftune's callback (:func:`~neftune.integrations.transformers.attach`: first in line,
    removed also if ``train()`` raises), then adds ``callbacks``. Yields the NEFTuneCallbacks attached."""
    import trl

    from .frameworks import with_pad_token_id
    from .transformers import attach

    original = trl.SFTTrainer
    attached: list[Any] = []

    class SFTTrainer(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            attached.append(attach(self, with_pad_token_id(config, self.processing_class)))
            for callback in callbacks:
                self.add_callback(callback)

    SFTTrainer.__qualname__ = original.__qualname__
    SFTTrainer.__module__ = original.__module__
    trl.SFTTrainer = SFTTrainer
    try:
        yield attached
    finally:
        trl.SFTTrainer = original


def sft(argv: Sequence[str], *, callbacks: Sequence[Any] = ()) -> None:
    """One process of ``neftune trl sft``: TRL's ``sft`` main with neftune's callback (then ``callbacks``).

    ``argv``: ``trl sft``'s arguments and ``--neftune_*`` ones. Raises :class:`TrlCliError` for refused
    arguments, and when TRL's script trained without neftune's callback starting (a TRL version whose
    script builds its trainer another way: no noise was added).
    """
    from trl.scripts.sft import main

    parsed = make_parser().parse_args_and_config(list(argv), fail_with_unknown_args=False)
    trl_args, _, config = _split(parsed)
    with _sft_trainer_with(config, callbacks) as attached:
        main(*trl_args)
    if not any(callback.handle is not None for callback in attached):
        raise TrlCliError(
            "TRL's sft script trained without building its trainer from trl.SFTTrainer, so neftune's "
            "callback never started and no noise was added; this TRL version is not supported by "
            "neftune trl sft"
        )


def launch(argv: Sequence[str]) -> None:
    """``neftune trl sft ARGS``: check the arguments here, then run :func:`sft` through ``accelerate launch``.

    Arguments TRL's parser does not know (on the command line or in the ``--config`` YAML) go to
    ``accelerate launch``, as with ``trl sft``; ``--accelerate_config`` is resolved by TRL's own helper.
    """
    from accelerate.commands.launch import launch_command, launch_command_parser

    argv = list(argv)
    parser = make_parser()
    try:
        *parsed, config_remaining, cli_remaining = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
    except (ValueError, OSError) as exc:  # TRL's / transformers' own checks of the values, a missing YAML
        raise TrlCliError(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)) from None
    _split(parsed)  # refuse here, before accelerate starts processes
    launch_args = _accelerate_args(config_remaining + cli_remaining)
    script_args = _without(argv, cli_remaining)
    accelerate = launch_command_parser().parse_args([*launch_args, "-m", __name__, *script_args])
    launch_command(accelerate)


def _accelerate_args(remaining: list[str]) -> list[str]:
    try:
        from trl.cli.accelerate_config import resolve_accelerate_config_argument
    except ImportError:  # TRL versions before the helper: the arguments pass unchanged
        return remaining
    return resolve_accelerate_config_argument(remaining)


def _without(argv: list[str], taken: list[str]) -> list[str]:
    """``argv`` less ``taken``, an ordered subsequence of it (the strings TRL's parser left over)."""
    out, rest = [], iter(taken)
    pending = next(rest, None)
    for item in argv:
        if pending is not None and item == pending:
            pending = next(rest, None)
        else:
            out.append(item)
    return out


def main() -> int:
    """Entry of each process ``accelerate launch`` starts (``python -m neftune.integrations.trl_cli``)."""
    try:
        sft(sys.argv[1:])
    except TrlCliError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
