"""Activation checkpointing around the input embedding: which calls get noise, and the same noise twice.

``torch.utils.checkpoint`` (and what is built on it: FSDP's ``checkpoint_wrapper``, DeepSpeed's and
Accelerate's checkpointing, ``checkpoint(model, ...)`` in a user's loop) runs a region twice: in the
forward, and again during backward to rebuild its activations. When the region holds the input
embedding, both runs must see the same noise, or the loss and the gradients are computed at
different inputs. The rule neftune follows:

1. A call made while autograd's engine runs a backward pass is a **recompute**. It gets the noise
   of the forward call it repeats: the same scales (alpha, lengths and placeholders recorded in
   the forward, in a :class:`DrawJournal`) and the same random draws. torch restores its own RNG
   for the recompute (``preserve_rng_state=True``, the default); neftune restores its private
   generator (``seed=`` or multi-process) to the state the forward drew from, then puts it back,
   so the forward stream continues as if nothing had been recomputed.
2. A call with autograd disabled gets no noise (reference-model passes, metrics, generation) —
   except inside the forward of a **reentrant** checkpoint (``use_reentrant=True``) that will be
   differentiated. That forward always runs under ``no_grad`` and its backward recomputes the
   region with grad on. It is recognised on the call stack: a ``CheckpointFunction.forward``
   frame (torch's or DeepSpeed's) whose autograd node has next functions. The node gets them only
   when grad was enabled where the checkpoint was called and one of its inputs requires grad,
   i.e. exactly when its backward will run. A ``torch.no_grad()`` pass around a checkpointed model
   leaves the node without next functions, so it stays clean. Not told apart: a ``no_grad`` pass
   made *inside* the forward of a differentiated reentrant checkpoint (it is noised).

Under ``torch.compile`` neither rule is applied (the stack and the journal are Python state).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

#: How far up the call stack a reentrant checkpoint's forward is looked for.
_MAX_FRAMES = 400
#: Forward draws kept for a recompute to find (newest last); older ones are dropped.
JOURNAL_SIZE = 32


def in_backward() -> bool:
    """Whether autograd's engine is running a backward pass on this thread (a recompute happens there)."""
    return torch._C._current_graph_task_id() != -1


def _checkpoint_nodes() -> Iterator[Any]:
    """The autograd nodes (``ctx``) of the reentrant-checkpoint forwards on the call stack, innermost first."""
    frame = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return
        code = frame.f_code
        if code.co_name == "forward" and code.co_argcount >= 1 and code.co_varnames[0] == "ctx":
            ctx = frame.f_locals.get("ctx")
            forward_cls = getattr(ctx, "_forward_cls", None)
            if forward_cls is not None and forward_cls.__name__ == "CheckpointFunction":
                yield ctx
        frame = frame.f_back


def differentiated_reentrant_forward() -> bool:
    """Whether this call runs in the no-grad forward of a reentrant checkpoint that will be differentiated.

    True when a ``CheckpointFunction.forward`` on the stack (innermost or around it: nested
    checkpoints all recompute) belongs to an autograd node with next functions.
    """
    return any(len(ctx.next_functions) > 0 for ctx in _checkpoint_nodes())


@dataclass
class Draw:
    """One forward call's noise, as a recompute needs to repeat it.

    ``key``: (device, embedding output shape, data pointer of the token ids or None), to find it
    again; ``generator``: the private generator drawn from (None: torch's default RNG, which
    torch's checkpoint restores itself) and ``state`` its state before the draw; ``params``:
    everything else that sets the noise (alpha, lengths, placeholders), as the caller keeps it.
    """

    key: tuple
    generator: torch.Generator | None
    state: torch.Tensor | None
    params: dict[str, Any] = field(default_factory=dict)


def draw_key(output: torch.Tensor, ids: object) -> tuple:
    """Key of a call: its output's device and shape, and where its token ids live (if it got any)."""
    pointer = ids.data_ptr() if isinstance(ids, torch.Tensor) else None
    return (output.device, tuple(output.shape), pointer)


class DrawJournal:
    """The last :data:`JOURNAL_SIZE` forward draws, for recomputes to repeat.

    A recompute takes the newest unused draw with the same key; failing that, the newest with the
    same device and shape (token ids made inside the checkpointed region live elsewhere each time).
    Recomputes come in the reverse order of their forwards when several forwards share one
    backward, and right after it otherwise, so the newest match is the right one.
    """

    def __init__(self) -> None:
        self._draws: list[Draw] = []

    def __len__(self) -> int:
        return len(self._draws)

    def record(self, key: tuple, generator: torch.Generator | None, params: dict[str, Any]) -> None:
        state = generator.get_state() if generator is not None else None
        self._draws.append(Draw(key, generator, state, params))
        if len(self._draws) > JOURNAL_SIZE:
            del self._draws[0]

    def take(self, key: tuple) -> Draw | None:
        """Remove and return the forward draw a recompute with ``key`` repeats (None: not found)."""
        for exact in (True, False):
            for index in range(len(self._draws) - 1, -1, -1):
                candidate = self._draws[index].key
                if candidate == key if exact else candidate[:2] == key[:2]:
                    return self._draws.pop(index)
        return None

    def clear(self) -> None:
        self._draws = []


@contextlib.contextmanager
def replaying(draw: Draw | None, generator: torch.Generator | None) -> Iterator[None]:
    """Draw from ``generator`` as in ``draw``'s forward; afterwards put the generator back as it was.

    With no ``draw`` (a recompute whose forward was not recorded) the generator still gets its
    state back, so the forward stream is unchanged; the noise then differs from the forward's.
    """
    if generator is None:
        yield
        return
    live = generator.get_state()
    if draw is not None and draw.state is not None and draw.generator is generator:
        generator.set_state(draw.state)
    try:
        yield
    finally:
        generator.set_state(live)
