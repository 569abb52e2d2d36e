"""Is an experiment informative at all? Reasons it is not, before any verdict is read.

Pure Python on ``results.json`` (schema neftune.results/1): an experiment whose models produced
only empty answers, whose accuracy is 0 in every arm and split, or that logged no training loss
cannot say whether the noise helped, whatever the statistics print.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["not_informative_reasons"]


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def not_informative_reasons(results: Mapping[str, Any]) -> list[str]:
    """Plain-words reasons the finished arms of ``results`` cannot support a verdict (empty: none)."""
    arms = [a for a in results.get("arms", []) if a.get("status") == "complete"]
    if not arms:
        return []
    reasons = []
    lengths = [a.get("eval", {}).get("length_chars") for a in arms]
    if all(_finite(x) and x == 0 for x in lengths):
        reasons.append("every generated answer was empty (length 0 in every arm)")
    accuracy = [v for a in arms for k, v in a.get("eval", {}).items() if k.startswith("accuracy/")]
    if accuracy and all(_finite(v) and v == 0 for v in accuracy):
        reasons.append(
            "accuracy is 0 in every arm and split: the models did not learn the tasks "
            "(too few steps or too small a model)"
        )
    if not any(_finite(a.get("train", {}).get("train_loss")) for a in arms):
        reasons.append("no training loss was logged")
    return reasons
