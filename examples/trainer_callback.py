"""NEFTune with transformers.Trainer: ``attach(trainer, alpha)`` (tiny Llama from a config, CPU)."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from neftune.integrations import attach


def tiny_model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, pad_token_id=0)  # fmt: skip
    return LlamaForCausalLM(cfg)


def collate(rows):
    """Right-pad variable-length rows; labels -100 on padding."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def main(output_dir="/tmp/neftune-example-trainer"):
    data = [list(range(1, n)) for n in (5, 30, 12, 60)] * 2
    args = TrainingArguments(output_dir, max_steps=2, per_device_train_batch_size=4, report_to="none",
                             use_cpu=True, save_strategy="no", logging_steps=1)  # fmt: skip
    trainer = Trainer(model=tiny_model(), args=args, train_dataset=data, data_collator=collate)
    attach(trainer, alpha=5.0)  # per-sequence noise; removed after train(), also if it raises
    trainer.train()
    print([{k: v for k, v in h.items() if k.startswith("neftune/")} for h in trainer.state.log_history])
    return trainer.model


if __name__ == "__main__":
    main()
