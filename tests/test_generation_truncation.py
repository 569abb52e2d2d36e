"""Every generation records its token count and whether the cap cut it (neftune.finetune.evaluation)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from neftune.finetune.data.formats import Record  # noqa: E402
from neftune.finetune.evaluation import generate_answers  # noqa: E402

EOS, PAD = 2, 0


class FakeTokenizer:
    """Prompts of 2 tokens; token t decodes as ``w{t}``, the end and pad tokens as nothing."""

    eos_token_id, pad_token_id, padding_side = EOS, PAD, "right"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        return messages[-1]["content"]

    def __call__(self, texts, **kw):
        ids = torch.tensor([[5, 6]] * len(texts))
        return _Batch({"input_ids": ids, "attention_mask": torch.ones_like(ids)})

    def batch_decode(self, rows, skip_special_tokens):
        return [" ".join(f"w{t}" for t in row.tolist() if t not in (EOS, PAD)) for row in rows]


class _Batch(dict):
    def to(self, device):
        return self


class FakeModel(torch.nn.Module):
    """Greedy continuations fixed per row: row 0 ends after 2 tokens (then pads), row 1 never ends."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.generation_config = type("G", (), {"eos_token_id": [EOS]})()

    def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
        rows = [[7, 8, EOS] + [PAD] * max_new_tokens, [9] * max_new_tokens][: len(input_ids)]
        new = torch.tensor([r[:max_new_tokens] for r in rows])
        return torch.cat([input_ids, new], dim=1)


def _records(n):
    return [
        Record([{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": ""}]) for i in range(n)
    ]


def test_answers_record_new_tokens_and_truncation():
    ended, cut = generate_answers(FakeModel(), FakeTokenizer(), _records(2), max_new_tokens=5, batch_size=2)
    assert (ended.text, ended.new_tokens, ended.truncated) == ("w7 w8", 2, False)
    assert (cut.text, cut.new_tokens, cut.truncated) == ("w9 w9 w9 w9 w9", 5, True)
    # An answer that ends exactly at the cap's last token ended: not cut.
    (exact,) = generate_answers(FakeModel(), FakeTokenizer(), _records(1), max_new_tokens=3, batch_size=1)
    assert exact.new_tokens == 2 and not exact.truncated
