"""NEFTune in a plain PyTorch loop: ``with neftune.noisy_embeddings(model, alpha):``."""

import torch
from torch import nn

import neftune


class TinyLM(nn.Module):
    def __init__(self, vocab=64, dim=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.body = nn.GRU(dim, dim, batch_first=True)
        self.head = nn.Linear(dim, vocab)

    def forward(self, input_ids, attention_mask=None):
        return self.head(self.body(self.embed(input_ids))[0])


def main(steps=3):
    torch.manual_seed(0)
    model = TinyLM()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ids = torch.randint(1, 64, (2, 12))
    mask = torch.ones_like(ids)
    mask[0, 4:] = 0
    with neftune.noisy_embeddings(model, alpha=5.0) as handle:  # lengths from attention_mask=
        for _ in range(steps):
            logits = model(ids, attention_mask=mask)
            loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        print(handle)
    return model


if __name__ == "__main__":
    main()
