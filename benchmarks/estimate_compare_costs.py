#!/usr/bin/env python
"""Measure, on the CPU, the host-side costs that bound the GPU comparison of gpu_compare.py.

SmolLM2-135M on an H200 is host-bound: its matrix work per step is a few milliseconds (see
docs/performance.md), while every layer still costs Python, dispatcher and launch time. That
host time does not depend on the layers' width, so it is measured here with a *depth proxy*:
a random Llama with SmolLM2's 30 layers and vocabulary but hidden size 64, whose arithmetic is
negligible beside its host work. On the proxy, with the built-in data of ``--preset``:

  plain_step_s    forward + backward + AdamW step of a batch of --batch real records (packed,
                  as padding-free training feeds them), median of --steps
  trainer_step_s  one optimizer step of ``neftune.finetune.training.train`` (TRL SFTTrainer, padding-free)
                  on the same data: the difference to plain_step_s is the trainer's own work
  trainer_setup_s train() wall time minus its steps: model load, tokenising the data, saving
  decode_step_s   one greedy decoding step of a batch of 8 prompts (``neftune.finetune.evaluation.generate``)
  tokens          mean chat-templated tokens per training record

Times are the process's CPU time (``time.process_time``, all its threads), not wall time: on a
shared machine wall time measures the neighbours' load; CPU time measures this work. Run with
``--threads 1`` so that CPU time is also the time one core would take.

    python benchmarks/estimate_compare_costs.py --out benchmarks/results/cpu-compare-costs.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import machine_info

from neftune.finetune.io import write_json_atomic


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="standard")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from neftune.experiments.plan import from_preset
    from neftune.finetune.data.bundle import resolve_data
    from neftune.finetune.evaluation import generate
    from neftune.finetune.models import chat_token_ids, tiny_model_dir
    from neftune.finetune.training import TrainConfig, train

    cfg = from_preset(args.preset)
    proxy = tiny_model_dir(hidden=64, layers=30)
    tok = AutoTokenizer.from_pretrained(proxy)
    bundle = resolve_data(cfg.train.data, seed=cfg.train.data_seed)
    sample = bundle.train[:200]
    encoded = [chat_token_ids(tok, r.messages) for r in sample]
    mean_tokens = statistics.fmean(len(e) for e in encoded)

    # Plain loop: one packed row of --batch records, fwd + bwd + AdamW.
    model = AutoModelForCausalLM.from_pretrained(proxy).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.cat([torch.tensor(e) for e in encoded[: args.batch]])[None]
    pos = torch.cat([torch.arange(len(e)) for e in encoded[: args.batch]])[None]
    times = []
    for i in range(args.steps + 1):
        t0 = time.process_time()
        opt.zero_grad(set_to_none=True)
        model(input_ids=ids, position_ids=pos, labels=ids).loss.backward()
        opt.step()
        if i:  # first step: allocator warm-up
            times.append(time.process_time() - t0)
    plain = statistics.median(times)

    # Greedy decoding, batch of 8 prompts: per decoding step.
    model.eval()
    records = bundle.evals[next(iter(bundle.evals))][:8]
    generate(model, tok, records, max_new_tokens=2, batch_size=8)  # warm-up
    t0 = time.process_time()
    generate(model, tok, records, max_new_tokens=args.new_tokens, batch_size=8)
    t_long = time.process_time() - t0
    t0 = time.process_time()
    generate(model, tok, records, max_new_tokens=2, batch_size=8)
    t_short = time.process_time() - t0
    decode = (t_long - t_short) / (args.new_tokens - 2)  # prefill and tokenising cancel out

    # The trainer: neftune's train() (TRL SFTTrainer), padding-free, per step and setup.
    class StepTimes:
        def __init__(self):
            self.t: list[float] = []

        def __getattr__(self, name):
            if not name.startswith("on_"):
                raise AttributeError(name)

            def handler(a, state, control, **kw):
                if name == "on_step_end":
                    self.t.append(time.process_time())
                return control

            return handler

    clock = StepTimes()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.process_time()
        train(
            TrainConfig(
                model=str(proxy),
                data=cfg.train.data,
                out=str(Path(tmp) / "run"),
                alpha=5.0,
                batch_size=args.batch,
                max_steps=args.steps + 1,
                save_steps=1000,
                logging_steps=1000,
            ),
            callbacks=[clock],
        )

    trainer_step = statistics.median(b - a for a, b in zip(clock.t, clock.t[1:]))
    setup = clock.t[0] - t0 - trainer_step  # until the first step ended, less one step

    res = {
        "preset": args.preset,
        "data": cfg.train.data,
        "proxy": {"hidden": 64, "layers": 30, "vocab": len(tok)},
        "batch": args.batch,
        "tokens_mean": mean_tokens,
        "plain_step_s": plain,
        "trainer_step_s": trainer_step,
        "trainer_setup_s": setup,
        "decode_step_s": decode,
        "decode_batch": 8,
        "timer": "time.process_time (CPU time of this process)",
        "threads": torch.get_num_threads(),
        "train_records": len(bundle.train),
    }
    for k, v in res.items():
        print(f"{k:<16} {v:.4f}" if isinstance(v, float) else f"{k:<16} {v}")
    if args.out is not None:
        write_json_atomic(
            args.out, {"benchmark": "compare_costs", "machine": machine_info("cpu"), "results": res}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
