"""Where the random numbers of the noise come from: torch's default RNG or a private stream.

A private stream is used when a ``seed`` is given, and in multi-process training (so ranks
seeded alike by the user still draw different noise). Its generators are seeded by
:func:`stream_seed` from (seed, distributed rank, optimizer step): every optimizer step
starts a fresh stream, so a run resumed at step k draws what the uninterrupted run drew.
"""

from __future__ import annotations

import contextlib
import operator

import torch

from .activation.checkpointing import DrawJournal

_RANK_STRIDE = 1_000_003  # distinct, reproducible seeds per distributed rank
_MASK64 = 2**64 - 1


def check_seed(seed: object) -> int | None:
    """``seed`` as a Python int (or None): ints, numpy integers and 0-d integer tensors are accepted."""
    if seed is None:
        return None
    if isinstance(seed, torch.Tensor):
        if (
            seed.numel() != 1
            or seed.dtype.is_floating_point
            or seed.dtype.is_complex
            or seed.dtype == torch.bool
        ):
            raise TypeError(
                f"seed must be an integer, got a {seed.dtype} tensor of shape {tuple(seed.shape)}"
            )
        return int(seed.item())
    if not isinstance(seed, bool):
        with contextlib.suppress(TypeError):
            return operator.index(seed)
    raise TypeError(f"seed must be an int or None, got {type(seed).__name__} {seed!r}")


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit function of ``x``."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def stream_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the private noise stream of (``seed``, distributed ``rank``, optimizer ``step``).

    Step 0 is ``seed + rank * 1_000_003`` (mod 2**63); later steps are a splitmix64 mix of it.
    """
    base = (seed + rank * _RANK_STRIDE) % 2**63
    if step == 0:
        return base
    return _mix64(base + _mix64(step * 0x9E3779B97F4A7C15)) % 2**63


def distributed_rank() -> int:
    """This process's rank in ``torch.distributed`` (0 when it is not initialised)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


class NoiseStream:
    """The generators one activation draws its noise from, one per device.

    ``generator(device)`` is None (torch's default RNG, so ``torch.manual_seed`` governs the
    noise) without a seed on a single process; otherwise a private generator seeded by
    :func:`stream_seed` (without a seed: from ``torch.initial_seed()``). ``advance(step)``
    reseeds every generator for optimizer step ``step``. ``journal`` keeps the recent forward
    draws, so that a checkpoint's recompute repeats them (:mod:`neftune.activation.checkpointing`); it is
    emptied at each new step.
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self.step = 0
        self._generators: dict[torch.device, torch.Generator] = {}
        self.journal = DrawJournal()

    def _base(self) -> int:
        return self.seed if self.seed is not None else torch.initial_seed()

    def generator(self, device: torch.device) -> torch.Generator | None:
        rank = distributed_rank()
        if self.seed is None and rank == 0:
            return None
        gen = self._generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(stream_seed(self._base(), rank, self.step))
            self._generators[device] = gen
        return gen

    def advance(self, step: int) -> None:
        """Start optimizer step ``step``'s stream (a no-op when it is the current one)."""
        if step == self.step:
            return
        self.step = step
        self.journal.clear()
        for gen in self._generators.values():
            gen.manual_seed(stream_seed(self._base(), distributed_rank(), step))

    def clear(self) -> None:
        self._generators = {}
        self.journal.clear()

    def __getstate__(self) -> dict:
        return {"seed": self.seed, "step": self.step, "_generators": {}, "journal": DrawJournal()}
