"""Bad input gets a ValueError/TypeError that names the argument."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import neftune

from conftest import tiny_llama


@pytest.mark.parametrize(
    ("alpha", "exc", "match"),
    [
        (-1.0, ValueError, "alpha must be >= 0"),
        (math.nan, ValueError, "alpha must be finite"),
        (math.inf, ValueError, "alpha must be finite"),
        ("5", TypeError, "alpha must be a real number"),
        (None, TypeError, "alpha must be a real number"),
        (True, TypeError, "alpha must be a real number"),
        (torch.ones(2), TypeError, "alpha must be a real scalar"),
    ],
)
def test_bad_alpha(alpha, exc, match):
    with pytest.raises(exc, match=match):
        neftune.add_noise(torch.zeros(1, 2, 4), alpha)
    with pytest.raises(exc, match=match):
        neftune.activate(nn.Embedding(3, 4), alpha=alpha)
    with pytest.raises(exc, match=match):
        neftune.NEFTuneEmbedding(nn.Embedding(3, 4), alpha=alpha)
    with pytest.raises(exc, match=match):
        neftune.NEFTuneConfig(alpha=alpha)
    if alpha is not None:  # positionally, None is "no config" (the defaults)
        with pytest.raises((exc, TypeError)):
            neftune.activate(nn.Embedding(3, 4), alpha)


def test_alpha_as_tensor_scalar_is_accepted():
    out = neftune.add_noise(torch.zeros(1, 2, 4), torch.tensor(5.0))
    assert out.abs().max() > 0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"distribution": "laplace"}, ValueError, r"unknown distribution 'laplace'"),
        ({"distribution": 3}, TypeError, "distribution must be one of"),
        ({"scaling": "global"}, ValueError, "unknown scaling 'global'"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"schedule": "exponential"}, ValueError, "unknown schedule 'exponential'"),
        ({"schedule": "warmup:2"}, ValueError, "warm-up fraction"),
    ],
)
def test_bad_activate_options(kwargs, exc, match):
    model = tiny_llama()
    with pytest.raises(exc, match=match):
        neftune.activate(model, 5.0, **kwargs)
    assert not neftune.is_active(model)


def test_model_without_embedding():
    model = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(neftune.EmbeddingNotFoundError, match="found no nn.Embedding") as info:
        neftune.activate(model, 5.0)
    assert isinstance(info.value, ValueError)
    assert "Sequential" in str(info.value) and "embedding=" in str(info.value)


def test_not_a_module():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        neftune.activate("gpt2", 5.0)
    with pytest.raises(TypeError, match="embedding must be a torch.nn.Module"):
        neftune.activate(nn.Embedding(3, 4), 5.0, embedding="x")
    with pytest.raises(TypeError, match="embedding must be a torch.nn.Embedding"):
        neftune.NEFTuneEmbedding(nn.Linear(2, 2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attention_mask": torch.ones(2, 5)}, r"attention_mask has shape \(2, 5\)"),
        ({"attention_mask": torch.ones(3, 6)}, r"attention_mask has shape \(3, 6\)"),
        ({"position_ids": torch.zeros(1, 6)}, r"position_ids has shape"),
        ({"cu_seqlens": torch.tensor([1, 3])}, "cu_seqlens must start at 0"),
        ({"cu_seqlens": torch.tensor([0, 4, 2])}, "never decrease"),
        ({"cu_seqlens": torch.tensor([0, 13])}, "end at most at 12"),
    ],
)
def test_mismatched_masks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        neftune.add_noise(torch.zeros(2, 6, 4), 5.0, **kwargs)


def test_bad_embeds():
    with pytest.raises(TypeError, match="embeds must be floating point"):
        neftune.add_noise(torch.zeros(2, 3, 4, dtype=torch.long), 5.0)
    with pytest.raises(ValueError, match="embeds must have shape"):
        neftune.add_noise(torch.zeros(2, 3, 4, 5), 5.0)
    with pytest.raises(TypeError, match="embeds must be a torch.Tensor"):
        neftune.add_noise([[0.0]], 5.0)


def test_mismatched_mask_inside_model_is_ignored_with_warning():
    """A mask that does not describe the embeddings is dropped with a warning naming what is used instead."""
    from neftune.activation.batch_context import BatchContext

    warned = []
    context = BatchContext(lambda key, message: warned.append(message))
    embeds = torch.zeros(2, 6, 4)
    context.enter(
        torch.nn.Linear(1, 1),
        {"attention_mask": torch.ones(2, 5), "position_ids": torch.arange(6).repeat(2, 1)},
    )
    assert set(context.for_embedding("main", embeds)) == {"position_ids"}
    assert (
        "ignoring attention_mask of shape (2, 5)" in warned[0] and "come from the position ids" in warned[0]
    )
    context.clear()
    context.enter(torch.nn.Linear(1, 1), {"attention_mask": torch.ones(2, 1, 6, 7, dtype=torch.bool)})
    assert context.for_embedding("main", embeds) == {}
    assert "(2, 1, 6, 7)" in warned[1] and "scaled by the row length" in warned[1]


def test_block_mask_inside_model_gives_the_lengths_without_a_warning():
    """A 4-D causal mask of the batch's shape is read (one sequence per row here), not ignored."""
    model = tiny_llama()
    h = neftune.activate(model, 5.0)
    model.train()
    ids = torch.randint(1, 100, (2, 6))
    mask4d = torch.ones(2, 1, 6, 6, dtype=torch.bool).tril()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(input_ids=ids, attention_mask=mask4d)
    h.remove()


def test_schedule_callable_is_checked_at_activation():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4))
    with pytest.raises(TypeError, match=r"callable as schedule\(step, total_steps\)"):
        neftune.activate(model, 5.0, schedule=lambda step: 1.0)
    with pytest.raises(ValueError, match="multiplier returned by schedule .* must be >= 0"):
        neftune.activate(model, 5.0, schedule=lambda step, total: -1.0)
    assert not neftune.is_active(model), "a refused activation leaves nothing behind"


def test_set_progress_needs_step_counts():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4))
    with neftune.noisy_embeddings(model, 5.0, schedule="linear") as handle:
        handle.set_progress(5.0, torch.tensor(10))
        assert (handle.step, handle.total_steps) == (5, 10) and handle.alpha == pytest.approx(2.5)
        with pytest.raises(TypeError, match="set_progress: step must be an integer"):
            handle.set_progress("a")


def test_non_float_embedding_output_is_refused():
    class IdsOut(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)

        def forward(self, ids):
            return ids  # not embeddings

    model = IdsOut()
    with neftune.noisy_embeddings(model, 5.0, embedding=model):
        with pytest.raises(TypeError, match=r"IdsOut returned a torch.int64 tensor .* not floating-point"):
            model(torch.tensor([[1, 2]]))
        model.eval()
        model(torch.tensor([[1, 2]]))  # no noise outside training: nothing to refuse
