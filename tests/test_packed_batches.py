"""Packed batches as frameworks build them: segment-id masks, block (4-D) masks, padded tails.

- Axolotl's multipack (flash attention) and LLaMA-Factory's ``neat_packing`` mark the sequences
  of a packed row with ids 1..k in ``attention_mask`` (0 = padding).
- LLaMA-Factory with sdpa hands the model a 4-D block-diagonal float mask; its pad tokens have a
  fully masked row (their own diagonal too) and position 0 each.
- Axolotl with sdpa gives no mask, position ids restarting per sequence, and the padded tail as
  one more "sequence" of pad tokens (``NEFTuneConfig.pad_token_id`` makes it padding).

Each is checked two ways: the lengths equal those of the same batch described by position ids
(exact), and the noise each sequence receives has the expected norm (tolerance from the
distribution of a sum of L*d i.i.d. squares, conftest.assert_sequence_norm), zero on padding.
"""

from __future__ import annotations

import random
import warnings

import pytest
import torch

import neftune
from neftune.noise import block_mask_boundaries, segment_lengths

from conftest import assert_sequence_norm, tiny_llama

ALPHA = 5.0


def random_packing(rng: random.Random, rows: int, cols: int) -> list[list[int]]:
    """Per row, the lengths of its packed sequences followed by a padded tail (may be empty)."""
    packing = []
    for _ in range(rows):
        lengths, room = [], cols
        while room > 0 and (not lengths or rng.random() < 0.8):
            n = rng.randint(1, room)
            lengths.append(n)
            room -= n
        packing.append(lengths)
    return packing


def describe(packing: list[list[int]], cols: int) -> dict[str, torch.Tensor]:
    """The same batch as segment ids, position ids, a 0/1 mask and expected lengths (0 = padding)."""
    rows = len(packing)
    segments = torch.zeros(rows, cols, dtype=torch.long)
    positions = torch.zeros(rows, cols, dtype=torch.long)
    expected = torch.zeros(rows, cols, dtype=torch.long)
    for r, lengths in enumerate(packing):
        t = 0
        for k, n in enumerate(lengths, start=1):
            segments[r, t : t + n] = k
            positions[r, t : t + n] = torch.arange(n)
            expected[r, t : t + n] = n
            t += n
        positions[r, t:] = torch.arange(cols - t)  # the tail: positions of its own
    return {
        "segments": segments,
        "positions": positions,
        "expected": expected,
        "binary": (segments > 0).long(),
    }


def block_mask(packing: list[list[int]], cols: int, kind: str, causal: bool = True) -> torch.Tensor:
    """A (B, 1, T, T) block-diagonal mask; pad rows fully masked (LLaMA-Factory's neat_packing)."""
    rows = len(packing)
    allowed = torch.zeros(rows, 1, cols, cols, dtype=torch.bool)
    for r, lengths in enumerate(packing):
        t = 0
        for n in lengths:
            block = torch.ones(n, n, dtype=torch.bool)
            allowed[r, 0, t : t + n, t : t + n] = block.tril() if causal else block
            t += n
    if kind == "bool":
        return allowed
    if kind == "additive":
        return torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
    return allowed.float()  # 1 = may attend


@pytest.mark.parametrize("seed", range(5))
def test_segment_ids_give_the_lengths_of_the_packed_sequences(seed):
    rng = random.Random(seed)
    packing = random_packing(rng, rows=4, cols=48)
    d = describe(packing, 48)
    assert torch.equal(segment_lengths((4, 48), attention_mask=d["segments"]), d["expected"])
    assert torch.equal(
        segment_lengths((4, 48), attention_mask=d["segments"], position_ids=d["positions"]), d["expected"]
    )


def test_a_0_1_mask_keeps_its_meaning():
    """Without values above 1 the mask says only what is padding: one sequence per row."""
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    assert segment_lengths((2, 6), attention_mask=mask).tolist() == [[0, 0, 4, 4, 4, 4], [3, 3, 3, 0, 0, 0]]
    assert segment_lengths((2, 6), attention_mask=mask.bool()).tolist() == [
        [0, 0, 4, 4, 4, 4],
        [3, 3, 3, 0, 0, 0],
    ]


def test_the_reported_case_two_segments_get_the_target_norm():
    """add_noise(zeros(1, 100, 64), 5, attention_mask=[[1]*40 + [2]*60]) gave 1.83 and 2.22 before."""
    mask = torch.tensor([[1] * 40 + [2] * 60])
    noise = neftune.add_noise(torch.zeros(1, 100, 64), ALPHA, attention_mask=mask)
    assert_sequence_norm(noise[0, :40], ALPHA, "uniform")
    assert_sequence_norm(noise[0, 40:], ALPHA, "uniform")


@pytest.mark.parametrize("kind", ["bool", "additive", "multiplicative"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_block_masks_give_the_lengths_and_the_padding(kind, causal, seed):
    packing = random_packing(random.Random(seed), rows=3, cols=40)
    d = describe(packing, 40)
    mask = block_mask(packing, 40, kind, causal)
    assert torch.equal(segment_lengths((3, 40), attention_mask=mask), d["expected"])
    # LLaMA-Factory also gives every pad position 0: the block mask still makes them padding.
    positions = torch.where(d["segments"] > 0, d["positions"], torch.zeros_like(d["positions"]))
    assert torch.equal(segment_lengths((3, 40), attention_mask=mask, position_ids=positions), d["expected"])
    assert torch.equal(segment_lengths((3, 40), attention_mask=mask[:, 0]), d["expected"]), "(B, T, T) too"


def test_block_mask_boundaries_refuse_a_mask_of_other_shape():
    with pytest.raises(ValueError, match="block attention_mask must have shape"):
        block_mask_boundaries(torch.ones(2, 1, 5, 6), 2, 5)


def test_a_pad_token_tail_with_positions_of_its_own_is_padding():
    """Axolotl with sdpa: no mask, positions restart per sequence, the tail is pad tokens 0..k."""
    d = describe([[30, 50]], 100)
    ids = torch.randint(3, 90, (1, 100))
    ids[0, 80:] = 0  # the pad id
    ids[0, 79] = 0  # a pad id inside a real sequence (pad == eos) stays a real token
    lengths = segment_lengths((1, 100), position_ids=d["positions"], pad_mask=ids == 0)
    assert lengths[0, :30].eq(30).all() and lengths[0, 30:80].eq(50).all() and lengths[0, 80:].eq(0).all()


def _noise_in_model(model, **inputs) -> torch.Tensor:
    """The noise the input embedding added in one training forward."""
    embedding = model.get_input_embeddings()
    seen = {}
    hook = embedding.register_forward_hook(lambda m, a, out: seen.setdefault("out", out.detach().clone()))
    model.train()
    model(**inputs).logits.sum().backward()
    hook.remove()
    with torch.no_grad():
        clean = embedding.forward(inputs["input_ids"])
    return seen["out"] - clean


def _assert_packed_noise(noise: torch.Tensor, packing: list[list[int]]) -> None:
    for r, lengths in enumerate(packing):
        t = 0
        for n in lengths:
            assert_sequence_norm(noise[r, t : t + n], ALPHA, "uniform")
            t += n
        if t < noise.shape[1]:
            assert noise[r, t:].abs().max().item() == 0.0, "noise on padding"


@pytest.mark.parametrize("source", ["segment-ids", "segment-ids+positions", "block-mask+positions"])
def test_the_hook_scales_framework_packed_batches_per_sequence(source):
    model = tiny_llama()
    packing = [[20, 30, 10], [45, 15]]
    d = describe(packing, 64)
    ids = torch.randint(1, 100, (2, 64))
    inputs = {"input_ids": ids}
    if source.startswith("segment-ids"):
        inputs["attention_mask"] = d["segments"]
    if source == "block-mask+positions":
        inputs["attention_mask"] = block_mask(packing, 64, "additive")
    if source.endswith("positions"):
        inputs["position_ids"] = torch.where(d["segments"] > 0, d["positions"], 0)
    handle = neftune.activate(model, ALPHA)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is "scaled by the row length" any more
        noise = _noise_in_model(model, **inputs)
    handle.remove()
    _assert_packed_noise(noise, packing)


def test_pad_token_id_keeps_the_hook_off_a_padded_tail():
    model = tiny_llama()
    packing = [[30, 20]]
    d = describe(packing, 64)
    ids = torch.randint(1, 100, (1, 64))
    ids[0, 50:] = 0
    handle = neftune.activate(model, ALPHA, pad_token_id=0)
    noise = _noise_in_model(model, input_ids=ids, position_ids=d["positions"])
    handle.remove()
    _assert_packed_noise(noise, packing)


def test_neftune_embedding_reads_segment_ids_and_pad_tokens():
    packing = [[12, 20]]
    d = describe(packing, 40)
    emb = neftune.NEFTuneEmbedding(torch.nn.Embedding(50, 64), ALPHA, pad_token_id=0)
    emb.train()
    ids = torch.randint(1, 50, (1, 40))
    with torch.no_grad():
        clean = torch.nn.functional.embedding(ids, emb.weight)
    noise = (emb(ids, attention_mask=d["segments"]) - clean).detach()
    _assert_packed_noise(noise, packing)
    ids[0, 32:] = 0
    noise = (emb(ids, position_ids=d["positions"]) - torch.nn.functional.embedding(ids, emb.weight)).detach()
    _assert_packed_noise(noise, packing)


def test_pad_token_id_is_checked():
    with pytest.raises(ValueError, match="pad_token_id must be a token id"):
        neftune.NEFTuneConfig(pad_token_id=-1)
    with pytest.raises(ValueError, match="pad_token_id must be a token id"):
        neftune.NEFTuneConfig(pad_token_id=True)
