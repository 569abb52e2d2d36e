"""Numbers as the report writes them: intervals to 2 significant digits of their half-width,
true minus signs, ``–`` for a missing value, p-values and durations.

Pure functions of numbers to strings.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "decimals_for",
    "fmt_ci",
    "fmt_estimate",
    "fmt_p",
    "fmt_seconds",
    "fmt_value",
    "half_width",
    "p_relation",
    "two_digit_decimals",
]


def decimals_for(x: float, half_width: float | None = None) -> int:
    """Decimals that show a CI ``half_width`` to 2 significant digits, in [0, 6].

    Without a half-width (or a zero-width interval, i.e. no spread) ``x`` gets 4 significant digits.
    """
    if half_width is not None and math.isfinite(half_width) and half_width > 1e-9 * max(1.0, abs(x)):
        d = 1 - math.floor(math.log10(half_width))
    elif math.isfinite(x) and x != 0:
        d = 3 - math.floor(math.log10(abs(x)))
    else:
        d = 0
    return min(6, max(0, d))


def two_digit_decimals(x: float) -> int:
    """Decimals that show ``x`` to 2 significant digits, in [0, 6] (2 for 0 or a non-finite ``x``)."""
    if not x or not math.isfinite(x):
        return 2
    return min(6, max(0, 1 - math.floor(math.log10(abs(x)))))


def fmt_value(x: float | None, decimals: int | None = None, signed: bool = False) -> str:
    """``x`` with ``decimals`` (default: 4 significant digits, trailing zeros dropped), a true minus
    sign, and ``+`` if ``signed``.

    ``–`` for None or a non-finite value.
    """
    if x is None or not math.isfinite(x):
        return "–"
    if decimals is None:
        body = f"{abs(x):.{decimals_for(x)}f}"
        body = body.rstrip("0").rstrip(".") if "." in body else body
    else:
        body = f"{abs(x):.{decimals}f}"
    if x < 0:
        return "−" + body
    return ("+" + body) if signed and x > 0 else body


def half_width(lo: float | None, hi: float | None) -> float | None:
    """Half the interval's width; None without an interval."""
    return None if lo is None or hi is None else (hi - lo) / 2


def fmt_ci(lo: float | None, hi: float | None, signed: bool = False, decimals: int | None = None) -> str:
    """``[lo, hi]`` with decimals from the half-width; ``–`` without an interval."""
    if lo is None or hi is None:
        return "–"
    d = decimals_for((lo + hi) / 2, half_width(lo, hi)) if decimals is None else decimals
    return f"[{fmt_value(lo, d, signed)}, {fmt_value(hi, d, signed)}]"


def fmt_estimate(mean: float | None, lo: float | None, hi: float | None, signed: bool = False) -> str:
    """``mean [lo, hi]`` sharing one number of decimals, or just the mean without an interval."""
    if mean is None:
        return "–"
    d = decimals_for(mean, half_width(lo, hi))
    out = fmt_value(mean, d, signed)
    return out if lo is None or hi is None else f"{out} {fmt_ci(lo, hi, signed, d)}"


def p_relation(p: float | None) -> str:
    """``= 0.035`` or ``< 0.001`` (to follow a ``p``)."""
    text = fmt_p(p)
    return f"< {text[1:]}" if text.startswith("<") else f"= {text}"


def fmt_p(p: float | None) -> str:
    """A p-value to 3 decimals, ``<0.001`` below that, ``–`` for None."""
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_seconds(x: Any) -> str:
    """A duration in seconds as ``42 s``, ``3.5 min`` or ``2.25 h``; ``–`` when ``x`` is not a number."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "–"
    x = float(x)
    if x < 120:
        return f"{x:.0f} s"
    if x < 7200:
        return f"{x / 60:.1f} min"
    return f"{x / 3600:.2f} h"
