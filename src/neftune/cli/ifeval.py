"""``neftune ifeval``: score responses made elsewhere on an IFEval-format prompt file.

Thin: its options are declared in :mod:`neftune.cli.options`; it calls
:mod:`neftune.finetune.instructions.ifeval_format` and prints. Registered on the ``neftune`` app by
:mod:`neftune.cli`.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import options as opts

_err = Console(stderr=True)


def _fail(message: str) -> None:
    _err.print(f"[bold red]Error:[/] {escape(' '.join(message.split()))}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def ifeval(
    input: opts.IfevalInput,
    responses: opts.IfevalResponses,
    out: opts.IfevalOut = None,
    overwrite: opts.IfevalOverwrite = False,
    as_json: opts.ScoresAsJson = False,
) -> None:
    """Score responses made elsewhere (vLLM, another trainer) as IFEval's own script does: strict and loose,
    prompt and instruction level, all 25 instruction types."""
    from ..finetune.data.formats import DataError
    from ..finetune.instructions.ifeval_format import (
        check_out_dir,
        read_ifeval_inputs,
        read_responses,
        score,
        summarize,
        write_results,
    )
    from ..finetune.instructions.text import backends, exact

    try:
        if out is not None:
            check_out_dir(out, overwrite=overwrite)
        prompts = read_ifeval_inputs(input)
        results = score(prompts, read_responses(responses), source=str(responses))
    except (DataError, ValueError) as exc:
        _fail(str(exc))
    summary = summarize(results)
    metrics = {
        **summary["metrics"],
        "n_prompts": len(results),
        "n_instructions": sum(len(r["strict"]) for r in results),
    }
    if out is not None:
        try:
            write_results(out, results, summary, {"input": str(input), "responses": str(responses)})
        except OSError as exc:
            _fail(f"could not write to --out {out}: {exc}")
    if as_json:
        print(json.dumps(metrics, indent=2))
    else:
        table = Table(title=f"IFEval: {input.name} ({len(results)} prompts)")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in summary["metrics"].items():
            table.add_row(key, f"{value:.4f}")
        Console().print(table)
        by_id = Table(title="by instruction")
        for column in ("instruction", "n", "strict", "loose"):
            by_id.add_column(column, justify="left" if column == "instruction" else "right")
        for name, row in summary["by_instruction"].items():
            by_id.add_row(name, str(row["n"]), f"{row['strict']:.3f}", f"{row['loose']:.3f}")
        Console().print(by_id)
    if not exact():
        units = backends()
        _err.print(
            "[yellow]Note:[/] not IFEval's exact text tools: "
            + "; ".join(f"{k}: {v}" for k, v in units.items())
            + ". pip install 'neftune[ifeval]' for them.",
            soft_wrap=True,
            highlight=False,
        )
    if out is not None:
        _err.print(f"Written to {out}", soft_wrap=True, highlight=False)
