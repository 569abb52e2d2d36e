"""Evaluate a fine-tuned model with the noise off.

Metrics (all on the same records every time for a given data spec and seed):
- ``loss/<split>``: mean per-token cross-entropy on response tokens (held-out splits and a
  training subset: a large train/held-out gap is the overfitting NEFTune is meant to reduce);
- ``accuracy/<split>``: checked answers of greedy generations (built-in tasks only);
- ``ifeval/{prompt,instruction}_{strict,loose}``: verifiable instruction following (built-in data:
  :mod:`neftune.finetune.data.instructions`, checkers in :mod:`neftune.finetune.instructions`), over both instruction
  splits, and per split with the suffix ``/seen_types`` or ``/heldout_types``; ``length_chars/ifeval``
  is the mean length of those answers. ``EvalConfig.ifeval`` (``--ifeval FILE``): every prompt of an
  IFEval-format file instead (split ``ifeval_file``; ``docs/ifeval.md``); ``ifeval_text_units``
  says whether IFEval's own text tools or approximations counted sentences and words;
- ``length_chars``, ``length_tokens``, ``repetition_2gram``: of held-out generations;
- ``rouge_l_train``: ROUGE-L of generations on training prompts against the training
  responses (the paper's Fig. 5: lower means less memorised).
Generations are exported in AlpacaEval's JSON format (``instruction``, ``output``, ``generator``);
the instruction of a multi-turn record is the conversation up to its last answer, turn by turn.
The losses of a multi-turn record are those of its last answer. ``eval.json``'s ``records`` says
how many records (prompts) each metric was computed on.
``per_prompt.json`` keeps each generation's length and score (task answers checked, instruction
constraints followed), which the report's length control and per-constraint tables read.

Greedy decoding stops at the model's end-of-sequence token or at the cap (``max_new_tokens`` for
task and training prompts, ``ifeval_max_new_tokens`` for instruction prompts). Every generation
records ``new_tokens`` (tokens generated before the end token) and ``truncated`` (it reached the
cap without ending) in ``generations.json`` and ``per_prompt.json``; ``truncated/ifeval`` and
``truncated/tasks`` are the fractions of instruction and held-out task answers cut at the cap.
An answer cut short fails every constraint about its end (postscript, end phrase, closing quote,
JSON), so the instruction cap is set past every answer of the default model that ends: with the
quick preset's fine-tuned SmolLM2-135M, see :data:`IFEVAL_MAX_NEW_TOKENS`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .configfile import CONFIG_NAME, load_config_file, write_config
from .data import Record, check_answer, records_to_examples
from .data.bundle import resolve_data
from .data.instructions import IFEVAL_SPLIT_SUFFIX
from .data.turns import conversation_text
from .instructions.checkers import follows_all
from .instructions.text import backends as text_backends
from .io import read_json_object, write_json_atomic
from .metrics import (
    PER_PROMPT_FILE,
    alpacaeval_records,
    following_rates,
    length_stats,
    mean_rouge_l,
    repetition_rate,
)
from .models import chat_token_ids
from .outdirs import EVAL_FILES
from .progress import Progress, Tally, no_progress
from .training import RESUMABLE, RUN_FILE, run_status

#: Default cap on the answer to an instruction prompt, in new tokens. Measured
#: (benchmarks/results/cpu-generation-cap.json: SmolLM2-135M-Instruct after the quick preset's 50
#: steps at alpha 10, 160 prompts of data seeds 0 and 1, generated up to 384 tokens): every answer
#: that ended did so within 159 tokens; the other 17.5% had not ended at 384 (they repeat
#: themselves), so no cap up to 384 cuts fewer. 192 keeps every ending answer whole with a margin;
#: the earlier cap of 96 cut 21%.
IFEVAL_MAX_NEW_TOKENS = 192


@dataclass
class EvalConfig:
    """``data`` / ``seed`` (the held-out split) default to what the run folder was trained on."""

    model: str
    data: str | None = None  # default: the run's data, else builtin:quick
    out: str | None = None  # default: see eval_out_dir
    max_new_tokens: int = 64
    ifeval_max_new_tokens: int = IFEVAL_MAX_NEW_TOKENS  # answers to open-ended instruction prompts are longer
    repetition_penalty: float = 1.0
    batch_size: int = 8
    n_generate: int = 60  # per split; 0 skips generation
    n_train_loss: int = 100
    seed: int | None = None  # default: the run's data_seed, else 0
    field_map: str | None = None  # default: the run's, when evaluating on the run's data
    trust_remote_code: bool = False  # run a hub model's own Python code; only for models you trust
    # An IFEval-format JSONL file: its every prompt, instead of the built-in instruction prompts.
    ifeval: str | None = None


def eval_data_spec(cfg: EvalConfig) -> tuple[str, int]:
    """``(data spec, split seed)``: explicit values, else those saved in the run folder, else defaults."""
    saved = (read_json_object(Path(cfg.model) / RUN_FILE) or {}).get("config") or {}
    data = cfg.data if cfg.data is not None else saved.get("data", "builtin:quick")
    seed = cfg.seed if cfg.seed is not None else int(saved.get("data_seed", 0))
    return data, seed


def eval_field_map(cfg: EvalConfig) -> str | None:
    """``--field-map``, else the run's own when evaluating it on the data it was trained on."""
    if cfg.field_map is not None:
        return cfg.field_map
    saved = (read_json_object(Path(cfg.model) / RUN_FILE) or {}).get("config") or {}
    return saved.get("field_map") if eval_data_spec(cfg)[0] == saved.get("data") else None


def _slug(text: str) -> str:
    path = Path(text)
    name = path.stem if path.suffix else (path.name or text)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "data"


def eval_out_dir(cfg: EvalConfig) -> Path:
    """Where ``eval.json`` goes: ``--out``; else ``MODEL/eval`` for a run folder evaluated on its own
    data, ``MODEL/eval-<data>`` on other data, and ``runs/eval/<model>/<data>`` for other models;
    with ``--ifeval FILE``, ``-ifeval-<file>`` is added to the folder's name."""
    if cfg.out:
        return Path(cfg.out)
    folder = _default_eval_dir(cfg)
    return folder.with_name(f"{folder.name}-ifeval-{_slug(cfg.ifeval)}") if cfg.ifeval else folder


def _default_eval_dir(cfg: EvalConfig) -> Path:
    data, seed = eval_data_spec(cfg)
    run = read_json_object(Path(cfg.model) / RUN_FILE)
    if run is not None:
        saved = run.get("config") or {}
        if (data, seed) == (saved.get("data", "builtin:quick"), int(saved.get("data_seed", 0))):
            return Path(cfg.model) / "eval"
        return (
            Path(cfg.model) / f"eval-{_slug(data)}"
            if seed == 0
            else Path(cfg.model) / f"eval-{_slug(data)}-seed{seed}"
        )
    return Path("runs") / "eval" / _slug(cfg.model) / (_slug(data) + (f"-seed{seed}" if seed else ""))


def check_eval_out(cfg: EvalConfig, *, overwrite: bool = False) -> tuple[Path, str | None]:
    """Raise ``ValueError`` if the eval folder holds something this evaluation must not replace.

    Returns the folder and, when it holds an earlier evaluation that will be replaced, a note
    saying so. An earlier evaluation of another model, data or split seed is replaced only with
    ``overwrite``; files of the same names that no evaluation wrote, never.
    """
    out = eval_out_dir(cfg)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; choose a folder for eval.json")
    present = [n for n in EVAL_FILES if (out / n).exists()]
    if not present:
        return out, None
    earlier = read_json_object(out / "eval.json")
    if earlier is None or "model" not in earlier or "data" not in earlier:
        raise ValueError(
            f"{out} holds {', '.join(present)} that no neftune evaluation wrote; nothing was replaced: "
            "choose another --out"
        )
    try:
        saved = load_config_file(out / CONFIG_NAME) if (out / CONFIG_NAME).exists() else {}
    except ValueError:
        saved = {}
    data, seed = eval_data_spec(cfg)
    then = (str(earlier["model"]), str(earlier["data"]), saved.get("seed", seed), saved.get("ifeval"))
    now = (cfg.model, data, seed, cfg.ifeval)
    if then != now and not overwrite:
        raise ValueError(
            f"{out} holds an evaluation of model {then[0]!r} on {then[1]!r} (split seed {then[2]}"
            f"{f', --ifeval {then[3]}' if then[3] else ''}); this one is of {now[0]!r} on {now[1]!r} (seed {now[2]}"
            f"{f', --ifeval {now[3]}' if now[3] else ''}). Choose another --out, or pass --overwrite to replace it"
        )
    return out, f"replacing the earlier evaluation in {out}"


def _load_adapter(path: Path, trust_remote_code: bool = False):
    """A LoRA run folder: its base model (safetensors only) with the adapter merged in, and the tokenizer."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from .models import ModelError, load_model_and_tokenizer

    if not (path / "adapter_model.safetensors").exists():
        found = (
            "adapter_model.bin (a pickle, not loaded)" if (path / "adapter_model.bin").exists() else "none"
        )
        raise ModelError(
            f"{path} has adapter_config.json but no adapter_model.safetensors (found: {found}); "
            "neftune loads adapter weights from safetensors only"
        )
    try:
        base_spec = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{path / 'adapter_config.json'} is unreadable or names no base_model_name_or_path ({exc})"
        ) from None
    try:
        base, _ = load_model_and_tokenizer(base_spec, trust_remote_code=trust_remote_code)
    except ModelError as exc:
        raise ModelError(f"the LoRA adapter in {path} needs its base model {base_spec!r}: {exc}") from None
    model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def load_for_eval(spec: str, *, trust_remote_code: bool = False):
    """Model (merged LoRA if an adapter folder) and tokenizer, in eval mode.

    A ``neftune train`` folder whose run did not finish is refused (its weights are not final).
    """
    from .models import ModelError, load_model_and_tokenizer

    path = Path(spec)
    folder = bool(spec.strip()) and path.is_dir()
    if folder:
        status = run_status(path)
        if status in RESUMABLE:
            raise ModelError(
                f"{path} holds an unfinished run (neftune_run.json: running); finish it first with "
                f"`neftune train --resume --out {path}` and the same options"
            )
        if status == "corrupt":
            raise ModelError(f"{path / RUN_FILE} is unreadable: the run folder is damaged")
    if folder and (path / "adapter_config.json").exists():
        model, tok = _load_adapter(path, trust_remote_code)
    else:
        model, tok = load_model_and_tokenizer(spec, trust_remote_code=trust_remote_code)
    model.eval()
    return model, tok


def check_eval_config(cfg: EvalConfig) -> None:
    """Raise ``ValueError`` naming the first bad option of ``cfg``."""
    if cfg.n_generate < 0:
        raise ValueError(f"n_generate must be >= 0, got {cfg.n_generate}")
    for name in ("max_new_tokens", "ifeval_max_new_tokens", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.n_train_loss < 0:
        raise ValueError(f"n_train_loss must be >= 0, got {cfg.n_train_loss}")
    if not (cfg.repetition_penalty > 0 and math.isfinite(cfg.repetition_penalty)):
        raise ValueError(f"repetition_penalty must be a finite number > 0, got {cfg.repetition_penalty}")
    if cfg.out is not None and Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise ValueError(f"--out {cfg.out} is a file, not a folder; choose a folder for eval.json")
    if cfg.ifeval is not None:
        if cfg.n_generate == 0:
            raise ValueError("--ifeval needs generations: n_generate must be > 0")
        from .instructions.ifeval_format import read_ifeval_inputs

        read_ifeval_inputs(cfg.ifeval)  # a DataError (a ValueError) naming FILE:LINE


def _encode(tok: Any, record: Record) -> tuple[list[int], int]:
    prompt = chat_token_ids(tok, record.prompt_messages, add_generation_prompt=True)
    return chat_token_ids(tok, record.messages), len(prompt)


def response_loss(
    model: Any, tok: Any, records: list[Record], batch_size: int = 8, max_length: int = 1024
) -> float:
    """Mean cross-entropy (nats/token) over response tokens, noise off."""
    import torch

    total, count = 0.0, 0
    device = next(model.parameters()).device
    encoded = [_encode(tok, r) for r in records]
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            width = min(max_length, max(len(ids) for ids, _ in chunk))
            ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
            labels = torch.full_like(ids, -100)
            mask = torch.zeros_like(ids)
            for i, (seq, n_prompt) in enumerate(chunk):
                seq = seq[:width]
                ids[i, : len(seq)] = torch.tensor(seq)
                mask[i, : len(seq)] = 1
                labels[i, n_prompt : len(seq)] = torch.tensor(seq[n_prompt:])
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:].to(device)
            loss = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.shape[-1]),
                shift_labels.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total += loss.item()
            count += int((shift_labels != -100).sum())
    return total / count if count else math.nan


@dataclass(frozen=True)
class Answer:
    """One greedy generation: its ``text`` (special tokens dropped, stripped), ``new_tokens``
    (tokens generated before the end-of-sequence token) and ``truncated`` (it reached
    ``max_new_tokens`` without producing the end token)."""

    text: str
    new_tokens: int
    truncated: bool


def _end_token_ids(model: Any, tok: Any) -> set[int]:
    """The token ids that end a generation: the model's generation config's, else the tokenizer's."""
    found: set[int] = set()
    for source in (getattr(model, "generation_config", None), tok):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, (list, tuple)):
            found.update(v for v in value if isinstance(v, int))
    return found


def generate_answers(
    model: Any,
    tok: Any,
    records: list[Record],
    *,
    max_new_tokens: int = 64,
    repetition_penalty: float = 1.0,
    batch_size: int = 8,
    progress: Tally | None = None,
) -> list[Answer]:
    """Greedy responses to each record's prompt (left-padded batches, noise off), stopping at the
    end-of-sequence token or after ``max_new_tokens``, with their token counts and truncation.

    ``progress``: each batch's responses are added to it as they are generated.
    """
    import torch

    tok.padding_side = "left"
    device = next(model.parameters()).device
    ends = _end_token_ids(model, tok)
    answers: list[Answer] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        texts = [
            tok.apply_chat_template(r.prompt_messages, add_generation_prompt=True, tokenize=False)
            for r in chunk
        ]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            gen = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                repetition_penalty=repetition_penalty,
                pad_token_id=tok.pad_token_id,
            )
        new = gen[:, enc["input_ids"].shape[1] :]
        decoded = tok.batch_decode(new, skip_special_tokens=True)
        for row, text in zip(new.tolist(), decoded):
            end = next((i for i, t in enumerate(row) if t in ends), None)
            answers.append(
                Answer(
                    text=text.strip(),
                    new_tokens=len(row) if end is None else end,
                    truncated=end is None and len(row) >= max_new_tokens,
                )
            )
        if progress is not None:
            progress.add(len(chunk))
    return answers


def generate(
    model: Any,
    tok: Any,
    records: list[Record],
    *,
    max_new_tokens: int = 64,
    repetition_penalty: float = 1.0,
    batch_size: int = 8,
    progress: Tally | None = None,
) -> list[str]:
    """The texts of :func:`generate_answers`."""
    return [
        a.text
        for a in generate_answers(
            model,
            tok,
            records,
            max_new_tokens=max_new_tokens,
            repetition_penalty=repetition_penalty,
            batch_size=batch_size,
            progress=progress,
        )
    ]


def _generation_rows(records: list[Record], answers: list[Answer]) -> list[dict[str, Any]]:
    """``generations.json`` rows: each prompt (the conversation so far, for a multi-turn record),
    its reference response, the model's output, its token count and whether the cap cut it."""
    return [
        {
            "prompt": conversation_text(r.messages),
            "reference": r.response,
            "output": a.text,
            "new_tokens": a.new_tokens,
            "truncated": a.truncated,
        }
        for r, a in zip(records, answers)
    ]


def _truncated_rate(answers: list[Answer]) -> float:
    return sum(a.truncated for a in answers) / len(answers) if answers else math.nan


def _instruction_metrics(
    splits: dict[str, list[Record]],
    cfg: EvalConfig,
    answer: Callable[[list[Record], int], list[Answer]],
    generations: dict[str, list[dict[str, Any]]],
    per_prompt: dict[str, list[dict[str, Any]]],
    counts: dict[str, int],
) -> dict[str, float]:
    """``ifeval/*`` metrics of ``answer(records, max_new_tokens)`` per instruction split; fills
    ``generations`` (with each prompt's constraints, so the answers can be re-scored later),
    ``per_prompt`` and ``counts`` (prompts behind each metric)."""
    out: dict[str, float] = {}
    all_strict: list[list[bool]] = []
    all_loose: list[list[bool]] = []
    all_answers: list[Answer] = []
    for name, records in splits.items():
        subset = records[: cfg.n_generate]
        if not subset:
            continue
        answers = answer(subset, cfg.ifeval_max_new_tokens)
        outs = [a.text for a in answers]
        constraints = [r.meta["constraints"] for r in subset]
        # Each answer is checked once per mode; the split's, the overall and the per-prompt
        # figures all come from these results.
        strict = [follows_all(cs, o) for cs, o in zip(constraints, outs)]
        loose = [follows_all(cs, o, loose=True) for cs, o in zip(constraints, outs)]
        suffix = IFEVAL_SPLIT_SUFFIX.get(name, name)
        for key, value in following_rates(strict, loose).items():
            out[f"ifeval/{key}/{suffix}"] = value
            counts[f"ifeval/{key}/{suffix}"] = len(subset)
        all_strict += strict
        all_loose += loose
        all_answers += answers
        generations[name] = [
            {
                "prompt": r.messages[-2]["content"],
                "output": a.text,
                "new_tokens": a.new_tokens,
                "truncated": a.truncated,
                "constraints": [{"kind": c["kind"], "args": c.get("args") or {}} for c in cs],
            }
            for r, cs, a in zip(subset, constraints, answers)
        ]
        per_prompt[name] = [
            {
                **({"key": r.meta["key"]} if "key" in r.meta else {}),  # an --ifeval file's key
                "length_chars": len(a.text),
                "variant": r.meta.get("variant"),
                "kinds": [c["kind"] for c in cs],
                "strict": s,
                "loose": lo,
                "new_tokens": a.new_tokens,
                "truncated": a.truncated,
            }
            for r, cs, a, s, lo in zip(subset, constraints, answers, strict, loose)
        ]
    if all_answers:
        for key, value in following_rates(all_strict, all_loose).items():
            out[f"ifeval/{key}"] = value
            counts[f"ifeval/{key}"] = len(all_answers)
        out["length_chars/ifeval"] = sum(len(a.text) for a in all_answers) / len(all_answers)
        out["truncated/ifeval"] = _truncated_rate(all_answers)
        counts["length_chars/ifeval"] = counts["truncated/ifeval"] = len(all_answers)
    return out


def evaluate(cfg: EvalConfig, *, progress: Progress | None = None) -> dict[str, Any]:
    """Compute every metric above; writes ``eval.json`` and ``generations.json`` into ``cfg.out``.

    ``progress``: called as ``progress("evaluate", generated, total)`` before the model loads
    and after every batch of generated responses (:mod:`neftune.finetune.progress`).
    """
    check_eval_config(cfg)
    data, split_seed = eval_data_spec(cfg)
    bundle = resolve_data(
        data, seed=split_seed, field_map=eval_field_map(cfg)
    )  # fails before the model loads
    ifeval_cfg = cfg
    if cfg.ifeval:  # an IFEval-format file, every prompt, replaces the built-in instruction prompts
        from .instructions.ifeval_format import IFEVAL_FILE_SPLIT, ifeval_records, read_ifeval_inputs

        bundle.ifeval = {IFEVAL_FILE_SPLIT: ifeval_records(read_ifeval_inputs(cfg.ifeval))}
        ifeval_cfg = replace(cfg, n_generate=len(bundle.ifeval[IFEVAL_FILE_SPLIT]))
    prompted = [*bundle.evals.values(), bundle.train] if cfg.n_generate else []
    n_prompts = sum(min(cfg.n_generate, len(r)) for r in prompted)
    n_prompts += (
        sum(min(ifeval_cfg.n_generate, len(r)) for r in bundle.ifeval.values()) if cfg.n_generate else 0
    )
    tally = Tally(progress or no_progress, "evaluate", n_prompts)
    tally.add(0)  # the total, before the model loads
    model, tok = load_for_eval(cfg.model, trust_remote_code=cfg.trust_remote_code)
    metrics: dict[str, Any] = {"model": cfg.model, "data": data}
    counts: dict[str, int] = {}  # records behind each metric (eval.json "records", the table's column)
    train_subset = bundle.train[: cfg.n_train_loss]
    metrics["loss/train"] = response_loss(model, tok, train_subset, cfg.batch_size)
    counts["loss/train"] = len(train_subset)
    for name, records in bundle.evals.items():
        metrics[f"loss/{name}"] = response_loss(model, tok, records, cfg.batch_size)
        counts[f"loss/{name}"] = len(records)

    generations: dict[str, list[dict[str, str]]] = {}
    per_prompt: dict[str, list[dict[str, Any]]] = {}
    if cfg.n_generate > 0:

        def answer(records: list[Record], max_new_tokens: int = cfg.max_new_tokens) -> list[Answer]:
            return generate_answers(
                model,
                tok,
                records,
                max_new_tokens=max_new_tokens,
                repetition_penalty=cfg.repetition_penalty,
                batch_size=cfg.batch_size,
                progress=tally,
            )

        held_out: list[Answer] = []
        export = []
        for name, records in bundle.evals.items():
            subset = records[: cfg.n_generate]
            answers = answer(subset)
            outs = [a.text for a in answers]
            held_out.extend(answers)
            generations[name] = _generation_rows(subset, answers)
            export.extend(
                alpacaeval_records(
                    [conversation_text(r.messages) for r in subset],
                    outs,
                    generator=Path(cfg.model).name or cfg.model,
                )
            )
            if bundle.builtin:
                correct = [check_answer(e, o) for e, o in zip(records_to_examples(subset), outs)]
                metrics[f"accuracy/{name}"] = sum(correct) / len(
                    correct
                )  # metrics.accuracy, from these checks
                counts[f"accuracy/{name}"] = len(correct)
                per_prompt[name] = [
                    {
                        "length_chars": len(a.text),
                        "correct": c,
                        "new_tokens": a.new_tokens,
                        "truncated": a.truncated,
                    }
                    for a, c in zip(answers, correct)
                ]
        metrics.update(
            _instruction_metrics(bundle.ifeval, ifeval_cfg, answer, generations, per_prompt, counts)
        )
        if bundle.ifeval:
            metrics["ifeval_text_units"] = text_backends()  # exact IFEval tools or approximations
        train_gen = bundle.train[: cfg.n_generate]
        train_answers = answer(train_gen)
        metrics["rouge_l_train"] = mean_rouge_l(
            [a.text for a in train_answers], [r.response for r in train_gen]
        )
        held_out_texts = [a.text for a in held_out]
        stats = length_stats(held_out_texts, tokenizer=tok)
        metrics["length_chars"] = stats.get("mean_chars")
        metrics["length_tokens"] = stats.get("mean_tokens")
        metrics["repetition_2gram"] = sum(repetition_rate(t) for t in held_out_texts) / len(held_out_texts)
        metrics["truncated/tasks"] = _truncated_rate(held_out)
        counts["rouge_l_train"] = len(train_gen)
        counts.update(
            dict.fromkeys(
                ("length_chars", "length_tokens", "repetition_2gram", "truncated/tasks"), len(held_out_texts)
            )
        )
        generations["train"] = _generation_rows(train_gen, train_answers)
    out = eval_out_dir(cfg)
    for name in ("generations.json", "alpaca_eval.json", PER_PROMPT_FILE):  # an earlier evaluation's
        if not generations and (out / name).exists():
            (out / name).unlink()
    if generations:
        write_json_atomic(out / "generations.json", generations)
        write_json_atomic(out / "alpaca_eval.json", export)
        write_json_atomic(out / PER_PROMPT_FILE, {"schema": "neftune.per_prompt/1", "splits": per_prompt})
    write_config(
        out / CONFIG_NAME, {**asdict(cfg), "data": data, "seed": split_seed, "out": str(out)}, command="eval"
    )
    metrics["records"] = counts
    write_json_atomic(out / "eval.json", metrics)
    return metrics
