"""``neftune export``: a run as a plain transformers folder, a LoRA adapter merged in."""

from __future__ import annotations

from pathlib import Path

from . import options as opts
from .common import console, fail, quiet_libraries, user_errors


def export(
    model: opts.ExportModel,
    out: opts.ExportOut,
    merge: opts.Merge = True,
    trust_remote_code: opts.TrustRemoteCode = False,
) -> None:
    """Write a run as a plain transformers folder (safetensors + tokenizer), a LoRA adapter merged in.

    The result loads anywhere with AutoModelForCausalLM.from_pretrained(OUT), without neftune or PEFT.
    """
    import shlex

    from ..finetune.outdirs import creation_problem, entries

    path = Path(model)
    if not path.is_dir():
        fail(f"--model {model}: no such run folder")
    is_adapter = (path / "adapter_config.json").exists()
    if is_adapter and not merge:
        fail(
            f"{model} holds a LoRA adapter: it is already usable as is (PeftModel.from_pretrained); "
            "export it with --merge for a standalone model"
        )
    problem = creation_problem(out)
    if problem or entries(out):
        fail(f"--out {out}: {problem or 'is not empty'}; export writes only into a new or empty folder")
    from ..finetune.evaluation import load_for_eval

    quiet_libraries()
    try:
        with console.status("loading" + (" and merging the adapter" if is_adapter else "")):
            loaded, tokenizer = load_for_eval(model, trust_remote_code=trust_remote_code)
            loaded.save_pretrained(out, safe_serialization=True)
            tokenizer.save_pretrained(out)
    except user_errors() as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}", code=1)
    kind = "base model with the LoRA adapter merged in" if is_adapter else "full model"
    console.print(
        f"[green]Exported[/] {kind} to {out}. Load it with: "
        f"AutoModelForCausalLM.from_pretrained({shlex.quote(str(out))!r})",
        soft_wrap=True,
        highlight=False,
    )
