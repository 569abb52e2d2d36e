"""Soak: thousands of tiny training steps with neftune on, watching memory and hooks.

Two runs on CPU, each with a linear alpha schedule:

- ``plain``: a hand-written loop over a tiny Llama (``activate`` + ``handle.set_progress`` every
  step), re-activated every ``--reactivate-every`` steps as repeated ``train()`` calls would;
- ``trainer``: a transformers ``Trainer`` with ``neftune.integrations.attach`` for many steps,
  then ``train()`` called again on the same trainer.

At the start (after a warm-up step, once the optimizer state exists), the middle and the end it
records the process RSS, the number of live tensors (``gc``), the forward hooks / pre-hooks on all
modules (neftune's and everyone's) and the number of active neftune handles.

    python benchmarks/soak.py --plain-steps 5000 --trainer-steps 2000 --json soak.json
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch

import neftune
from neftune.activation.hooks import _ACTIVE, _Hook, _Inert
from neftune.finetune.io import write_json_atomic

VOCAB, HIDDEN = 256, 64


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; psutil elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def hook_counts(model: torch.nn.Module) -> dict[str, int]:
    """Forward hooks and pre-hooks on ``model``'s modules (neftune's, everyone's), and the active
    neftune handles attached to its modules."""
    ours = total = 0
    for module in model.modules():
        for fn in (*module._forward_hooks.values(), *module._forward_pre_hooks.values()):
            total += 1
            ours += isinstance(fn, _Hook | _Inert)
    handles = {id(_ACTIVE[m]()) for m in model.modules() if m in _ACTIVE and _ACTIVE[m]() is not None}
    return {"neftune_hooks": ours, "all_forward_hooks": total, "active_handles": len(handles)}


def live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on torch's lazy deprecated aliases warns
        warnings.simplefilter("ignore")
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def sample(model: torch.nn.Module, step: int) -> dict[str, Any]:
    return {"step": step, "rss_mb": round(rss_mb(), 1), "live_tensors": live_tensors(), **hook_counts(model)}


def tiny_model() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
    )
    return LlamaForCausalLM(cfg)


def batch(gen: torch.Generator, rows: int = 4, cols: int = 32) -> dict[str, torch.Tensor]:
    """Right-padded rows of random lengths 1..cols; labels -100 on padding."""
    lengths = torch.randint(1, cols + 1, (rows,), generator=gen)
    ids = torch.randint(1, VOCAB, (rows, cols), generator=gen)
    mask = (torch.arange(cols) < lengths[:, None]).long()
    ids = ids * mask
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def plain_soak(steps: int, reactivate_every: int = 500) -> dict[str, Any]:
    """A plain loop; the schedule advances every step; a fresh activation every ``reactivate_every``."""
    model = tiny_model()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    samples, noised = [], 0
    marks = {1, steps // 2, steps}
    start = time.perf_counter()
    handle = neftune.activate(model, 5.0, schedule="linear", seed=0)
    for step in range(1, steps + 1):
        if step > 1 and (step - 1) % reactivate_every == 0:
            noised += handle.noised_calls
            handle.remove()
            handle = neftune.activate(model, 5.0, schedule="linear", seed=step)
        model(**batch(gen)).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        handle.set_progress(step, steps)
        if step in marks:
            samples.append(sample(model, step))
    noised += handle.noised_calls
    final_alpha = handle.alpha  # linear schedule at step == steps: 0
    handle.remove()
    seconds = time.perf_counter() - start
    return {
        "steps": steps,
        "reactivations": (steps - 1) // reactivate_every,
        "noised_forwards": noised,
        "final_alpha": final_alpha,
        "seconds": round(seconds, 1),
        "samples": samples,
        "after_removal": sample(model, steps),
    }


def trainer_soak(steps: int, out_dir: str) -> dict[str, Any]:
    """A transformers Trainer with attach() for ``steps`` steps, then a second train() call."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from neftune.integrations import attach

    gen = torch.Generator().manual_seed(1)
    rows = [batch(gen, rows=1) for _ in range(64)]
    dataset = [{k: v[0] for k, v in r.items()} for r in rows]

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}

    samples: list[dict[str, Any]] = []

    class Sampler(TrainerCallback):
        def __init__(self, marks: set[int]) -> None:
            self.marks = marks

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step in self.marks:
                samples.append(sample(model, state.global_step))

    model = tiny_model()
    args = TrainingArguments(
        output_dir=out_dir,
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collate,
        callbacks=[Sampler({1, steps // 2, steps})],
    )
    callback = attach(trainer, 5.0, schedule="linear", seed=0)
    start = time.perf_counter()
    trainer.train()
    first = callback.handle
    after_first = sample(model, steps)
    trainer.train()  # again: a second activation on the same model, removed at the end again
    seconds = time.perf_counter() - start
    return {
        "steps_per_train_call": steps,
        "train_calls": 2,
        "noised_forwards_first_call": first.noised_calls,
        "final_logged_alpha": next(
            (row["neftune/alpha"] for row in reversed(trainer.state.log_history) if "neftune/alpha" in row),
            None,
        ),
        "seconds": round(seconds, 1),
        "samples": samples,
        "after_first_call": after_first,
        "after_second_call": sample(model, 2 * steps),
    }


def growth(samples: list[dict[str, Any]], key: str) -> float:
    return round(samples[-1][key] - samples[0][key], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plain-steps", type=int, default=5000)
    parser.add_argument("--trainer-steps", type=int, default=2000)
    parser.add_argument("--reactivate-every", type=int, default=500)
    parser.add_argument("--out-dir", default="/tmp/neftune-soak")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    report: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }
    if args.plain_steps:
        report["plain"] = plain_soak(args.plain_steps, args.reactivate_every)
    if args.trainer_steps:
        report["trainer"] = trainer_soak(args.trainer_steps, args.out_dir)
    for name in ("plain", "trainer"):
        if name not in report:
            continue
        samples = report[name]["samples"]
        print(f"{name}: {report[name]['seconds']} s")
        for s in samples:
            print(
                f"  step {s['step']:6d}  RSS {s['rss_mb']:7.1f} MiB  live tensors {s['live_tensors']:5d}  "
                f"neftune hooks {s['neftune_hooks']}  all forward hooks {s['all_forward_hooks']}  "
                f"active handles {s['active_handles']}"
            )
        print(
            f"  RSS growth start->end {growth(samples, 'rss_mb')} MiB, live tensors {growth(samples, 'live_tensors')}"
        )
        final = report[name].get("after_removal") or report[name].get("after_second_call")
        print(
            f"  after removal: neftune hooks {final['neftune_hooks']}, active handles {final['active_handles']}"
        )
    if args.json:
        write_json_atomic(args.json, report)


if __name__ == "__main__":
    main()
