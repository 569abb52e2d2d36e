"""NEFTune with TRL's SFTTrainer, padding-free batches (char tokenizer built in memory, tiny Llama)."""

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import SFTConfig, SFTTrainer

from neftune.integrations import attach


def char_tokenizer():
    vocab = {
        "<pad>": 0,
        "<eos>": 1,
        "<unk>": 2,
        **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz .,")},
    }
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def main(output_dir="/tmp/neftune-example-sft"):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, pad_token_id=0)  # fmt: skip
    dataset = Dataset.from_dict({"text": ["hi", "hello world", "a much longer sentence, with words."]})
    args = SFTConfig(output_dir, max_steps=2, per_device_train_batch_size=3, padding_free=True, max_length=None,
                     report_to="none", use_cpu=True, save_strategy="no")  # fmt: skip
    trainer = SFTTrainer(model=LlamaForCausalLM(cfg), args=args, train_dataset=dataset,
                         processing_class=char_tokenizer())  # fmt: skip
    attach(trainer, alpha=5.0)  # do not also set neftune_noise_alpha: that is refused (double noise)
    trainer.train()
    return trainer.model


if __name__ == "__main__":
    main()
