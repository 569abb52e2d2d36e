"""The ``neftune`` Typer app: one-line usage errors, ``-h`` that fits the terminal, ``--version``, and
every command registered in the order ``neftune -h`` lists them (each command is its own module)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.markup import escape
from typer.core import TyperGroup

from . import analyze, compare, evaluate, export, report, sweep, train, viz
from .common import click_api, console, one_line
from .frameworks import add_framework_commands
from .ifeval import ifeval


class _OneLineErrors(TyperGroup):
    """The ``neftune`` group: a usage error (a value that is not a number, an unknown option, a missing
    one) prints one ``Error:`` line naming the option and exits 2, instead of typer's boxed usage panel."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        click_errors = click_api().exceptions
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError as exc:  # `neftune` alone: the help was printed
            raise SystemExit(exc.exit_code) from None
        except click_errors.ClickException as exc:
            given = kwargs.get("args", args[0] if args else None)
            given = sys.argv[1:] if given is None else list(given)
            command = next((a for a in given if a in self.commands), None)
            message = _usage_message(exc, f"neftune {command}" if command else "neftune")
            console.print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True, highlight=False)
            raise SystemExit(exc.exit_code) from None
        except _abort_error(click_errors):  # Ctrl-C or end of input at a prompt
            console.print("Aborted.", highlight=False)
            raise SystemExit(1) from None
        raise SystemExit(code if isinstance(code, int) else 0)


def _abort_error(click_errors) -> type[BaseException]:
    """click's ``Abort``: typer >= 0.20 keeps it in ``typer.exceptions``, not beside the vendored
    click's other exceptions (looking it up there raised AttributeError over any other exception,
    e.g. the SystemExit of ``neftune trl sft -h``)."""
    found = getattr(click_errors, "Abort", None)
    if found is None:
        from typer.exceptions import Abort as found
    return found


def _usage_message(exc, where: str) -> str:
    """A click usage error as one line: the message, where a bad value came from, where the options are
    (``where``: the command, when the error has no context to say it)."""
    message = one_line(exc.format_message())
    ctx, param = getattr(exc, "ctx", None), getattr(exc, "param", None)
    from_file = click_api().core.ParameterSource.DEFAULT_MAP
    if (
        ctx is not None
        and param is not None
        and param.name
        and ctx.get_parameter_source(param.name) is from_file
    ):
        message = message.rstrip(".") + " (the value comes from the --config file)."
    return f"{message.rstrip('.')}. Options: {ctx.command_path if ctx is not None else where} -h"


app = typer.Typer(
    name="neftune",
    cls=_OneLineErrors,
    help="NEFTune fine-tuning with per-sequence noise, and honest evaluation of whether it helps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _fit_help_to_the_terminal() -> None:
    """``-h`` at any width: option names are never cut (typer ends them in ``…`` at 80 columns:
    ``--epochs,--num-train-epoc…``) and a long word of help text folds instead of being cut. Typer's
    option tables get a space after each comma between spellings (so they wrap there) and columns
    and help texts that fold."""
    from rich.columns import Columns
    from rich.table import Table as RichTable
    from rich.text import Text
    from typer import rich_utils

    class OptionsTable(RichTable):
        def add_row(self, *renderables, **kwargs) -> None:
            cells = list(renderables)
            for i, cell in enumerate(cells[:-1]):  # names and type; the last cell is the help
                if isinstance(cell, Text) and "," in cell.plain:
                    cells[i] = rich_utils.highlighter(Text(cell.plain.replace(",", ", "), style=cell.style))
            super().add_row(*cells, **kwargs)
            for cell, column in zip(cells[:-1], self.columns):
                # As wide as its longest spelling: wraps between spellings, never inside one.
                longest = (
                    max((len(w) for w in cell.plain.split()), default=0) if isinstance(cell, Text) else 0
                )
                if longest:
                    column.width = max(column.width or 0, longest)
            for column in self.columns:
                column.overflow = "fold"

    class HelpColumns(Columns):
        def __init__(self, renderables=None, *args, **kwargs) -> None:
            for item in renderables or ():
                if isinstance(item, Text):
                    item.overflow = "fold"
            super().__init__(renderables, *args, **kwargs)

    if getattr(rich_utils, "Table", None) is RichTable and getattr(rich_utils, "Columns", None) is Columns:
        rich_utils.Table = OptionsTable
        rich_utils.Columns = HelpColumns


_fit_help_to_the_terminal()


def _version(value: bool) -> None:
    if value:
        from .._version import version_line

        print(version_line())
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_version, help="Print the version and exit.")
    ] = False,
) -> None:
    """NEFTune fine-tuning with per-sequence noise, and honest evaluation of whether it helps."""


app.command()(train.train)
app.command("eval")(evaluate.eval_)
app.command()(export.export)
app.command()(compare.compare)
app.command()(sweep.sweep)
app.command()(analyze.analyze)
app.command()(viz.viz)
app.command("report")(report.report_)
add_framework_commands(app)  # neftune llamafactory train, neftune trl sft
app.command("ifeval")(ifeval)


def main() -> None:
    """Console-script entry point: user errors exit 2 with a message, never a traceback.

    Ctrl-C exits 130: train, eval, compare and sweep catch it themselves and say what was saved
    and how to resume (typer turns any other Ctrl-C into a silent exit 130).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()
