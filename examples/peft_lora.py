"""NEFTune on a PEFT LoRA model; the adapter-disabled reference pass (DPO-style) stays clean."""

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

import neftune


def main(steps=2):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, pad_token_id=0)  # fmt: skip
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    ids = torch.randint(1, 64, (2, 10))
    with neftune.noisy_embeddings(model, alpha=5.0) as handle:  # finds base_model...embed_tokens
        model.train()
        for _ in range(steps):
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            with model.disable_adapter(), torch.no_grad():  # reference logits: no noise
                model(input_ids=ids)
        print(handle)
    return model


if __name__ == "__main__":
    main()
