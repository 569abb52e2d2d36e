"""Measure the per-sequence noise norm that NEFTune adds, transformers' hook versus neftune.

A tiny Llama built from a config (no download) runs one training forward on a padded batch
and on a padding-free packed row holding the same four sequences (40, 120, 300, 60 tokens).
The target for alpha=5 is alpha/sqrt(3) = 2.887 for every sequence, whatever the batch.

    python examples/noise_norms.py [--alpha 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import math

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.integrations import neftune as hf_neftune

import neftune

LENGTHS = [40, 120, 300, 60]


def tiny_model() -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    return LlamaForCausalLM(cfg).train()


def measured_norms(activate, batch: dict, spans: list[tuple[int, slice]]) -> tuple[list[float], float]:
    """Noise norm of each sequence and of the padding, from one training forward."""
    model = tiny_model()
    embedding = model.get_input_embeddings()
    handle = activate(model)
    captured = {}
    recorder = embedding.register_forward_hook(lambda m, a, out: captured.setdefault("noisy", out.detach()))
    model(**batch)
    recorder.remove()
    handle.remove()
    noise = captured["noisy"] - embedding(batch["input_ids"]).detach()
    norms = [noise[row, cols].norm().item() for row, cols in spans]
    real = torch.zeros(noise.shape[:2], dtype=torch.bool)
    for row, cols in spans:
        real[row, cols] = True
    return norms, noise[~real].norm().item()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alpha", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    total = max(LENGTHS)
    ids = torch.randint(1, 256, (len(LENGTHS), total))
    mask = torch.zeros_like(ids)
    for i, n in enumerate(LENGTHS):
        mask[i, :n] = 1
    padded = {"input_ids": ids * mask, "attention_mask": mask}
    padded_spans = [(i, slice(0, n)) for i, n in enumerate(LENGTHS)]
    packed_ids = torch.cat([ids[i, :n] for i, n in enumerate(LENGTHS)]).unsqueeze(0)
    packed = {
        "input_ids": packed_ids,
        "position_ids": torch.cat([torch.arange(n) for n in LENGTHS]).unsqueeze(0),
    }
    starts = [0, *torch.tensor(LENGTHS).cumsum(0).tolist()]
    packed_spans = [(0, slice(a, b)) for a, b in itertools.pairwise(starts)]

    implementations = {
        "transformers hook": lambda m: hf_neftune.activate_neftune(m, args.alpha),
        "neftune": lambda m: neftune.activate(m, args.alpha),
    }
    target = args.alpha / math.sqrt(3)
    print(f"per-sequence noise L2 norm, alpha={args.alpha:g}, target {target:.3f} for every sequence\n")
    header = f"{'implementation':<18} {'batch':<22}" + "".join(f"{n:>6}-tok" for n in LENGTHS) + "   padding"
    print(header)
    print("-" * len(header))
    for name, activate in implementations.items():
        for label, batch, spans in (
            ("padded to 300", padded, padded_spans),
            ("padding-free (1x520)", packed, packed_spans),
        ):
            norms, pad = measured_norms(activate, batch, spans)
            pad_text = f"{pad:9.2f}" if label.startswith("padded") else "        -"
            print(f"{name:<18} {label:<22}" + "".join(f"{v:10.2f}" for v in norms) + pad_text)


if __name__ == "__main__":
    main()
