"""Measure the noise a model really receives on the setups of docs/reliability.md ("Real setups").

    python scripts/check_real_setups.py            # a tiny Llama built from a config, CPU, ~1 min

For each setup: the mean squared noise norm per real sequence over 50 training forwards (target
alpha^2 / 3 = 8.33 at alpha 5: noise added twice shows as ~16.7), the noise on padding (target 0),
measured at the input of the first decoder layer (training forward minus the same forward in eval
mode); then the frames torch.compile compiled after each of 10 steps (constant = no recompiles).
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


if __name__ == "__main__":
    main()
