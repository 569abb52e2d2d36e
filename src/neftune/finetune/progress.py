"""How long-running work reports how far it got: ``progress(stage, done, total, **fields)``.

Every producer calls one function of this shape (:class:`Progress`):

=====================================  ============  ========================================
producer                               stage         done / total, fields
=====================================  ============  ========================================
:func:`neftune.finetune.training.train`         ``train``     optimizer steps; ``loss``, ``alpha`` at
                                                     logged steps (``alpha`` None: no noise)
:func:`neftune.finetune.evaluation.evaluate`    ``evaluate``  responses generated
``neftune analyze``                    ``noise``,    alphas drawn, distinct tokens searched
                                       ``nearest``
=====================================  ============  ========================================

A call with a stage other than the previous one starts that stage; ``total`` None means
not known yet. Experiments (:mod:`neftune.experiments.run`) pass this function on to their
arms and add ``start`` and ``report`` stages. :class:`RichBars` draws the calls as the
CLI's rich bars; library callers pass nothing (:func:`no_progress`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Progress(Protocol):
    """``progress(stage, done, total, **fields)``: ``done`` of ``total`` (None: unknown) in ``stage``."""

    def __call__(self, stage: str, done: int, total: int | None, **fields: Any) -> None: ...


def no_progress(stage: str, done: int, total: int | None, **fields: Any) -> None:
    """The default :class:`Progress`: ignores every report."""


@dataclass
class Tally:
    """A running count of ``stage``'s items, reported to ``progress`` after each batch.

    For work split over several calls (evaluation generates split after split, batch after
    batch): each call adds its batch with :meth:`add`.
    """

    progress: Progress
    stage: str
    total: int | None = None
    done: int = 0

    def add(self, n: int) -> None:
        self.done += n
        self.progress(self.stage, self.done, self.total)


class RichBars:
    """A :class:`Progress` drawn on a ``rich.progress.Progress`` (``bar``): one bar per stage.

    ``describe(stage)``: the new bar's description; a report whose description differs from
    the current bar's starts a new bar, which replaces the old one with ``replace`` and goes
    below it otherwise. ``show(fields)``: the rich task fields shown for a report's
    ``fields``; called with ``{}`` for a new bar (the blanks its columns need) and only for
    reports that carry fields afterwards. A ``total`` of None or 0 draws an open-ended bar.
    """

    def __init__(
        self,
        bar: Any,
        *,
        describe: Callable[[str], str] = str,
        replace: bool = False,
        show: Callable[[dict[str, Any]], dict[str, Any]] = lambda fields: {},
    ) -> None:
        self.bar = bar
        self.describe = describe
        self.replace = replace
        self.show = show
        self.task: Any = None
        self.description: str | None = None

    def __call__(self, stage: str, done: int, total: int | None, **fields: Any) -> None:
        description = self.describe(stage)
        if description != self.description:
            if self.replace and self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(description, total=total or None, **self.show({}))
            self.description = description
        shown = self.show(fields) if fields else {}
        self.bar.update(self.task, completed=done, total=total or None, **shown)
