"""Vision-language models: noise on the text embedding, scaled by text tokens only (issue 22 item 7).

A VLM embeds its image / video placeholder tokens, then overwrites those embeddings with the vision
tower's features. Noise there is thrown away, and counting the placeholders in ``L`` dilutes the
text's noise. Tiny models of six transformers VLM classes are built from configs (nothing is
downloaded); each batch holds one image (or video) per row and right padding.

Exact checks use ``distribution="symmetric"`` on an embedding whose weights are zero, so the
embedding output *is* the noise: every text element is exactly +-s with s the float32 value of
alpha / sqrt(L_text * d) (L*d is exact in float32; sqrt and the division each round once, so
s = alpha / sqrt(L d) * (1 + r), |r| <= 2 * 2^-24; eps * s is exact), hence the text norm is
sqrt(L_text d) * s = alpha * (1 + r): within 2.5 * 2^-24 relative, before float64 summation
(exact here: L d equal squares). Statistical checks use uniform noise and
``conftest.assert_sequence_norm`` (6 sd of the squared norm of L*d uniform draws).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

import neftune

from conftest import HIDDEN, NoiseRecorder, assert_sequence_norm, tiny_llama

T = pytest.importorskip("transformers")

ALPHA = 5.0
SEQ = 16
#: Relative bound on the symmetric-noise norm (see the module docstring).
EXACT_REL = 2.5 * 2.0**-24
VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 28,
    "patch_size": 14,
}


def text_config(**kw) -> dict:
    return {
        "vocab_size": 128,
        "hidden_size": HIDDEN,
        "intermediate_size": 128,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "pad_token_id": 0,
        **kw,
    }


@dataclass
class Case:
    model: nn.Module
    ids: torch.Tensor  # (2, SEQ) with the placeholders in place
    mask: torch.Tensor  # (2, SEQ), row 1 right-padded
    media: torch.Tensor  # (2, SEQ) bool: placeholder positions
    extra: dict[str, Any]  # pixel values and the like
    placeholders: tuple[int, ...]  # ids the config names

    def call(self):
        return self.model(input_ids=self.ids, attention_mask=self.mask, **self.extra)


def _batch(model, tokens: list[int], extra: dict, placeholders: tuple[int, ...], **more) -> Case:
    """Row 0: placeholders ``tokens[0]`` at 2..; row 1: ``tokens[1]`` at 5.., 3 pads at the end."""
    ids = torch.randint(3, 90, (2, SEQ), generator=torch.Generator().manual_seed(0))
    media = torch.zeros(2, SEQ, dtype=torch.bool)
    for row, (start, (token, count)) in enumerate(zip((2, 5), tokens)):
        ids[row, start : start + count] = token
        media[row, start : start + count] = True
    mask = torch.ones(2, SEQ, dtype=torch.long)
    mask[1, SEQ - 3 :] = 0
    ids = ids * mask
    for key, fn in more.items():
        extra[key] = fn(ids)
    return Case(model, ids, mask, media, extra, placeholders)


def llava() -> Case:
    config = T.LlavaConfig(
        vision_config=T.CLIPVisionConfig(**VISION),
        text_config=T.LlamaConfig(**text_config()),
        image_token_id=100,
    )
    model = T.LlavaForConditionalGeneration(config)
    # 28 / 14 = 2 x 2 patches: 4 image tokens per image (the CLS feature is dropped)
    return _batch(model, [(100, 4), (100, 4)], {"pixel_values": torch.randn(2, 3, 28, 28)}, (100,))


def _qwen(config_cls, model_cls, **vision) -> Case:
    config = config_cls(
        text_config=text_config(rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3]}),
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": HIDDEN,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            **vision,
        },
        image_token_id=100,
        video_token_id=101,
        vision_start_token_id=102,
        vision_end_token_id=103,
    )
    model = model_cls(config)
    # row 0 an image, row 1 a video; grid (1, 4, 4) patches, merged 2 x 2: 4 tokens each
    extra = {
        "pixel_values": torch.randn(16, 3 * 2 * 14 * 14),
        "image_grid_thw": torch.tensor([[1, 4, 4]]),
        "pixel_values_videos": torch.randn(16, 3 * 2 * 14 * 14),
        "video_grid_thw": torch.tensor([[1, 4, 4]]),
    }
    token_types = {"mm_token_type_ids": lambda ids: (ids == 100).long() + 2 * (ids == 101).long()}
    return _batch(model, [(100, 4), (101, 4)], extra, (100, 101), **token_types)


def qwen2_vl() -> Case:
    return _qwen(T.Qwen2VLConfig, T.Qwen2VLForConditionalGeneration)


def qwen2_5_vl() -> Case:
    return _qwen(
        T.Qwen2_5_VLConfig,
        T.Qwen2_5_VLForConditionalGeneration,
        out_hidden_size=HIDDEN,
        intermediate_size=64,
        fullatt_block_indexes=[0],
        window_size=56,
    )


def gemma3(image_token: int = 100) -> Case:
    config = T.Gemma3Config(
        text_config=T.Gemma3TextConfig(**text_config(head_dim=16)),
        vision_config=T.SiglipVisionConfig(**VISION),
        mm_tokens_per_image=4,
        image_token_index=image_token,
        boi_token_index=101,
        eoi_token_index=102,
    )
    model = T.Gemma3ForConditionalGeneration(config)
    pixels = {"pixel_values": torch.randn(2, 3, 28, 28)}
    return _batch(model, [(image_token, 4), (image_token, 4)], pixels, (image_token,))


def gemma3_out_of_vocabulary() -> Case:
    """Image token id >= vocab size: Gemma 3 swaps it for padding before the lookup; the model's ids tell."""
    return gemma3(image_token=130)


def smolvlm() -> Case:
    config = T.SmolVLMConfig(
        text_config=T.LlamaConfig(**text_config()),
        vision_config=T.SmolVLMVisionConfig(**VISION),
        image_token_id=100,
        scale_factor=2,
    )
    model = T.SmolVLMForConditionalGeneration(config)
    # 2 x 2 patches, pixel shuffle by 2: one token per image
    return _batch(model, [(100, 1), (100, 1)], {"pixel_values": torch.randn(2, 1, 3, 28, 28)}, (100,))


def idefics3() -> Case:
    config = T.Idefics3Config(
        text_config=T.LlamaConfig(**text_config()),
        vision_config=T.Idefics3VisionConfig(**VISION),
        image_token_id=100,
        scale_factor=2,
    )
    model = T.Idefics3ForConditionalGeneration(config)
    return _batch(model, [(100, 1), (100, 1)], {"pixel_values": torch.randn(2, 1, 3, 28, 28)}, (100,))


CASES = {
    "llava": llava,
    "qwen2-vl": qwen2_vl,
    "qwen2.5-vl": qwen2_5_vl,
    "gemma3": gemma3,
    "gemma3-oov-image-id": gemma3_out_of_vocabulary,
    "idefics3": idefics3,
    "smolvlm": smolvlm,
}


def build(name: str) -> Case:
    torch.manual_seed(0)
    return CASES[name]()


def text_tokens(case: Case) -> torch.Tensor:
    return case.mask.bool() & ~case.media


# ----------------------------------------------------------------------------- discovery
@pytest.mark.parametrize("name", list(CASES))
def test_the_text_embedding_is_found_and_the_placeholders_come_from_the_config(name):
    case = build(name)
    handle = neftune.activate(case.model, ALPHA)
    assert handle.embedding is case.model.get_input_embeddings()
    assert [m for _, m in handle.targets] == [case.model.get_input_embeddings()]  # not a vision module
    assert not any(part in handle.path for part in ("vision", "visual"))
    assert handle.ignore_token_ids == case.placeholders
    assert handle.status()["ignore_token_ids"] == list(case.placeholders)
    neftune.deactivate(handle)


def test_a_plain_module_holding_a_vision_tower_gets_its_text_embedding():
    from neftune.activation.discovery import find_input_embedding

    class Plain(nn.Module):  # no get_input_embeddings: found by scanning
        def __init__(self):
            super().__init__()
            self.vision = T.CLIPVisionModel(T.CLIPVisionConfig(**VISION))  # holds an nn.Embedding
            self.embed_tokens = nn.Embedding(128, HIDDEN)

    model = Plain()
    assert any(isinstance(m, nn.Embedding) for m in model.vision.modules())
    assert find_input_embedding(model).module is model.embed_tokens


def test_models_that_keep_their_image_token_embedding_name_no_placeholder():
    from neftune.activation.discovery import placeholder_token_ids

    holder = nn.Module()
    holder.config = T.MllamaConfig()  # cross-attention to the image: <|image|> is an ordinary token
    assert holder.config.image_token_index is not None
    assert placeholder_token_ids(holder) == ()
    holder.config = T.LlavaConfig(image_token_id=7)
    assert placeholder_token_ids(holder) == (7,)
    assert placeholder_token_ids(tiny_llama()) == ()


# ----------------------------------------------------------------------------- magnitudes
def _zero_text_embedding(case: Case) -> None:
    with torch.no_grad():
        case.model.get_input_embeddings().weight.zero_()


@pytest.mark.parametrize("name", list(CASES))
def test_symmetric_noise_is_scaled_by_the_text_tokens_only(name):
    case = build(name)
    _zero_text_embedding(case)
    d = case.model.get_input_embeddings().embedding_dim
    text = text_tokens(case)

    def noise_of(**settings) -> torch.Tensor:
        handle = neftune.activate(case.model, ALPHA, distribution="symmetric", **settings)
        recorder = NoiseRecorder(case.model.get_input_embeddings())
        case.model.train()
        case.call()
        recorder.remove()
        neftune.deactivate(handle)
        return recorder.noise[0]

    noise = noise_of()
    for row in range(2):
        n_text = int(text[row].sum())
        scale = ALPHA / math.sqrt(n_text * d)
        torch.testing.assert_close(
            noise[row][text[row]].abs(), torch.full((n_text, d), scale), rtol=EXACT_REL, atol=0
        )
        assert abs(noise[row][text[row]].double().norm().item() / ALPHA - 1) <= EXACT_REL
        assert noise[row][case.media[row]].abs().max().item() == 0.0  # placeholders: none
        assert noise[row][~case.mask[row].bool()].abs().sum().item() == 0.0  # padding: none
    # Without the placeholders left out (what transformers' and other hooks do), the text gets
    # alpha * sqrt(L_text / L): diluted by the image tokens, and noise goes on the placeholders.
    diluted = noise_of(ignore_token_ids=())
    for row in range(2):
        n_text, n_real = int(text[row].sum()), int(case.mask[row].sum())
        expected = ALPHA * math.sqrt(n_text / n_real)
        assert abs(diluted[row][text[row]].double().norm().item() / expected - 1) <= EXACT_REL
        assert diluted[row][case.media[row]].abs().min().item() > 0


def _decoder_input(case: Case) -> torch.Tensor:
    """Hidden states entering the language model's first decoder layer."""
    layers = next(m for n, m in case.model.named_modules() if n.endswith("layers") and "vision" not in n)
    seen = []
    hook = layers[0].register_forward_pre_hook(
        lambda m, a, k: seen.append((a[0] if a else k["hidden_states"]).detach().clone()), with_kwargs=True
    )
    try:
        case.call()
    finally:
        hook.remove()
    return seen[0]


@pytest.mark.parametrize("name", ["llava", "qwen2.5-vl", "gemma3-oov-image-id"])
def test_uniform_noise_where_the_language_model_uses_it(name):
    """Training minus eval forward at the decoder input: text noised per sequence, image features untouched."""
    case = build(name)
    case.model.eval()
    with torch.no_grad():
        clean = _decoder_input(case)
    neftune.activate(case.model, ALPHA)
    case.model.train()
    noise = _decoder_input(case) - clean
    text = text_tokens(case)
    for row in range(2):
        assert_sequence_norm(noise[row][text[row]], ALPHA, "uniform")
        assert noise[row][case.media[row]].abs().max().item() == 0.0  # the vision features, unchanged
        assert noise[row][~case.mask[row].bool()].abs().sum().item() == 0.0
    neftune.deactivate(case.model)


# ----------------------------------------------------------------------------- explicit ids
def test_explicit_ignore_token_ids_on_a_text_model_and_on_neftune_embedding():
    model = tiny_llama()
    _, d = model.get_input_embeddings().weight.shape
    with torch.no_grad():
        model.get_input_embeddings().weight.zero_()
    ids = torch.randint(10, 100, (2, 12), generator=torch.Generator().manual_seed(1))
    ids[:, 3:6] = 7  # e.g. a custom image placeholder the config does not name
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    ignored = ids == 7
    handle = neftune.activate(model, ALPHA, distribution="symmetric", ignore_token_ids=[7])
    assert handle.ignore_token_ids == (7,)
    recorder = NoiseRecorder(model.get_input_embeddings())
    model.train()
    model(input_ids=ids, attention_mask=mask)
    recorder.remove()
    neftune.deactivate(handle)
    wrapper = neftune.NEFTuneEmbedding(
        nn.Embedding(128, d), ALPHA, distribution="symmetric", ignore_token_ids=7
    )
    with torch.no_grad():
        wrapper.weight.zero_()
    for noise in (recorder.noise[0], wrapper.train()(ids, attention_mask=mask).detach()):
        for row in range(2):
            keep = mask[row].bool() & ~ignored[row]
            assert abs(noise[row][keep].double().norm().item() / ALPHA - 1) <= EXACT_REL
            assert noise[row][ignored[row]].abs().max().item() == 0.0


def test_inputs_embeds_made_by_the_embedding_are_rescaled_without_the_placeholders():
    """The embedding called outside the model (row length), then the model with a mask: per text tokens."""
    case = build("llava")
    _zero_text_embedding(case)
    neftune.activate(case.model, ALPHA, distribution="symmetric")
    case.model.train()
    with pytest.warns(UserWarning, match="outside the model's forward"):
        embeds = case.model.get_input_embeddings()(case.ids)
    seen = []
    layers = case.model.model.language_model.layers
    hook = layers[0].register_forward_pre_hook(
        lambda m, a, k: seen.append((a[0] if a else k["hidden_states"]).detach()), with_kwargs=True
    )
    case.model(inputs_embeds=embeds, attention_mask=case.mask)  # text only: no pixel values
    hook.remove()
    text = text_tokens(case)
    for row in range(2):
        assert abs(seen[0][row][text[row]].double().norm().item() / ALPHA - 1) <= 4 * EXACT_REL
        assert seen[0][row][case.media[row]].abs().max().item() == 0.0
    neftune.deactivate(case.model)


def test_batch_scaling_leaves_placeholders_as_transformers_does():
    case = build("llava")
    handle = neftune.activate(case.model, ALPHA, scaling="batch")
    assert handle.ignore_token_ids == ()  # transformers' formula noises every position
    neftune.deactivate(handle)
    with pytest.raises(ValueError, match="ignore_token_ids needs scaling='per_sequence'"):
        neftune.activate(case.model, ALPHA, scaling="batch", ignore_token_ids=[100])


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("100", TypeError, "ignore_token_ids must be token ids"),
        ([1.5], TypeError, "ignore_token_ids must be token ids"),
        ([True], TypeError, "ignore_token_ids must be token ids"),
        (-1, ValueError, "ignore_token_ids must be token ids >= 0"),
        (torch.tensor([[1, 2]]), TypeError, "ignore_token_ids must be token ids"),
    ],
)
def test_bad_ignore_token_ids_are_refused(value, error, match):
    with pytest.raises(error, match=match):
        neftune.NEFTuneConfig(ignore_token_ids=value)


def test_ignore_token_ids_accepts_ints_lists_and_tensors():
    import numpy as np

    assert neftune.NEFTuneConfig(ignore_token_ids=5).ignore_token_ids == (5,)
    assert neftune.NEFTuneConfig(ignore_token_ids=[9, 5, 9]).ignore_token_ids == (5, 9)
    assert neftune.NEFTuneConfig(ignore_token_ids=torch.tensor([3, 1])).ignore_token_ids == (1, 3)
    assert neftune.NEFTuneConfig(ignore_token_ids=(np.int64(4),)).ignore_token_ids == (4,)
    assert neftune.NEFTuneConfig(ignore_token_ids=[]).ignore_token_ids == ()
