"""The experiment report: ``DIR/results.json`` -> ``DIR/report/`` (HTML, Markdown, PNGs, summary JSON).

:func:`build_report` is the entry point (``neftune report DIR`` calls it). The HTML is
self-contained: inline CSS, PNGs embedded as base64 data URIs, no JavaScript, no external
URL. Every file is written atomically. Works on partial results (status ``running``).
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io import write_bytes_atomic, write_json_atomic, write_text_atomic
from .findings import summary_to_dict
from .formatting import fmt_estimate, fmt_p, fmt_seconds
from .informative import not_informative_reasons
from .instruction_report import (
    InstructionSection,
    instruction_section,
    section_dict,
    section_html,
    section_markdown,
    verdict_sentences,
)
from .labels import DIRECTION_TEXT, confidence_text, sentence_case, setting_text
from .plots import answer_lengths_figure, figure_png, make_figures
from .stats import (
    BASELINE,
    BETTER,
    HIGHER,
    LOWER,
    NO_DIFFERENCE,
    RESULTS_SCHEMA,
    WORSE,
    Cell,
    MetricSummary,
    Setting,
    Summary,
    summarize,
)

__all__ = ["ReportError", "build_report", "load_results", "render_html", "render_markdown"]

REPORT_DIR = "report"

_FIGURE_TEXT = {
    "learning_curves": (
        "Learning curves",
        "One colour per setting; thin lines are single seeds, the thick line their mean. Training loss "
        "with noise ON is what the trainer logged (noise included, so it is higher with more noise); the "
        "noise-OFF training loss and the held-out curves are measured with the noise switched off.",
    ),
    "heldout_curves": (
        "Every held-out split",
        "Loss (top) and accuracy (bottom) with noise off on each held-out split, same colours.",
    ),
    "metric_means": (
        "Mean of every metric per setting",
        "Big markers: across-seed mean with its confidence interval; small dots: single seeds; dashed line "
        "and grey band: the baseline's mean and interval; *: difference from the baseline distinguishable "
        "from seed noise.",
    ),
    "answer_lengths": (
        "Answer lengths per setting",
        "Box plots of the answers' lengths in characters, all seeds pooled: box from the lower to the upper "
        "quartile, line at the median, whiskers to 1.5 interquartile ranges, dots beyond.",
    ),
    "differences": (
        "Difference from the baseline, paired by seed",
        "Each setting minus the baseline on the same seed, mean and confidence interval. An interval that "
        "crosses the dotted zero line is within seed noise.",
    ),
}
_VERDICT_CLASS = {
    BETTER: "v-better",
    WORSE: "v-worse",
    HIGHER: "v-higher",
    LOWER: "v-lower",
    NO_DIFFERENCE: "v-nd",
    BASELINE: "v-baseline",
}


class ReportError(ValueError):
    """``results.json`` is missing, unreadable or not in the ``neftune.results/1`` schema."""


# --------------------------------------------------------------------------- input


def load_results(folder: str | Path) -> dict[str, Any]:
    """Read and check ``folder/results.json``; raises :class:`ReportError` saying what is wrong."""
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise ReportError(
            f"{path} not found: pass the folder given to `neftune compare/sweep --out`, "
            "or run the experiment first"
        )
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(
            f"{path} is not readable JSON ({exc}); re-run the experiment to rewrite it"
        ) from exc
    if not isinstance(results, dict):
        raise ReportError(f"{path} must hold a JSON object, got {type(results).__name__}")
    if results.get("schema") != RESULTS_SCHEMA:
        raise ReportError(
            f"{path} has schema {results.get('schema')!r}; this report reads {RESULTS_SCHEMA!r}"
        )
    if not isinstance(results.get("arms"), list):
        raise ReportError(f"{path}: 'arms' must be a list of arms")
    return results


def _extra_images(folder: Path) -> list[tuple[str, Path]]:
    """Optional figures from ``neftune analyze`` / ``viz`` in the same experiment folder."""
    found = []
    analyze = folder / "analyze" / "analyze.png"
    if analyze.is_file():
        found.append(("Noise on the real token embeddings (neftune analyze)", analyze))
    viz = folder / "viz"
    if viz.is_dir():
        found += [(f"Embedding projection (neftune viz): {p.stem}", p) for p in sorted(viz.glob("*.png"))]
    return found


# --------------------------------------------------------------------------- shared table content


def _diff_text(c: Cell) -> str:
    if c.is_baseline or c.diff is None or c.diff.mean is None:
        return "–"
    return fmt_estimate(c.diff.mean, c.diff.lo, c.diff.hi, signed=True)


def _metric_rows(m: MetricSummary) -> list[dict[str, str]]:
    """Display strings of one metric table: setting, seeds, mean [CI], diff [CI], p, verdict."""
    rows = []
    for c in m.cells:
        e = c.estimate
        rows.append(
            {
                "setting": c.label,
                "seeds": str(e.n),
                "mean": fmt_estimate(e.mean, e.lo, e.hi),
                "diff": _diff_text(c),
                "p": "–" if c.is_baseline or c.diff is None else fmt_p(c.diff.p),
                "verdict": c.verdict,
                "is_baseline": "1" if c.is_baseline else "",
            }
        )
    return rows


def _setting_text(d: Any, labels: Mapping[Setting, str]) -> str:
    """The summary's short label of a setting dict, or a full description if it has none."""
    try:
        return setting_text(Setting.from_mapping(d), labels)
    except ValueError:
        return str(d)


def _arm_rows(results: Mapping[str, Any], labels: Mapping[Setting, str]) -> list[dict[str, str]]:
    rows = []
    for arm in results.get("arms") or []:
        train = arm.get("train") or {}
        rows.append(
            {
                "id": str(arm.get("id", "?")),
                "setting": _setting_text(arm.get("setting"), labels),
                "seed": str(arm.get("seed", "?")),
                "status": str(arm.get("status", "?")),
                "seconds": fmt_seconds(arm.get("seconds")),
                "train_seconds": fmt_seconds(train.get("train_seconds")),
                "steps": str(train.get("global_step", "–")),
                "error": str(arm.get("error") or ""),
            }
        )
    return rows


def _wall_times(results: Mapping[str, Any]) -> dict[str, str]:
    secs = [
        float(a["seconds"])
        for a in results.get("arms") or []
        if isinstance(a.get("seconds"), (int, float)) and not isinstance(a.get("seconds"), bool)
    ]
    if not secs:
        return {"total": "–", "per_arm": "–"}
    per = f"{fmt_seconds(min(secs))} – {fmt_seconds(max(secs))}, mean {fmt_seconds(sum(secs) / len(secs))}"
    return {"total": f"{fmt_seconds(sum(secs))} over {len(secs)} arms", "per_arm": per}


def _out_dir_of(command: str) -> str:
    match = re.search(r"--out[ =](\S+)", command)
    return match.group(1) if match else "DIR"


def _reproduce_lines(results: Mapping[str, Any]) -> list[str]:
    env = results.get("environment") or {}
    # The local build tag (2.13.0+cpu, +cu128) is dropped: pip picks the build for the machine.
    pins = [
        f"{pkg}=={str(env[pkg]).split('+')[0]}"
        for pkg in ("torch", "transformers", "trl", "peft")
        if env.get(pkg)
    ]
    command = str(results.get("command") or "").strip()
    lines = [
        f"# neftune {env.get('neftune', '?')}, from this repository",
        'pip install -e ".[cli]"' + (f" {' '.join(pins)}" if pins else ""),
    ]
    if command:
        lines.append(command)
    lines.append(f"neftune report {_out_dir_of(command)}    # rebuild this report from results.json")
    return lines


def _how_to_read(summary: Summary) -> list[str]:
    pct = confidence_text(summary.confidence)
    return [
        f"Each setting was trained with several seeds. Mean [{pct} CI]: the across-seed mean and its "
        "Student-t confidence interval.",
        "Diff vs baseline: the setting minus the baseline on the same seed (seeds missing on either side "
        "are left out), with its interval and a two-sided paired t-test p-value.",
        "Verdict: better / worse (or higher / lower for descriptive metrics, which have no better side) "
        "only when that interval excludes 0; otherwise 'no detectable difference', which means the effect, "
        "if any, is smaller than seed-to-seed noise at this number of seeds, not that it is zero. "
        "'n/a (1 seed)': an interval needs at least 2 paired seeds.",
        "The training loss with noise off rising with alpha is the paper's 'less overfitting' signature, "
        "so it is described (higher / lower), not judged.",
        "Many metrics times many settings are compared, each at "
        f"{pct} confidence, so a few 'distinguishable' results are expected by chance (see the headline).",
    ]


# --------------------------------------------------------------------------- HTML

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;
 background:#eef0f3;color:#1f2328;line-height:1.45;font-size:15px}
main{max-width:1200px;margin:0 auto;padding:26px 36px 48px;background:#fff}
h1{font-size:1.65rem;margin:0 0 4px}
h2{font-size:1.25rem;margin:34px 0 10px;padding-bottom:4px;border-bottom:1px solid #d8dee4}
h3{font-size:1.02rem;margin:14px 0 4px}
.sub{color:#57606a;font-size:.92rem;margin:0}
.box{border-radius:8px;padding:12px 18px;margin:16px 0}
.box p{margin:6px 0}
.box ul{margin:6px 0;padding-left:20px}
.box li{margin:5px 0}
.headline{background:#f1f4f9;border-left:6px solid #44577a}
.headline li:first-child{font-weight:600}
.warn{background:#fff7e0;border-left:6px solid #a66a00}
.rec{background:#f2f7f2;border-left:6px solid #2d6a3a}
.rec .pick{font-size:1.08rem;font-weight:700}
.note{background:#f7f7f8;border-left:6px solid #9aa0a6;font-size:.92rem}
table{border-collapse:collapse;font-size:.87rem;margin:4px 0 10px;width:100%}
th,td{padding:5px 8px;border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:top}
th{background:#f3f4f6;font-weight:600;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th.num{text-align:right}
tr.base td{background:#fafafa;color:#4b5259}
tr.failed td{background:#fdf1f0}
tr.pending td{background:#fffbea}
.pill{display:inline-block;padding:1px 9px;border-radius:10px;font-size:.8rem;font-weight:600;white-space:nowrap}
.v-better{background:#d8f0de;color:#14532d}
.v-worse{background:#fadcd8;color:#7f1d1d}
.v-higher,.v-lower{background:#e1e7f5;color:#24386b}
.v-nd{background:#eceff1;color:#3f4850}
.v-na{background:#fff;color:#6b7280;border:1px solid #d0d7de}
.v-baseline{background:#f4f4f4;color:#555}
.s-seen{background:#d8f0de;color:#14532d}
.s-partly{background:#eef5d6;color:#3f5412}
.s-not{background:#eceff1;color:#3f4850}
.s-opposite{background:#fadcd8;color:#7f1d1d}
.metric table{table-layout:fixed}
.metric{margin-bottom:8px}
.metric h3 .dir{font-weight:400;color:#6b7280;font-size:.85rem}
figure{margin:14px 0 22px}
figure img{display:block;max-width:100%;height:auto;border:1px solid #e4e7eb;border-radius:4px}
figcaption{color:#57606a;font-size:.88rem;margin-top:5px}
pre{background:#f6f8fa;border:1px solid #e4e7eb;padding:10px 12px;border-radius:6px;font-size:.82rem;
 white-space:pre-wrap;word-break:break-word;margin:6px 0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.kv td:first-child{color:#57606a;width:190px;white-space:nowrap}
footer{margin-top:36px;color:#6b7280;font-size:.82rem}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _pill(verdict: str) -> str:
    cls = _VERDICT_CLASS.get(verdict, "v-na")
    return f'<span class="pill {cls}">{_e(verdict)}</span>'


def _img(data: bytes, alt: str) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/png;base64,{b64}" alt="{_e(alt)}">'


def _figure_html(name: str, data: bytes) -> str:
    title, caption = _FIGURE_TEXT.get(name, (name, ""))
    return f"<figure>{_img(data, title)}<figcaption><b>{_e(title)}.</b> {_e(caption)}</figcaption></figure>"


def _metric_table_html(m: MetricSummary, pct: str) -> str:
    cols = "".join(f'<col style="width:{w}%">' for w in (21, 7, 19, 24, 8, 21))
    head = (
        f"<colgroup>{cols}</colgroup><tr><th>setting</th><th class=num>seeds</th><th class=num>mean [{pct} CI]</th>"
        f"<th class=num>diff vs baseline [{pct} CI]</th><th class=num>p</th><th>verdict</th></tr>"
    )
    body = []
    for r in _metric_rows(m):
        cls = ' class="base"' if r["is_baseline"] else ""
        body.append(
            f"<tr{cls}><td>{_e(r['setting'])}</td><td class=num>{_e(r['seeds'])}</td>"
            f"<td class=num>{_e(r['mean'])}</td><td class=num>{_e(r['diff'])}</td>"
            f"<td class=num>{_e(r['p'])}</td><td>{_pill(r['verdict'])}</td></tr>"
        )
    return (
        f'<div class="metric"><h3>{_e(sentence_case(m.label))} <span class="dir">({_e(DIRECTION_TEXT[m.direction])}; '
        f"<code>{_e(m.name)}</code>)</span></h3><table>{head}{''.join(body)}</table></div>"
    )


def _compact_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _kv_table(pairs: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv">{rows}</table>'


def _title(results: Mapping[str, Any]) -> str:
    config = results.get("config") or {}
    kind = str(results.get("kind", "compare"))
    return f"NEFTune {kind}: {config.get('model', '?')} on {config.get('data', '?')}"


def render_html(
    results: Mapping[str, Any],
    summary: Summary,
    doc: Mapping[str, Any],
    figures: Mapping[str, bytes],
    extras: Sequence[tuple[str, bytes]] = (),
    instruction: InstructionSection | None = None,
    length_png: bytes | None = None,
) -> str:
    """The self-contained report page. ``doc`` is :func:`~.findings.summary_to_dict` of ``summary``;
    ``figures`` maps figure names to PNG bytes; ``extras`` are (caption, PNG bytes) to append;
    ``instruction`` / ``length_png``: the length-control section and its answer-length figure."""
    pct = confidence_text(summary.confidence)
    env = results.get("environment") or {}
    config = results.get("config") or {}
    out: list[str] = []
    add = out.append
    add(f"<h1>{_e(_title(results))}</h1>")
    add(
        f'<p class="sub">status <b>{_e(summary.status)}</b> · {summary.n_complete} of {summary.n_arms} arms '
        f"finished · device {_e(env.get('device', '?'))} · results updated {_e(results.get('updated', '?'))}</p>"
    )
    if doc.get("status_note"):
        add(f'<div class="box warn"><b>{_e(doc["status_note"])}</b></div>')
    uninformative = not_informative_reasons(results)
    if uninformative:  # instead of a verdict: no headline, no recommendation
        add(
            f'<div class="box warn"><b>Not informative:</b> {_e("; ".join(uninformative))}. '
            "No verdict and no recommendation: the figures below are no evidence either way.</div>"
        )
    else:
        add('<div class="box headline"><ul>')
        for sentence in doc.get("headline") or []:
            add(f"<li>{_e(sentence)}</li>")
        add("</ul></div>")
    rec = doc.get("recommendation")
    if rec and not uninformative:
        label = summary.labels.get(Setting.from_mapping(rec["recommended"])) if rec["recommended"] else None
        pick = f"Recommended: {label}" if label else "No setting recommended over training without noise"
        style = "rec" if label else "warn"  # nothing recommended is no good news
        add(f'<div class="box {style}"><p class="pick">{_e(pick)}</p><p>{_e(rec["reason"])}</p></div>')

    add("<h2>The paper's signatures</h2>")
    add(
        "<p>Jain et al. (2023) report that NEFTune makes answers longer, keeps the training loss (measured "
        "with the noise off) higher — less overfitting — and lowers ROUGE-L against the training responses. "
        "Checked here against the baseline:</p>"
    )
    add("<table><tr><th>signature</th><th>status</th><th>what the data show</th></tr>")
    status_class = {"seen": "s-seen", "partly seen": "s-partly", "opposite": "s-opposite"}
    for sig in doc.get("signatures") or []:
        cls = status_class.get(sig["status"], "s-not")
        add(
            f"<tr><td>{_e(sig['name'])}</td><td><span class='pill {cls}'>{_e(sig['status'])}</span></td>"
            f"<td>{_e(sig['sentence'])}</td></tr>"
        )
    add("</table>")

    if instruction is not None:
        figure = _figure_html("answer_lengths", length_png) if length_png else None
        add(section_html(instruction, summary, figure, pct))

    if "learning_curves" in figures or "heldout_curves" in figures:
        add("<h2>Learning curves</h2>")
        for name in ("learning_curves", "heldout_curves"):
            if name in figures:
                add(_figure_html(name, figures[name]))

    add("<h2>Results per metric</h2>")
    add(
        '<div class="box note"><ul>'
        + "".join(f"<li>{_e(t)}</li>" for t in _how_to_read(summary))
        + "</ul></div>"
    )
    if not summary.metrics:
        add("<p>No arm has finished yet: there are no metrics to show.</p>")
    for name in ("differences", "metric_means"):
        if name in figures:
            add(_figure_html(name, figures[name]))
    for name, data in figures.items():
        if name not in _FIGURE_TEXT:
            add(_figure_html(name, data))
    add("<h2>Tables per metric</h2>")
    for m in summary.metrics:
        add(_metric_table_html(m, pct))

    add("<h2>Arms</h2>")
    arm_rows = _arm_rows(results, summary.labels)
    bad = [r for r in arm_rows if r["status"] != "complete"]
    if bad:
        items = "".join(
            f"<li><code>{_e(r['id'])}</code> ({_e(r['setting'])}, seed {_e(r['seed'])}): <b>{_e(r['status'])}</b>"
            + (f" — {_e(r['error'])}" if r["error"] else "")
            + "</li>"
            for r in bad
        )
        add(f'<div class="box warn"><b>Not finished:</b><ul>{items}</ul></div>')
    else:
        add("<p>All arms finished.</p>")
    add(
        "<table><tr><th>arm</th><th>setting</th><th class=num>seed</th><th>status</th>"
        "<th class=num>wall time</th><th class=num>training</th><th class=num>steps</th><th>error</th></tr>"
    )
    for r in arm_rows:
        cls = {"failed": ' class="failed"', "complete": ""}.get(r["status"], ' class="pending"')
        add(
            f"<tr{cls}><td><code>{_e(r['id'])}</code></td><td>{_e(r['setting'])}</td>"
            f"<td class=num>{_e(r['seed'])}</td><td>{_e(r['status'])}</td><td class=num>{_e(r['seconds'])}</td>"
            f"<td class=num>{_e(r['train_seconds'])}</td><td class=num>{_e(r['steps'])}</td>"
            f"<td>{_e(r['error'])}</td></tr>"
        )
    add("</table>")

    add("<h2>What was run</h2>")
    add(f"<pre><code>{_e(results.get('command') or '(command not recorded)')}</code></pre>")
    times = _wall_times(results)
    add(
        _kv_table(
            [
                ("kind", results.get("kind", "?")),
                ("model", config.get("model", "?")),
                ("data", config.get("data", "?")),
                ("primary metric", config.get("primary_metric", "–")),
                (
                    "baseline",
                    _setting_text(results["baseline"], summary.labels) if results.get("baseline") else "none",
                ),
                ("wall time, total", times["total"]),
                ("wall time per arm", times["per_arm"]),
                ("started / last update", f"{results.get('created', '?')} / {results.get('updated', '?')}"),
            ]
            + [(f"environment: {k}", v) for k, v in env.items()]
        )
    )
    add("<h3>Full configuration</h3>")
    add(_kv_table([(k, _compact_json(v)) for k, v in config.items()]))

    if extras:
        add("<h2>Embedding analysis</h2>")
        for caption, data in extras:
            add(f"<figure>{_img(data, caption)}<figcaption>{_e(caption)}</figcaption></figure>")

    add("<h2>How to reproduce</h2>")
    add("<p>With the same package versions (device and torch build can still change results slightly):</p>")
    add(f"<pre><code>{_e(chr(10).join(_reproduce_lines(results)))}</code></pre>")
    add(
        "<footer>Generated by neftune from results.json (schema "
        f"{_e(results.get('schema'))}). Statistics in summary.json; figures as PNG beside this file.</footer>"
    )
    body = "\n".join(out)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(_title(results))}</title><style>{_CSS}</style></head>\n"
        f"<body><main>\n{body}\n</main></body></html>\n"
    )


# --------------------------------------------------------------------------- Markdown


def _md(text: Any) -> str:
    """Escape a table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(
    results: Mapping[str, Any],
    summary: Summary,
    doc: Mapping[str, Any],
    figure_files: Sequence[str],
    extra_files: Sequence[tuple[str, str]] = (),
    instruction: InstructionSection | None = None,
    length_file: str | None = None,
) -> str:
    """``summary.md``: headline, recommendation, signatures, one table per metric, arms, commands.

    ``figure_files`` are PNG file names beside the Markdown file; ``extra_files`` are
    (caption, relative path) pairs of optional analyze/viz figures.
    """
    pct = confidence_text(summary.confidence)
    lines = [f"# {_title(results)}", ""]
    lines.append(
        f"Status **{summary.status}**: {summary.n_complete} of {summary.n_arms} arms finished "
        f"({summary.n_failed} failed, {summary.n_pending} pending). Full report: [report.html](report.html)."
    )
    if doc.get("status_note"):
        lines += ["", f"> **{doc['status_note']}**"]
    uninformative = not_informative_reasons(results)
    if uninformative:  # instead of a verdict: no headline, no recommendation
        lines += [
            "",
            f"> **Not informative:** {'; '.join(uninformative)}. No verdict and no recommendation: "
            "the figures below are no evidence either way.",
        ]
    else:
        lines += ["", "## Headline", ""]
        lines += [f"- {s}" for s in doc.get("headline") or []]
    rec = doc.get("recommendation")
    if rec and not uninformative:
        lines += ["", "## Recommendation", "", rec["reason"]]
    lines += ["", "## The paper's signatures", ""]
    lines += [f"- **{s['status']}** — {s['sentence']}" for s in doc.get("signatures") or []]
    if instruction is not None:
        lines += section_markdown(instruction, summary, length_file, pct)
    if figure_files:
        lines += ["", "## Plots", ""]
        for f in figure_files:
            title = _FIGURE_TEXT.get(Path(f).stem, (Path(f).stem, ""))[0]
            lines.append(f"![{title}]({f})")
            lines.append("")
    lines += ["", "## Results per metric", ""]
    lines += [f"- {t}" for t in _how_to_read(summary)]
    for m in summary.metrics:
        lines += [
            "",
            f"### {sentence_case(m.label)} ({DIRECTION_TEXT[m.direction]}; `{m.name}`)",
            "",
        ]
        lines.append(f"| setting | seeds | mean [{pct} CI] | diff vs baseline [{pct} CI] | p | verdict |")
        lines.append("|---|---:|---:|---:|---:|---|")
        for r in _metric_rows(m):
            lines.append(
                f"| {_md(r['setting'])} | {r['seeds']} | {_md(r['mean'])} | {_md(r['diff'])} | {r['p']} | "
                f"{_md(r['verdict'])} |"
            )
    lines += ["", "## Arms", ""]
    arm_rows = _arm_rows(results, summary.labels)
    bad = [r for r in arm_rows if r["status"] != "complete"]
    if bad:
        lines.append("Not finished:")
        lines += [
            f"- `{r['id']}` ({r['setting']}, seed {r['seed']}): **{r['status']}**"
            + (f" — {r['error']}" if r["error"] else "")
            for r in bad
        ]
    else:
        lines.append("All arms finished.")
    lines += ["", "| arm | setting | seed | status | wall time | steps |", "|---|---|---:|---|---:|---:|"]
    lines += [
        f"| `{r['id']}` | {_md(r['setting'])} | {r['seed']} | {r['status']} | {r['seconds']} | {r['steps']} |"
        for r in arm_rows
    ]
    times = _wall_times(results)
    env = results.get("environment") or {}
    lines += [
        "",
        "## What was run",
        "",
        "```",
        str(results.get("command") or "(command not recorded)"),
        "```",
        "",
    ]
    lines.append(f"Wall time: {times['total']} (per arm {times['per_arm']}).")
    lines.append("")
    lines.append("Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()) + ".")
    if extra_files:
        lines += ["", "## Embedding analysis"]
        for caption, path in extra_files:
            lines += ["", f"![{caption}]({path})"]
    lines += ["", "## How to reproduce", "", "```bash", *_reproduce_lines(results), "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry point


def build_report(folder: str | Path) -> dict[str, Path]:
    """Build ``folder/report/`` from ``folder/results.json``; returns what was written.

    Keys: ``html`` (report.html), ``markdown`` (summary.md), ``summary`` (summary.json) and
    one per figure (``learning_curves``, ``heldout_curves``, ``metric_means``, ``differences``,
    when there is something to draw). Raises :class:`ReportError` on a bad results.json.
    """
    folder = Path(folder)
    results = load_results(folder)
    try:
        summary = summarize(results)
    except ValueError as exc:
        raise ReportError(f"{folder / 'results.json'}: {exc}") from exc
    doc = summary_to_dict(summary)
    out = folder / REPORT_DIR
    pngs = {name: figure_png(fig) for name, fig in make_figures(results, summary).items()}
    written: dict[str, Path] = {
        name: write_bytes_atomic(out / f"{name}.png", data) for name, data in pngs.items()
    }
    instruction = instruction_section(folder, results, summary)
    length_fig = answer_lengths_figure(instruction.lengths, summary.labels)
    length_png = figure_png(length_fig) if length_fig is not None else None
    if length_png is not None:
        written["answer_lengths"] = write_bytes_atomic(out / "answer_lengths.png", length_png)
    if not instruction.empty:
        doc["instruction_following"] = section_dict(instruction, summary)
        doc["headline"] = [*(doc.get("headline") or []), *verdict_sentences(instruction, summary.labels)]
    extras = _extra_images(folder)
    extra_bytes = [(caption, path.read_bytes()) for caption, path in extras]
    extra_links = [(caption, f"../{path.relative_to(folder).as_posix()}") for caption, path in extras]
    written["summary"] = write_json_atomic(out / "summary.json", doc)
    written["markdown"] = write_text_atomic(
        out / "summary.md",
        render_markdown(
            results,
            summary,
            doc,
            [f"{name}.png" for name in pngs],
            extra_links,
            instruction,
            "answer_lengths.png" if length_png else None,
        ),
    )
    written["html"] = write_text_atomic(
        out / "report.html",
        render_html(results, summary, doc, pngs, extra_bytes, instruction, length_png),
    )
    return written
