"""Statements of an experiment report that contradict each other (a test helper).

:func:`contradictions` reads a built report (``summary.json`` and ``report.html``) and returns one
line per contradiction found, empty when there is none:

- the opening verdict against the primary metric's own verdicts (a "did not measurably change"
  while a setting was better or worse; an "improved ... at X" while X was not better);
- every "no detectable difference" sentence says what could have been detected;
- each of the paper's signatures against the verdicts of the metric it names (seen at a setting
  whose difference is not in the expected direction; "not seen" while one is), and the data it
  claims ("answers to the instruction prompts" measured on instruction answers);
- the length-control sentences against the length metric they quote (the number of characters,
  longer or shorter, beyond or within noise) and against the "longer answers" signature;
- under a "not informative" banner: no verdict sentence and no answer-length difference at all.

Usage: python tests/report_consistency.py DIR/report
"""

from __future__ import annotations

import html as html_lib
import json
import re
import sys
from pathlib import Path

_LENGTH = re.compile(
    r"^(?P<label>.+?): answers to instruction prompts (?P<n>\d+) characters (?P<dir>longer|shorter) than "
    r"the baseline's(?: \((?P<pct>[\d.]+%) CI (?P<lo>\S+) to (?P<hi>\S+), (?P<noise>beyond|within) noise\))?"
)


def _cells(doc: dict, metric: str) -> dict[str, dict]:
    m = next((m for m in doc.get("metrics", []) if m["name"] == metric), None)
    return {} if m is None else {c["label"]: c for c in m["cells"] if not c["is_baseline"]}


def _text(html: str) -> str:
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", html))


def contradictions(report_dir: str | Path) -> list[str]:
    report_dir = Path(report_dir)
    doc = json.loads((report_dir / "summary.json").read_text(encoding="utf-8"))
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    text = _text(html)
    found: list[str] = []
    uninformative = "Not informative:" in html

    if uninformative:
        for pattern in (
            r"characters (longer|shorter)",
            r"NEFTune (improved|did not measurably|made)",
            r"Recommended:",
        ):
            if re.search(pattern, text):
                found.append(f"'not informative' banner, yet the page says {pattern!r}")
        return found

    # The opening verdict and the primary metric's verdicts.
    verdict = doc.get("verdict") or ""
    primary = _cells(doc, doc.get("primary_metric") or "")
    if verdict.startswith("NEFTune did not measurably change"):
        moved = [k for k, c in primary.items() if c["verdict"] in ("better", "worse")]
        if moved:
            found.append(f"verdict says no change, but the primary metric moved at {moved}")
        if "could detect" not in verdict:
            found.append("verdict of no change without the detectable effect")
    for label, cell in primary.items():
        claimed = verdict.startswith("NEFTune improved") and f"at {label} (" in verdict.split(";")[0]
        if claimed and cell["verdict"] != "better":
            found.append(f"verdict says improved at {label}, its verdict is {cell['verdict']}")
    if verdict and verdict not in text:
        found.append("the verdict sentence is not on the page")

    # Every "no detectable difference" in the headline says what could have been detected.
    for sentence in doc.get("headline") or []:
        if ("no detectable difference" in sentence.lower() or "did not measurably" in sentence) and (
            "could detect" not in sentence
        ):
            found.append(f"null result without its detectable effect: {sentence[:90]}")

    # The paper's signatures against their metrics.
    for sig in doc.get("signatures") or []:
        if not sig.get("metric"):
            continue
        cells = _cells(doc, sig["metric"])
        expected = sig["expected"]
        seen = [k for k, c in cells.items() if c["verdict"] == expected]
        if sig["status"] == "seen" and len(seen) != len(
            [c for c in cells.values() if c.get("diff", {}) and c["diff"].get("ci")]
        ):
            found.append(f"signature {sig['name']!r} 'seen' but only at {seen}")
        if sig["status"] in ("not seen", "opposite") and seen:
            found.append(f"signature {sig['name']!r} {sig['status']!r} but the data show it at {seen}")
        if sig["status"] in ("seen", "partly seen") and not seen:
            found.append(f"signature {sig['name']!r} {sig['status']!r} but no setting shows it")
        if sig["metric"] == "length_chars/ifeval" and "instruction prompts" not in sig["sentence"]:
            found.append("the length signature measures instruction answers but does not say so")
        if sig["metric"] == "length_chars" and "instruction prompts" in sig["sentence"]:
            found.append("the length signature measures task answers but claims instruction prompts")

    # Length sentences against the length metric and the length signature.
    lengths = _cells(doc, "length_chars/ifeval")
    sig = next((s for s in doc.get("signatures") or [] if s["name"] == "longer answers"), None)
    for sentence in (doc.get("instruction_following") or {}).get("verdict") or []:
        m = _LENGTH.match(sentence)
        if not m:
            continue
        cell = lengths.get(m["label"])
        if cell is None or not cell.get("diff"):
            found.append(f"length sentence for {m['label']} without a length metric to back it")
            continue
        diff = cell["diff"]["mean"]
        if int(m["n"]) != round(abs(diff)) or (m["dir"] == "longer") != (diff >= 0):
            found.append(f"{m['label']}: sentence says {m['n']} chars {m['dir']}, the metric {diff:+.1f}")
        if m["noise"]:
            beyond = cell["verdict"] in ("higher", "lower")
            if (m["noise"] == "beyond") != beyond:
                found.append(
                    f"{m['label']}: sentence says {m['noise']} noise, the verdict is {cell['verdict']}"
                )
            if sig is not None and sig.get("metric") == "length_chars/ifeval":
                claims_seen = (
                    m["label"] in sig["sentence"].split("within noise")[0] and "seen at" in sig["sentence"]
                )
                if beyond and m["dir"] == "longer" and not claims_seen:
                    found.append(
                        f"{m['label']}: answers longer beyond noise, but the signature does not see it"
                    )
    return found


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print(__doc__)
        return 2
    found = contradictions(args[0])
    for line in found:
        print("CONTRADICTION:", line)
    print("OK" if not found else f"{len(found)} contradiction(s)")
    return 0 if not found else 1


if __name__ == "__main__":
    sys.exit(main())
