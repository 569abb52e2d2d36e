"""What every ``neftune`` command shares: the error line, ``--config`` files, paths, library chatter.

Commands import from here; nothing here knows a command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ..finetune.configfile import CONFIG_NAME, ConfigFileError, load_config_file, read_options, resolve_paths
from ..finetune.evaluation import EvalConfig
from ..finetune.training import TrainConfig
from . import options as opts
from .options import OUTPUT

console = Console(stderr=True)


def one_line(message: str) -> str:
    """``message`` on one line (library messages may hold line breaks)."""
    return " ".join(str(message).split())


def click_api():
    """The click typer runs on: its own copy (typer >= 0.20), else the click package."""
    try:
        from typer import _click as vendored

        return vendored
    except ImportError:  # older typer
        import click
        import click.core
        import click.exceptions

        return click


#: The one definition of every training default (``_T`` in the command modules) ...
TRAIN_DEFAULTS = TrainConfig()
#: ... and of every evaluation default (``_E``).
EVAL_DEFAULTS = EvalConfig(model="")


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]Error:[/] {escape(one_line(message))}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def user_errors() -> tuple[type[BaseException], ...]:
    from ..finetune.data import DataError
    from ..finetune.models import ModelError
    from ..finetune.training import RunError

    return (DataError, ModelError, RunError, ValueError, TypeError, FileNotFoundError, PermissionError)


def option_names(command) -> dict[str, str]:
    """Every spelling a config file may use for the command's options -> the parameter name."""
    names: dict[str, str] = {}
    for param in command.params:
        if param.name in ("config", "help") or not param.expose_value:
            continue
        names[param.name] = param.name
        for opt in param.opts:
            if opt.startswith("--"):
                names[opt[2:].replace("-", "_")] = param.name
    return names


def _config_value(value):
    """A list from a config file as the comma-separated text the option takes (``[0, 5]`` -> ``0,5``)."""
    if isinstance(value, list | tuple):
        text = ",".join(
            "constant" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in value
        )
        return text + ("," if len(value) == 1 else "")  # "3," is the seed 3, "3" would be three seeds
    return value


def _load_config(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """``--config FILE``: its values become the defaults of the other options (which the command line
    overrides), through click's ``default_map``; unknown names are an error naming them. Relative paths
    in the file are read from the file's folder. ``compare`` and ``sweep`` take a run's config.yaml:
    its alpha becomes the grid's noisy alpha beside the baseline."""
    if value is None or ctx.resilient_parsing:
        return value
    try:
        raw = load_config_file(value)
        values, notes = read_options(
            raw, option_names(ctx.command), source=f"--config {value}", command=ctx.info_name
        )
        values = resolve_paths(values, Path(value).parent)
    except ConfigFileError as exc:
        fail(str(exc))
    for note in notes:
        console.print(f"Note: {escape(note)}", soft_wrap=True, highlight=False)
    ctx.default_map = {**(ctx.default_map or {}), **{k: _config_value(v) for k, v in values.items()}}
    return value


def tidy_paths(values: dict) -> dict:
    """Relative paths among ``values`` (the out folder, and a model or data that exists) in one spelling
    (``./qa.csv`` -> ``qa.csv``), so that a run's config.yaml read back gives the same settings (a
    resume compares them); what does not exist stays as typed, for the error message."""
    tidy = resolve_paths(values, ".")
    return {
        k: tidy[k] if k == "out" or (isinstance(v, str) and Path(v).exists()) else v
        for k, v in values.items()
    }


Config = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help=opts.CONFIG_HELP,
        is_eager=True,
        callback=_load_config,
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]


def quiet_libraries() -> None:
    """Our bars replace the libraries' own progress bars and chatter."""
    import warnings

    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="trl")


class LibraryLog:
    """Keeps the libraries' log records and warnings off the console; writes them to ``FOLDER/neftune.log``
    at the end when FOLDER is a neftune run or experiment (a refused run writes nothing)."""

    LOGGERS = ("transformers", "trl", "peft", "datasets", "accelerate", "torch", "neftune", "py.warnings")

    def __init__(self, folder: Path, marker: str) -> None:
        import logging
        import logging.handlers

        self.folder, self.marker = folder, marker
        self.memory = logging.handlers.MemoryHandler(capacity=10**6, flushLevel=logging.CRITICAL + 1)
        self.memory.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.saved: list = []
        self.filters: list = []

    def __enter__(self) -> LibraryLog:
        import logging
        import warnings

        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_default_handler()
        datasets.disable_progress_bars()
        datasets.utils.logging.disable_propagation()
        self.filters = warnings.filters[:]
        logging.captureWarnings(True)
        warnings.simplefilter("default")
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            self.saved.append((logger, logger.level, logger.propagate))
            logger.addHandler(self.memory)
            logger.propagate = False
            if name in ("transformers", "trl", "peft", "neftune"):
                logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc) -> None:
        import logging
        import warnings

        logging.captureWarnings(False)
        warnings.filters[:] = self.filters
        for logger, level, propagate in self.saved:
            logger.removeHandler(self.memory)
            logger.setLevel(level)
            logger.propagate = propagate
        if (self.folder / self.marker).exists() and self.memory.buffer:
            try:
                with open(self.folder / "neftune.log", "a", encoding="utf-8") as fh:
                    fh.writelines(self.memory.format(r) + "\n" for r in self.memory.buffer)
            except OSError:
                pass
        self.memory.buffer.clear()


def listing(paths: list[str], limit: int = 8) -> str:
    """``a, b, c and 4 more`` for a message line."""
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def resume_command(out: Path, kind: str = "train") -> str:
    import shlex

    flag = " --resume" if kind == "train" else ""
    return f"neftune {kind} --config {shlex.quote(str(out / CONFIG_NAME))}{flag}"
