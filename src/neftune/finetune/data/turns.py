"""Which tokens of a conversation are trained on: every assistant turn, or only the last.

A record with several assistant turns (chat ``messages``, ShareGPT ``conversations``) trains
every assistant turn by default, as TRL's assistant-only loss does; ``last`` trains only the final
one, as a prompt/completion pair would. TRL finds assistant tokens through ``{% generation %}``
markers in the chat template, which most templates (SmolLM2's among them) lack; here each
assistant turn's tokens are found by rendering the conversation up to that turn with the model's
own template and comparing it with the whole conversation.

A single-turn record gives exactly what TRL's prompt/completion tokenization gives: the ids of the
rendered conversation, and a mask of 1 from where the rendered prompt (with the generation prompt)
stops matching them.
"""

from __future__ import annotations

from typing import Any

from .formats import DataError, Record

#: ``--assistant-turns`` values.
ASSISTANT_TURNS = ("all", "last")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def assistant_mask(
    tokenizer: Any, messages: list[dict[str, str]], turns: str = "all"
) -> tuple[list[int], list[int]]:
    """``(input_ids, mask)`` of one conversation: ``mask[i]`` is 1 on the tokens of the trained
    assistant turns (their content and end-of-turn tokens), 0 elsewhere.

    Raises :class:`DataError` when the template renders an earlier assistant turn differently inside
    the longer conversation (some templates drop earlier turns' reasoning): train the last turn then.
    """
    from ..models import chat_token_ids

    if turns not in ASSISTANT_TURNS:
        raise ValueError(f"turns must be one of {', '.join(ASSISTANT_TURNS)}, got {turns!r}")
    ids = chat_token_ids(tokenizer, messages)
    mask = [0] * len(ids)
    assistant = [k for k, m in enumerate(messages) if m["role"] == "assistant"]
    for k in assistant[-1:] if turns == "last" else assistant:
        start = _common_prefix(chat_token_ids(tokenizer, messages[:k], add_generation_prompt=True), ids)
        if k == len(messages) - 1:
            end = len(ids)
        else:
            through = chat_token_ids(tokenizer, messages[: k + 1])
            end = _common_prefix(through, ids)
            if end < len(through) - 1 or end <= start:  # one closing token may differ (an end-of-text)
                raise DataError(
                    f"the model's chat template renders assistant turn {k} differently inside the whole "
                    "conversation than up to that turn, so its tokens cannot be found; train only the last "
                    "turn (--assistant-turns last)"
                )
        mask[start:end] = [1] * (end - start)
    return ids, mask


def training_rows(records: list[Record], tokenizer: Any, turns: str = "all") -> list[dict[str, list[int]]]:
    """Tokenized training rows for TRL's ``SFTTrainer`` (``input_ids`` and ``completion_mask``, which it
    turns into labels with ``completion_only_loss=True``)."""
    rows = []
    for i, record in enumerate(records):
        try:
            ids, mask = assistant_mask(tokenizer, record.messages, turns)
        except DataError as exc:
            raise DataError(exc.reason, where=f"record {i}") from None
        rows.append({"input_ids": ids, "completion_mask": mask})
    return rows


def conversation_text(messages: list[dict[str, str]]) -> str:
    """What a record asks, as one text: its last user message, or, when earlier turns came before,
    the whole conversation up to it (``User: ...`` / ``Assistant: ...`` paragraphs; a system turn
    first as ``System: ...``). For ``alpaca_eval.json`` and ``generations.json``."""
    prompt = messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages
    turns = [m for m in prompt if m["role"] != "system"]
    if len(turns) <= 1:
        return turns[-1]["content"] if turns else ""
    label = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{label[m['role']]}: {m['content']}" for m in prompt)
