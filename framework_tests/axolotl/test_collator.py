"""Axolotl's own multipack collator (``V2BatchSamplerDataCollatorForSeq2Seq``, the class its trainer
builder picks for packed Llama batches) called directly, its batch fed to a tiny Llama with neftune
active. Its ``attention_mask`` carries segment ids 1..k (0 = padding) — what the model receives with
flash attention, which cannot run on this CPU (flash-attn needs CUDA; see docs/integrations.md).
"""

from __future__ import annotations

import random

import pytest
import torch
from probe import NoiseProbe

import neftune

from conftest import ALPHA, CHARS, HIDDEN, TARGET, _tokenizer, tolerance


def _bins(tokenizer, rng: random.Random, rows: int = 3, row_len: int = 200) -> list[list[dict]]:
    """Tokenized samples grouped into bins of at most ``row_len`` tokens (the multipack sampler's job)."""
    bins = []
    for _ in range(rows):
        row, used = [], 0
        while True:
            text = "".join(rng.choice(CHARS[:26]) for _ in range(rng.randint(6, 70)))
            ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
            if used + len(ids) > row_len:
                break
            row.append(
                {
                    "input_ids": ids,
                    "attention_mask": [1] * len(ids),
                    "labels": list(ids),
                    "position_ids": list(range(len(ids))),
                    "length": len(ids),
                }
            )
            used += len(ids)
        bins.append(row)
    return bins


@pytest.fixture(scope="module")
def batch():
    from axolotl.utils.collators import V2BatchSamplerDataCollatorForSeq2Seq

    tokenizer = _tokenizer()
    # The arguments Axolotl's trainer builder gives it with pad_to_sequence_len and sequence_len 256.
    collator = V2BatchSamplerDataCollatorForSeq2Seq(
        tokenizer, padding=True, pad_to_multiple_of=256, return_tensors="pt"
    )
    bins = _bins(tokenizer, random.Random(1))
    out = collator(bins)
    return {"batch": out, "bins": bins, "pad": tokenizer.pad_token_id, "vocab": len(tokenizer)}


def test_collator_marks_sequences_with_segment_ids(batch):
    mask, bins = batch["batch"]["attention_mask"], batch["bins"]
    for row, samples in zip(mask, bins, strict=True):
        expected = [k + 1 for k, s in enumerate(samples) for _ in range(s["length"])]
        assert row[: len(expected)].tolist() == expected
        assert row[len(expected) :].eq(0).all()  # the padded tail
    assert int(mask.max()) > 1 and mask.shape[1] == 256


def _model(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).train()


@pytest.mark.parametrize("inputs", ["segment_ids_mask", "segment_ids_mask_and_position_ids"])
def test_neftune_noise_per_packed_sequence_on_the_collator_batch(batch, inputs):
    data = dict(batch["batch"])
    if inputs == "segment_ids_mask":  # what the model gets when only the mask carries the boundaries
        data.pop("position_ids")
    model = _model(batch["vocab"])
    probe = NoiseProbe(model, max_calls=1, pad_token_id=batch["pad"])
    handle = neftune.activate(model, neftune.NEFTuneConfig(alpha=ALPHA, pad_token_id=batch["pad"]))
    try:
        model(**data).loss.backward()
    finally:
        handle.remove()
        probe.remove()
    (result,) = probe.results()
    lengths = [s["length"] for samples in batch["bins"] for s in samples]
    assert [n for n, _ in result["sequences"]] == lengths
    for length, norm in result["sequences"]:
        assert abs(norm / TARGET - 1) <= tolerance(length), (length, norm)
    assert result["padding"] == 0.0
