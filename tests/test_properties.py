"""Property-based tests (hypothesis) for ``add_noise``, ``segment_lengths`` and ``token_scales``.

Random batch layouts: shapes, dtypes (fp32 / bf16 / fp16), right- and left-padded masks with
all-pad rows and one-token sequences, arbitrary masks, packed rows via ``position_ids`` and
flattened ``cu_seqlens`` (zero-length segments, trailing padding). Lengths are checked against a
pure-Python recount written from the documented rules, noise magnitudes against bounds derived
from the floating-point rounding steps (see ``scale_bounds``).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import neftune
from neftune.noise import segment_lengths, token_scales

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Unit roundoff u = 2^-(mantissa bits + 1) of each dtype: |fl(x) - x| <= u |x| for normal numbers.
#: 0 (no noise) or a normal number; the paper used 5-15.
ALPHAS = st.one_of(st.just(0.0), st.floats(1e-3, 20.0))
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


# ----------------------------------------------------------------------------- layouts
@st.composite
def layouts(draw) -> dict:
    """A batch layout: rows B, columns T, and the tensors that define its sequences."""
    rows = draw(st.integers(1, 4))
    cols = draw(st.integers(1, 24))
    kind = draw(st.sampled_from(["none", "right", "left", "any_mask", "position_ids", "cu_seqlens"]))
    layout = {"rows": rows, "cols": cols, "kind": kind, "mask": None, "pos": None, "cu": None}
    if kind in ("right", "left"):  # lengths 0 (all-pad row) .. cols, 1 = one-token sequence
        lengths = draw(st.lists(st.integers(0, cols), min_size=rows, max_size=rows))
        layout["mask"] = [
            [1] * n + [0] * (cols - n) if kind == "right" else [0] * (cols - n) + [1] * n for n in lengths
        ]
    elif kind == "any_mask":
        layout["mask"] = draw(
            st.lists(st.lists(st.integers(0, 1), min_size=cols, max_size=cols), min_size=rows, max_size=rows)
        )
    elif kind == "position_ids":
        pos = []
        for _ in range(rows):
            if draw(st.booleans()):  # packed row: consecutive sequences restarting at 0, maybe pad zeros
                row: list[int] = []
                while len(row) < cols:
                    n = draw(st.integers(1, cols - len(row)))
                    row += list(range(n))
                pos.append(row)
            else:  # arbitrary ids: any break in +1 continuity starts a new sequence
                pos.append(draw(st.lists(st.integers(0, 6), min_size=cols, max_size=cols)))
        layout["pos"] = pos
        if draw(st.booleans()):
            layout["mask"] = draw(
                st.lists(
                    st.lists(st.integers(0, 1), min_size=cols, max_size=cols), min_size=rows, max_size=rows
                )
            )
    else:  # cu_seqlens over the flattened rows * cols tokens; zero-length segments allowed
        total = rows * cols
        end = draw(st.integers(0, total))
        # at most rows * cols segments: more (only possible with zero-length ones) hits the bug
        # pinned by test_cu_seqlens_more_segments_than_tokens below
        cuts = sorted(draw(st.lists(st.integers(0, end), max_size=min(6, total - 1))))
        layout["cu"] = [0, *cuts, end]
    return layout


def tensors(layout: dict) -> dict:
    out = {}
    if layout["mask"] is not None:
        out["attention_mask"] = torch.tensor(layout["mask"], dtype=torch.long)
    if layout["pos"] is not None:
        out["position_ids"] = torch.tensor(layout["pos"], dtype=torch.long)
    if layout["cu"] is not None:
        out["cu_seqlens"] = torch.tensor(layout["cu"], dtype=torch.int32)
    return out


def recount_lengths(layout: dict) -> list[list[int]]:
    """Each token's sequence length (0 on padding), recounted in plain Python from the rules:
    cu_seqlens segments (tokens past the last entry are padding), else a new sequence wherever a
    position id is 0 or does not continue the previous one, else one sequence per row; masked
    tokens are padding and are not counted."""
    rows, cols, mask, pos, cu = layout["rows"], layout["cols"], layout["mask"], layout["pos"], layout["cu"]
    segment, valid = {}, {}
    for b in range(rows):
        counter = 0
        for t in range(cols):
            valid[b, t] = mask is None or mask[b][t] != 0
            if cu is not None:
                i = b * cols + t
                if i >= cu[-1]:
                    valid[b, t] = False
                    segment[b, t] = None
                else:
                    segment[b, t] = next(k for k in range(len(cu) - 1) if cu[k] <= i < cu[k + 1])
            elif pos is not None:
                if t > 0 and (pos[b][t] == 0 or pos[b][t] != pos[b][t - 1] + 1):
                    counter += 1
                segment[b, t] = (b, counter)
            else:
                segment[b, t] = b
    counts: dict = {}
    for key, seg in segment.items():
        counts[seg] = counts.get(seg, 0) + int(valid[key])
    return [[counts[segment[b, t]] if valid[b, t] else 0 for t in range(cols)] for b in range(rows)]


def scale_bounds(alpha: float, length: int, dim: int, dtype: torch.dtype) -> tuple[float, float]:
    """Bounds on the per-token scale as stored in ``dtype`` (alpha is 0 or a normal float32 number):
    the true alpha / sqrt(L d) goes through three float32 roundings (alpha to float32, the sqrt, the division; L*d is exact) and one
    rounding to ``dtype``, each a relative error <= its unit roundoff u. Every product eps * scale
    with |eps| <= 1 rounds monotonically, so |noise| never exceeds the stored scale (also for
    fp16 subnormals, where the relative bound alone would not hold)."""
    true = alpha / math.sqrt(length * dim)
    rel = (1 + UNIT_ROUNDOFF[torch.float32]) ** 3 * (1 + UNIT_ROUNDOFF[dtype])
    # Below the smallest normal number the rounding error is absolute: half the subnormal spacing,
    # i.e. smallest_normal * u (matters for fp16, whose scales can be subnormal for long sequences).
    slack = torch.finfo(dtype).smallest_normal * UNIT_ROUNDOFF[dtype]
    return true / rel - slack, true * rel + slack


# ----------------------------------------------------------------------------- properties
@SETTINGS
@given(layout=layouts())
def test_segment_lengths_match_recount(layout):
    got = segment_lengths((layout["rows"], layout["cols"]), **tensors(layout))
    assert got.dtype == torch.int64 and tuple(got.shape) == (layout["rows"], layout["cols"])
    assert got.tolist() == recount_lengths(layout)


@SETTINGS
@given(layout=layouts(), dim=st.integers(1, 48), alpha=ALPHAS)
def test_token_scales_are_alpha_over_sqrt_length_dim(layout, dim, alpha):
    embeds = torch.zeros(layout["rows"], layout["cols"], dim)
    scales = token_scales(embeds, alpha, **tensors(layout))
    assert scales.dtype == torch.float32
    for b, row in enumerate(recount_lengths(layout)):
        for t, length in enumerate(row):
            value = scales[b, t].item()
            if length == 0:
                assert value == 0.0
            else:
                lo, hi = scale_bounds(alpha, length, dim, torch.float32)
                assert lo <= value <= hi


@SETTINGS
@given(
    layout=layouts(),
    dim=st.integers(1, 48),
    alpha=ALPHAS,
    dtype=st.sampled_from(list(DTYPES.values())),
    distribution=st.sampled_from(neftune.DISTRIBUTIONS),
    seed=st.integers(0, 2**31 - 1),
    two_d=st.booleans(),
)
def test_add_noise_invariants(layout, dim, alpha, dtype, distribution, seed, two_d):
    rows, cols = layout["rows"], layout["cols"]
    batch = tensors(layout)
    gen = torch.Generator().manual_seed(seed)
    embeds = torch.randn(rows, cols, dim, generator=gen).to(dtype)
    if two_d and rows == 1 and "cu_seqlens" not in batch:  # (T, d) input: one row, 1-D mask / positions
        embeds = embeds[0]
        batch = {k: v[0] for k, v in batch.items()}
    out = neftune.add_noise(embeds, alpha, distribution=distribution, generator=gen, **batch)
    assert out.shape == embeds.shape and out.dtype == dtype
    assert torch.isfinite(out).all()

    lengths = torch.tensor(recount_lengths(layout)).reshape(embeds.shape[:-1])
    pad = lengths == 0
    assert torch.equal(out[pad], embeds[pad]), "padding must be returned bit for bit"

    # Magnitudes: on zero embeddings the output *is* the noise (0 + x is exact in every dtype).
    noise = neftune.add_noise(
        torch.zeros_like(embeds), alpha, distribution=distribution, generator=gen, **batch
    )
    assert torch.count_nonzero(noise[pad]) == 0
    if distribution == "gaussian":
        return  # unbounded per element; its per-sequence norm is tested in test_noise_stats.py
    flat_noise = noise.reshape(-1, dim).double().abs()
    for token, length in enumerate(lengths.reshape(-1).tolist()):
        if length == 0:
            continue
        lo, hi = scale_bounds(alpha, length, dim, dtype)
        assert flat_noise[token].max().item() <= hi
        if distribution == "symmetric":  # every element is exactly +-scale
            assert flat_noise[token].min().item() >= lo


@SETTINGS
@given(layout=layouts(), dtype=st.sampled_from(list(DTYPES.values())))
def test_all_padding_gets_no_noise(layout, dtype):
    """A batch that is padding everywhere comes back unchanged."""
    rows, cols = layout["rows"], layout["cols"]
    embeds = torch.randn(rows, cols, 8).to(dtype)
    out = neftune.add_noise(embeds, 10.0, attention_mask=torch.zeros(rows, cols, dtype=torch.long))
    assert torch.equal(out, embeds)


def test_cu_seqlens_more_segments_than_tokens():
    # cu_seqlens padded to a fixed size by repeating its end: 4 segments (1 real) for 3 tokens, the
    # last 2 of them padding. The padding tokens' segment index is clamped to 3, past counts[0:3].
    cu = torch.tensor([0, 1, 1, 1, 1], dtype=torch.int32)
    assert segment_lengths((1, 3), cu_seqlens=cu).tolist() == [[1, 0, 0]]


class _TinyLM(nn.Module):
    """Embedding + linear head; forward takes the mask so the lengths are known."""

    def __init__(self) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(32, 16)
        self.head = nn.Linear(16, 32)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embed_tokens(input_ids))


@pytest.fixture(scope="module")
def tiny_lm() -> _TinyLM:
    torch.manual_seed(0)
    return _TinyLM()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.integers(1, 3),
    cols=st.integers(1, 12),
    alpha=st.floats(0.1, 20.0),
    distribution=st.sampled_from(neftune.DISTRIBUTIONS),
    data=st.data(),
)
def test_eval_and_no_grad_are_identity_for_an_active_model(tiny_lm, rows, cols, alpha, distribution, data):
    ids = torch.tensor(
        data.draw(
            st.lists(st.lists(st.integers(0, 31), min_size=cols, max_size=cols), min_size=rows, max_size=rows)
        )
    )
    mask = torch.tensor(
        data.draw(
            st.lists(st.lists(st.integers(0, 1), min_size=cols, max_size=cols), min_size=rows, max_size=rows)
        )
    )
    tiny_lm.eval()
    with torch.no_grad():
        clean = tiny_lm(ids, attention_mask=mask)
    with neftune.noisy_embeddings(tiny_lm, alpha, distribution=distribution) as handle:
        tiny_lm.eval()
        assert torch.equal(tiny_lm(ids, attention_mask=mask).detach(), clean)  # eval, grad on
        tiny_lm.train()
        with torch.no_grad():
            assert torch.equal(tiny_lm(ids, attention_mask=mask), clean)  # training mode, no grad
        with torch.inference_mode():
            assert torch.equal(tiny_lm(ids, attention_mask=mask), clean)
        noisy = tiny_lm(ids, attention_mask=mask)  # training mode with grad: noised iff a real token
        assert handle.noised_calls == 1
        assert torch.equal(noisy.detach(), clean) == (not bool(mask.any()))
    assert not neftune.is_active(tiny_lm)
