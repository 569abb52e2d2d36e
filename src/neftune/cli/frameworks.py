"""``neftune llamafactory train`` and ``neftune trl sft``: a framework's own training with neftune's noise.

Thin: the arguments go unchanged to :mod:`neftune.integrations.llamafactory` and
:mod:`neftune.integrations.trl_cli` (CONFIG is declared in :mod:`neftune.cli.options`); refusals
print one line and exit 2.
"""

from __future__ import annotations

import subprocess

import typer
from rich.console import Console
from rich.markup import escape

from . import options as opts

__all__ = ["add_framework_commands"]

console = Console(stderr=True)

llamafactory_app = typer.Typer(
    help="LLaMA-Factory's own training with neftune's per-sequence noise.", no_args_is_help=True
)
trl_app = typer.Typer(
    help="TRL's own command-line training with neftune's per-sequence noise.", no_args_is_help=True
)
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _fail(message: str) -> None:
    console.print(f"[bold red]Error:[/] {escape(' '.join(message.split()))}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def _missing(framework: str, package: str, exc: ImportError) -> None:
    _fail(
        f"{framework} is not installed here ({exc}); install it into this environment: pip install {package}"
    )


@llamafactory_app.command("train", context_settings=_PASS_THROUGH)
def llamafactory_train(
    ctx: typer.Context,
    config: opts.LlamaFactoryConfig,
) -> None:
    """Run `llamafactory-cli train CONFIG key=value ...` with neftune's noise instead of neftune_noise_alpha.

    The neftune_* keys are the NEFTuneConfig fields: neftune_alpha, neftune_distribution,
    neftune_scaling, neftune_seed, neftune_schedule, neftune_backend.
    """
    try:
        import llamafactory  # noqa: F401
    except ImportError as exc:
        _missing("LLaMA-Factory", "llamafactory", exc)
    from ..integrations.llamafactory import LlamaFactoryError, train

    try:
        code = train(config, ctx.args)
    except LlamaFactoryError as exc:
        _fail(str(exc))
    raise typer.Exit(code)


@trl_app.command("sft", context_settings=_PASS_THROUGH, add_help_option=False)
def trl_sft(ctx: typer.Context) -> None:
    """Run `trl sft ARGS` with neftune's noise: TRL's own arguments (and --config YAML) plus --neftune_* ones.

    `neftune trl sft -h` lists them all (TRL's parser).
    """
    try:
        from ..integrations.trl_cli import TrlCliError, launch
    except ImportError as exc:
        _missing("TRL", "trl", exc)
    try:
        launch(ctx.args)
    except TrlCliError as exc:
        _fail(str(exc))
    except subprocess.CalledProcessError as exc:  # the training process failed and printed why
        raise typer.Exit(exc.returncode or 1) from None


def add_framework_commands(app: typer.Typer) -> None:
    """Add the ``llamafactory`` and ``trl`` command groups to the ``neftune`` command."""
    app.add_typer(llamafactory_app, name="llamafactory")
    app.add_typer(trl_app, name="trl")
