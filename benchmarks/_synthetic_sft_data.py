"""Synthetic instruction records with an Alpaca-like token-length histogram (for throughput benchmarks).

Lengths, not content, decide training throughput, so the text is random words that are each a
single token of the tokenizer, arranged so that each record's chat-templated length follows a
log-normal draw. The measured histogram is returned with the records.
"""

from __future__ import annotations

import math
import random
import re
import statistics

LOG_SIGMA = 0.6
MIN_TOKENS = 32


def single_token_words(tokenizer, limit: int = 4000) -> list[str]:
    """Lower-case words that the tokenizer encodes as exactly one token when preceded by a space."""
    words = []
    for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        if not re.fullmatch(r"Ġ[a-z]{3,10}", token):  # byte-level BPE marks a leading space with Ġ
            continue
        word = token[1:]
        if len(tokenizer.encode(" " + word, add_special_tokens=False)) == 1:
            words.append(word)
            if len(words) >= limit:
                break
    if len(words) < 100:
        raise RuntimeError(
            "the tokenizer has too few single-token words (expected a byte-level BPE vocabulary)"
        )
    return words


def target_lengths(n: int, mean_tokens: float, max_tokens: int, seed: int) -> list[int]:
    """``n`` lengths from a log-normal with the given mean and sigma LOG_SIGMA, clipped to [32, max]."""
    rng = random.Random(seed)
    mu = math.log(mean_tokens) - LOG_SIGMA**2 / 2  # E[exp(N(mu, s^2))] = exp(mu + s^2 / 2)
    return [min(max_tokens, max(MIN_TOKENS, round(rng.lognormvariate(mu, LOG_SIGMA)))) for _ in range(n)]


def build_records(
    tokenizer, n: int, mean_tokens: float, max_tokens: int, seed: int
) -> tuple[list[dict], dict]:
    """Alpaca-format records ({"instruction", "output"}) and the measured length histogram.

    Each record's chat-templated length aims at a draw from :func:`target_lengths`: the
    template's own tokens (measured on an empty exchange) are subtracted, the rest is split
    into prompt and response words (single tokens), prompt share uniform in [0.15, 0.5].
    """
    from neftune.finetune.models import chat_token_ids

    rng = random.Random(seed + 1)
    words = single_token_words(tokenizer)
    # The template's tokens plus the two closing marks ("?" and "."), measured around 1-token words.
    shell = [{"role": "user", "content": words[0] + "?"}, {"role": "assistant", "content": words[0] + "."}]
    overhead = len(chat_token_ids(tokenizer, shell)) - 2
    records, lengths = [], []
    for target in target_lengths(n, mean_tokens, max_tokens - 8, seed):  # 8: room for tokenizer slack
        body = max(2, target - overhead)
        n_prompt = max(1, round(body * rng.uniform(0.15, 0.5)))
        n_resp = max(1, body - n_prompt)
        prompt = " ".join(rng.choice(words) for _ in range(n_prompt)).capitalize() + "?"
        output = " ".join(rng.choice(words) for _ in range(n_resp)).capitalize() + "."
        records.append({"instruction": prompt, "output": output})
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
        lengths.append(len(chat_token_ids(tokenizer, messages)))
    ordered = sorted(lengths)
    stats = {
        "how_built": (
            f"synthetic: chat-templated lengths drawn from a log-normal (mean {mean_tokens}, sigma "
            f"{LOG_SIGMA}) clipped to [{MIN_TOKENS}, {max_tokens - 8}]; prompt share U(0.15, 0.5); words that "
            "are single tokens of the tokenizer; lengths measured with the tokenizer's chat template"
        ),
        "records": n,
        "template_overhead_tokens": overhead,
        "mean_tokens": statistics.fmean(lengths),
        "median_tokens": statistics.median(lengths),
        "p10_tokens": ordered[len(ordered) // 10],
        "p90_tokens": ordered[(9 * len(ordered)) // 10],
        "max_tokens": ordered[-1],
        "min_tokens": ordered[0],
    }
    return records, stats
