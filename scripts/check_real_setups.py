"""Measure the noise a model really receives on the setups of docs/reliability.md ("Real setups").

    python scripts/check_real_setups.py            # a tiny Llama built from a config, CPU, ~1 min

For each setup: the mean squared noise norm per real sequence over 50 training forwards (target
alpha^2 / 3 = 8.33 at alpha 5: noise added twice shows as ~16.7), the noise on padding (target 0),
measured at the input of the first decoder layer (training forward minus the same forward in eval
mode); then the frames torch.compile compiled after each of 10 steps (constant = no recompiles);
then vision-language models (LLaVA, Qwen2.5-VL built from configs: squared noise norm on each row's
text tokens and on its image / video placeholders, with the placeholders counted in L as other
hooks do, and left out as neftune does); then activation checkpointing around the whole model: the
largest difference between the noise of the forward and of its recompute in backward.
Nothing is downloaded.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
warnings.filterwarnings("ignore")

import neftune  # noqa: E402

from conftest import padded_batch, tiny_llama  # noqa: E402

ALPHA = 5.0


def first_layer_input(model, call) -> torch.Tensor:
    layers = next(m for name, m in model.named_modules() if name.endswith("layers"))
    seen = []
    hook = layers[0].register_forward_pre_hook(
        lambda m, a, k: seen.append((a[0] if a else k["hidden_states"]).detach().clone()), with_kwargs=True
    )
    try:
        call()
    finally:
        hook.remove()
    return seen[0]


def measure(model, call, mask, draws: int = 50) -> tuple[list[float], float]:
    """(mean squared noise norm per sequence, total squared noise on padding)."""
    model.eval()
    with torch.no_grad():
        clean = first_layer_input(model, call)
    model.train()
    sq, pad = torch.zeros(mask.shape[0]), 0.0
    for _ in range(draws):
        noise = (first_layer_input(model, call) - clean).pow(2).sum(-1)
        sq += (noise * mask).sum(-1) / draws
        pad += float((noise * (1 - mask)).sum()) / draws
    return sq.tolist(), pad


def setups():
    from peft import LoraConfig, get_peft_model

    yield "plain Llama", tiny_llama(), "model"
    lora = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "embed_tokens"]))
    yield "PEFT LoRA on embed_tokens", lora, "model"
    mts = get_peft_model(
        tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["embed_tokens"])
    )
    yield "PEFT modules_to_save", mts, "model"
    yield "inner model called directly", tiny_llama(), "inner"
    yield "inputs_embeds + attention_mask", tiny_llama(), "inputs_embeds"


def main() -> None:
    ids, mask, _ = padded_batch()
    print(f"alpha {ALPHA}: target squared noise norm per sequence {ALPHA**2 / 3:.2f}, padding 0")
    print(f"{'setup':34s} {'per-sequence squared norm (lengths 5, 12, 2)':48s} padding")
    for name, model, how in setups():
        handle = neftune.activate(model, ALPHA)
        if how == "inner":

            def call(model=model):
                return model.model(input_ids=ids, attention_mask=mask)
        elif how == "inputs_embeds":

            def call(model=model):
                return model(inputs_embeds=model.get_input_embeddings()(ids), attention_mask=mask)
        else:

            def call(model=model):
                return model(input_ids=ids, attention_mask=mask)

        sq, pad = measure(model, call, mask.float())
        print(f"{name:34s} {'  '.join(f'{v:6.2f}' for v in sq):48s} {pad:.3g}")
        neftune.deactivate(handle)

    from torch._dynamo.testing import CompileCounterWithBackend

    for backend in ("eager", "aot_eager"):
        for schedule in (None, "linear"):
            torch.compiler.reset()
            model = tiny_llama().train()
            handle = neftune.activate(model, ALPHA, schedule=schedule)
            counter = CompileCounterWithBackend(backend)
            compiled = torch.compile(model, backend=counter)
            frames = []
            for step in range(10):
                handle.set_progress(step, 10)
                compiled(input_ids=ids, attention_mask=mask).logits.float().pow(2).mean().backward()
                frames.append(counter.frame_count)
            print(
                f"torch.compile {backend:9s} schedule {schedule or 'constant':8s} frames after each step: {frames}"
            )
            neftune.deactivate(handle)

    vision_language_models()
    checkpointing()


def vision_language_models(draws: int = 50) -> None:
    from test_vlm import build, text_tokens

    print(
        f"\nvision-language models, alpha {ALPHA}: mean squared noise norm over {draws} forwards (target 8.33)"
    )
    print(
        f"{'model':12s} {'placeholders':24s} {'text, row 0':>12s} {'text, row 1':>12s} {'placeholders':>13s}"
    )
    for name in ("llava", "qwen2.5-vl"):
        case = build(name)
        for label, settings in (
            ("counted in L (=before)", {"ignore_token_ids": ()}),
            ("left out (neftune)", {}),
        ):
            try:
                handle = neftune.activate(case.model, ALPHA, **settings)
            except TypeError:  # a checkout without ignore_token_ids: it always counts them
                handle = neftune.activate(case.model, ALPHA)
            recorder_noise = []
            embedding = case.model.get_input_embeddings()
            hook = embedding.register_forward_hook(
                lambda m, a, o, seen=recorder_noise: seen.append(o.detach())
            )
            case.model.eval()
            with torch.no_grad():
                case.call()
            clean = recorder_noise.pop()
            case.model.train()
            text, media = text_tokens(case), case.media
            sq = torch.zeros(3)
            for _ in range(draws):
                case.call()
                noise = (recorder_noise.pop() - clean).pow(2).sum(-1)
                sq += torch.stack(
                    [(noise[0] * text[0]).sum(), (noise[1] * text[1]).sum(), (noise * media).sum()]
                )
            hook.remove()
            neftune.deactivate(handle)
            sq = (sq / draws).tolist()
            print(f"{name:12s} {label:24s} {sq[0]:12.2f} {sq[1]:12.2f} {sq[2]:13.3g}")


def checkpointing() -> None:
    from torch.utils.checkpoint import checkpoint

    ids, mask, _ = padded_batch()
    print(
        "\ncheckpoint(model) around the embedding: max |forward noise - recompute noise|, forward noise norm"
    )
    for reentrant in (True, False):
        for seed in (None, 3):
            model = tiny_llama().train()
            handle = neftune.activate(model, ALPHA, seed=seed)
            outs = []
            hook = model.get_input_embeddings().register_forward_hook(
                lambda m, a, o, seen=outs: seen.append(o.detach())
            )
            anchor = torch.ones((), requires_grad=True)

            def region(i, m, a, model=model):
                return model(input_ids=i, attention_mask=m, labels=i).loss * a

            checkpoint(region, ids, mask, anchor, use_reentrant=reentrant).backward()
            hook.remove()
            neftune.deactivate(handle)
            with torch.no_grad():
                clean = model.get_input_embeddings()(ids)
            forward, recompute = outs
            print(
                f"{'reentrant' if reentrant else 'non-reentrant':14s} seed {seed!s:5s} "
                f"max diff {float((forward - recompute).abs().max()):.3g}   "
                f"forward noise norm {float((forward - clean).norm()):.3g}"
            )


if __name__ == "__main__":
    main()
