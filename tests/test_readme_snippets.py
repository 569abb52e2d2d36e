"""Every code snippet of README.md runs, so the README cannot drift from the code (issue 24).

How the README marks its snippets (an HTML comment on the line right above the fence):

- no marker: a ``bash`` block runs line by line (every line is a ``neftune`` command), a ``python``
  block runs as it is;
- ``<!-- readme-test: setup NAME -->``: a ``python`` block runs after the setup NAME below made the
  names it uses (``model``, ``ds``, ``tok``, ...: tiny models built from configs, a few records);
- ``<!-- readme-test: file -->``: a ``yaml`` block whose first line is ``# FILE: COMMAND`` is
  written to FILE, then COMMAND runs;
- ``<!-- readme-test: skip: REASON -->``: not run (installs, GPU-sized runs), with the reason.

A block in any other language, an unmarked line that is not a ``neftune`` command, a marker that is
not followed by a fence or names an unknown setup: the test fails and says which line of the README.
Output blocks (no language) are text, not snippets.

The ``neftune`` commands run in one folder, in README order (later ones use earlier ones' runs), with
a few options appended to keep them small: the tiny model, a few steps, one seed, a few generations,
and, for compare and sweep, the small user data file (their grid of arms is unchanged).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import cli, load_script

pytest.importorskip("trl")
README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = re.compile(r"^<!-- readme-test: (?P<what>.*?) -->\s*$")
FENCE = re.compile(r"^```(?P<language>[\w-]*)\s*$")
SHELL = {"bash", "sh", "shell"}
KNOWN = {"python", "yaml", *SHELL}


@dataclass
class Snippet:
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    marker: str | None  # what the marker right above says

    @property
    def id(self) -> str:
        return f"README.md:{self.line}"


def snippets(text: str | None = None) -> list[Snippet]:
    """Every fenced block of the README with a language, and its marker."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    out, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            marker = MARKER.match(lines[i])
            if marker and not (i + 1 < len(lines) and FENCE.match(lines[i + 1])):
                raise AssertionError(
                    f"README.md:{i + 1}: a readme-test marker must be right above a ``` fence"
                )
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        above = MARKER.match(lines[i - 1]) if i else None
        if fence["language"]:
            out.append(
                Snippet(i + 1, fence["language"], "\n".join(lines[i + 1 : end]), above and above["what"])
            )
        i = end + 1
    return out


# --------------------------------------------------------------------------- setups of python snippets


def _setup_model() -> dict:
    import torch

    import neftune

    from conftest import tiny_llama

    ids = torch.randint(1, 128, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0

    def train(model):
        model.train()
        model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()

    return {"neftune": neftune, "model": tiny_llama(), "train": train}


def _setup_embeds() -> dict:
    import torch

    import neftune

    embeds = torch.randn(1, 12, 64)
    mask = torch.tensor([[1] * 10 + [0] * 2])
    pos = torch.tensor([[*range(5), *range(7)]])
    cu = torch.tensor([0, 5, 12], dtype=torch.int32)
    return {"neftune": neftune, "embeds": embeds, "mask": mask, "pos": pos, "cu": cu,
            "gen": torch.Generator().manual_seed(0)}  # fmt: skip


def _setup_trainer() -> dict:
    from transformers import DataCollatorForLanguageModeling

    from conftest import lm_dataset, tiny_llama

    tok, ds = lm_dataset()
    return {"model": tiny_llama(), "ds": ds, "collator": DataCollatorForLanguageModeling(tok, mlm=False)}


def _setup_sft() -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from neftune.finetune.models import resolve_model

    folder = resolve_model("tiny")
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Say {i}."}],
            "completion": [{"role": "assistant", "content": f"{i}"}],
        }
        for i in range(4)
    ]
    return {
        "model": AutoModelForCausalLM.from_pretrained(folder),
        "tok": AutoTokenizer.from_pretrained(folder),
        "ds": Dataset.from_list(rows),
    }


def _setup_peft() -> dict:
    import torch

    import neftune

    from conftest import tiny_llama

    return {"torch": torch, "neftune": neftune, "base": tiny_llama(), "ids": torch.randint(1, 128, (2, 8))}


def _setup_accelerate() -> dict:
    import torch
    from accelerate import Accelerator

    import neftune

    from conftest import tiny_llama

    model = tiny_llama()
    ids = torch.randint(1, 128, (2, 8))
    return {
        "neftune": neftune, "accelerator": Accelerator(cpu=True), "model": model,
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.01), "steps": 2,
        "ids": ids, "mask": torch.ones_like(ids), "labels": ids,
    }  # fmt: skip


def _setup_loop() -> dict:
    import torch

    import neftune

    tiny = load_script("examples/plain_loop.py").TinyLM()
    ids = torch.randint(1, 64, (2, 12))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}

    def loss_fn(logits, labels):
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())

    return {"neftune": neftune, "model": tiny, "loader": [batch, batch], "loss_fn": loss_fn}


SETUPS = {
    "model": _setup_model,
    "embeds": _setup_embeds,
    "trainer": _setup_trainer,
    "sft": _setup_sft,
    "peft": _setup_peft,
    "accelerate": _setup_accelerate,
    "loop": _setup_loop,
}

# --------------------------------------------------------------------------- the checks


def _problem(snippet: Snippet) -> str | None:
    """Why the test cannot run ``snippet`` as marked, or None."""
    marker = snippet.marker or ""
    if marker.startswith("skip"):
        return None if marker.partition("skip:")[2].strip() else "a skip marker needs a reason: skip: REASON"
    if snippet.language not in KNOWN:
        return f"a ```{snippet.language} block: run it as python, bash or yaml, or mark it skip: REASON"
    if snippet.language == "python":
        name = marker.removeprefix("setup").strip()
        if marker and (not marker.startswith("setup") or name not in SETUPS):
            return f"unknown marker {marker!r} (setups: {', '.join(SETUPS)})"
        return None
    if snippet.language == "yaml":
        first = snippet.code.splitlines()[0] if snippet.code else ""
        if marker != "file" or not re.match(r"^# \S+: neftune ", first):
            return "a yaml block runs only marked `file`, with `# FILE: neftune ...` on its first line"
        return None
    if marker:
        return f"unknown marker {marker!r} on a shell block"
    for command in _commands(snippet.code):
        if command[0] != "neftune":
            return f"{shlex.join(command)!r} is not a neftune command: mark the block skip: REASON"
    return None


def _commands(code: str) -> list[list[str]]:
    return [words for line in code.splitlines() if (words := shlex.split(line, comments=True))]


def test_every_snippet_is_run_or_marked_with_a_reason():
    found = snippets()
    assert {s.language for s in found} >= {"python", "bash", "yaml"}
    problems = [f"{s.id}: {p}" for s in found if (p := _problem(s))]
    assert not problems, "\n".join(problems)


def test_the_checker_refuses_what_it_cannot_run():
    text = (
        "```bash\nmake demo\n```\n"
        "<!-- readme-test: skip: -->\n```bash\nneftune train\n```\n"
        "```toml\n[a]\n```\n"
        "<!-- readme-test: setup nothing -->\n```python\nx = 1\n```\n"
        "```\nplain output\n```\n"
    )
    problems = [_problem(s) for s in snippets(text)]
    assert len(problems) == 4 and all(problems), problems
    assert "'make demo' is not a neftune command" in problems[0]
    with pytest.raises(AssertionError, match="must be right above"):
        snippets("<!-- readme-test: skip: x -->\n\n```bash\nneftune\n```\n")


def _python_snippets() -> list[Snippet]:
    return [s for s in snippets() if s.language == "python" and not (s.marker or "").startswith("skip")]


@pytest.mark.usefixtures("neftune_cache")
@pytest.mark.parametrize("snippet", _python_snippets(), ids=lambda s: s.id)
def test_python_snippet_runs(snippet, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    name = (snippet.marker or "").removeprefix("setup").strip()
    namespace = {"__name__": "readme_snippet", **(SETUPS[name]() if name else {})}
    exec(compile(snippet.code, snippet.id, "exec"), namespace)


#: Appended to each neftune command (later options win): a tiny model, a few steps and generations.
FAST = {
    "train": ["--model", "tiny", "--max-steps", "2", "--batch-size", "2", "--max-length", "256"],
    "eval": ["--n-generate", "2", "--max-new-tokens", "4", "--n-train-loss", "8"],
    "compare": [
        "--model",
        "tiny",
        "--data",
        "mydata.jsonl",
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--max-length",
        "256",
        "--seeds",
        "1",
        "--n-generate",
        "1",
        "--max-new-tokens",
        "2",
        "--n-train-loss",
        "4",
        "--curve-every",
        "0",
        "--no-report",
    ],
    "analyze": ["--model", "tiny", "--n-sequences", "4"],
    "viz": ["--model", "tiny"],
}
FAST["sweep"] = FAST["compare"]


def _user_files(folder: Path) -> None:
    """The files the README's commands read: `mydata.jsonl` (Alpaca) and `data/support.jsonl` (chat)."""
    alpaca = [{"instruction": f"Spell {w} backwards.", "output": w[::-1]} for w in
              ("cat", "dog", "sun", "moon", "tree", "lake", "rain", "snow", "wind", "leaf", "rock", "sand")]  # fmt: skip
    (folder / "mydata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in alpaca))
    (folder / "data").mkdir()
    chat = [{"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]}
            for r in alpaca]  # fmt: skip
    (folder / "data" / "support.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat))


@pytest.mark.slow
@pytest.mark.usefixtures("neftune_cache")
def test_shell_snippets_run_in_order(tmp_path, monkeypatch):
    """Every neftune command of the README, in order, in one folder: each exits 0."""
    monkeypatch.chdir(tmp_path)
    _user_files(tmp_path)
    ran = []
    for snippet in snippets():
        if (snippet.marker or "").startswith("skip") or snippet.language not in (*SHELL, "yaml"):
            continue
        if snippet.language == "yaml":
            name, _, command = snippet.code.splitlines()[0].removeprefix("# ").partition(": ")
            (tmp_path / name).write_text(snippet.code + "\n")
            commands = [shlex.split(command)]
        else:
            commands = _commands(snippet.code)
        for words in commands:
            args = [*words[1:], *FAST.get(words[1], [])]
            code, text = cli(*args)
            assert code == 0, f"{snippet.id}: {shlex.join(words)} exited {code}: {text}"
            ran.append(words[1])
    assert {"train", "eval", "export", "compare", "sweep", "analyze", "viz", "report"} <= set(ran), ran
    assert (tmp_path / "runs" / "support-a5" / "adapter_model.safetensors").exists(), "mine.yaml: a LoRA run"
    assert (tmp_path / "runs" / "cmp" / "report" / "report.html").exists()
