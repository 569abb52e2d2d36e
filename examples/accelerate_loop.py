"""NEFTune in a custom Accelerate loop: activate on the prepared model, set_progress each step."""

import torch
from accelerate import Accelerator
from transformers import LlamaConfig, LlamaForCausalLM

import neftune


def main(steps=3):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, pad_token_id=0)  # fmt: skip
    accelerator = Accelerator(cpu=True)
    model = LlamaForCausalLM(cfg)
    model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    ids = torch.randint(1, 64, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # second sequence: 6 tokens + padding
    handle = neftune.activate(model, alpha=5.0, schedule="linear", seed=0)  # DDP wrappers are unwrapped
    try:
        model.train()
        for step in range(steps):
            loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            handle.set_progress(step + 1, steps)
            accelerator.print(f"step {step + 1}: loss {loss.item():.3f}, {handle}")
    finally:
        handle.remove()
    return accelerator.unwrap_model(model)


if __name__ == "__main__":
    main()
