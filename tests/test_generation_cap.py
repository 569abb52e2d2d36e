"""benchmarks/generation_cap.py: which cap cuts how many answers (pure arithmetic, no model)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("generation_cap", None)
    return importlib.import_module("generation_cap")


def test_cut_fractions_and_the_smallest_cap_within_target(monkeypatch):
    cap = _load(monkeypatch)
    # 50 answers: 45 end below 100 tokens, 3 end at 150, 1 at 300, 1 never ended at the cap of 512.
    tokens = [40] * 45 + [150] * 3 + [300, 512]
    ended = [True] * 49 + [False]
    # A cap cuts the answers of at least that many tokens and the one that never ended.
    assert cap.cut_fraction(tokens, ended, 128) == 5 / 50
    assert cap.cut_fraction(tokens, ended, 160) == 2 / 50
    assert cap.cut_fraction(tokens, ended, 320) == 1 / 50
    summary = cap._summary(tokens, ended, SimpleNamespace(cap=512, target=0.02))
    assert summary["smallest_cap_within_target"] == 320  # 1/50 = 2%
    assert summary["not_ended_at_measuring_cap"] == 1 and summary["new_tokens"]["p50"] == 40
    none = cap._summary([512] * 10, [False] * 10, SimpleNamespace(cap=512, target=0.02))
    assert none["smallest_cap_within_target"] is None  # answers that never end fit no cap
