"""Reports for people and files: the summary table of one report, two reports side by side, JSON on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

from rag.eval.scoring import METRIC_DESCRIPTIONS, METRICS

MISSING_SHOWN = 5  # gold articles missing from the index named in a report's header
IDS_SHOWN = 20  # question ids named when listing those only one report holds
DELTA_SHOWN = 0.0005  # a smaller difference between two reports shows as "="

# What ``compare`` shows per question type (A / B pairs) and per question (outcomes that changed).
_TYPE_METRICS = [("hit@1", "hit@1"), ("mrr", "MRR"), ("evidence_hit", "evid"), ("f1", "F1"), ("contains", "cont"),
                 ("citation_precision", "citeP"), ("abstain_accuracy", "abst")]
_OUTCOMES = [("hit@1", "hit@1"), ("evidence_hit", "evid"), ("contains", "cont"), ("em", "EM"),
             ("first_citation_gold", "cite1")]


def _fmt(value, width: int = 6, digits: int = 3) -> str:
    if value is None:
        return "-".rjust(width)
    if isinstance(value, float):
        return f"{value:.{digits}f}".rjust(width)
    return str(value).rjust(width)


def _header_line(report: dict) -> str:
    meta, overall = report.get("meta", {}), report["summary"]["overall"]
    parts = [
        f"{meta.get('name', 'report')}: {overall['n']} questions ({overall['answerable']} answerable, "
        f"{overall['unanswerable']} unanswerable)",
        f"top_k {meta.get('top_k')}",
        f"index {meta.get('index')}",
    ]
    line = " | ".join(parts)
    if overall.get("errors"):
        line += f"\n{overall['errors']} question(s) failed with an error (scored as wrong answers)"
    missing = meta.get("gold_articles_missing") or []
    if missing:
        shown = ", ".join(missing[:MISSING_SHOWN]) + (" ..." if len(missing) > MISSING_SHOWN else "")
        line += f"\nwarning: {len(missing)} gold article(s) not in the index: {shown}"
    return line


def format_table(report: dict) -> str:
    """The summary table of one report: metrics overall and per question type, then speed per stage."""
    summary = report["summary"]
    name_w = max([12] + [len(t) + 1 for t in summary["by_type"]])
    head = "type".ljust(name_w) + "   n" + "".join(_fmt(label, 7) for _, label in METRICS)
    lines = [_header_line(report), "", head, "-" * len(head)]

    def row(name, agg):
        return name.ljust(name_w) + f"{agg['n']:4d}" + "".join(_fmt(agg[k], 7) for k, _ in METRICS)

    lines.append(row("overall", summary["overall"]))
    for t, agg in summary["by_type"].items():
        lines.append(row(t, agg))
    lines.append("")
    lines.append("columns: " + "; ".join(f"{label} = {METRIC_DESCRIPTIONS[k]}" for k, label in METRICS))
    if summary.get("speed"):
        lines += ["", "seconds".ljust(12) + "    p50    p95   mean"]
        for stage, s in summary["speed"].items():
            lines.append(stage.ljust(12) + "".join(_fmt(s[k], 7) for k in ("p50", "p95", "mean")))
    return "\n".join(lines)


# --- two reports side by side ---------------------------------------------------------------------------------


def _delta(a, b) -> str:
    if a is None or b is None:
        return "".rjust(8)
    d = b - a
    return (f"{d:+.3f}" if abs(d) >= DELTA_SHOWN else "=").rjust(8)


def _overall_lines(a: dict, b: dict, na: str, nb: str) -> list[str]:
    """Every metric overall: A, B and B minus A."""
    head = "metric".ljust(22) + "A".rjust(8) + "B".rjust(8) + "B-A".rjust(8)
    lines = [head + f"    (A = {na}, B = {nb})", "-" * len(head)]
    oa, ob = a["summary"]["overall"], b["summary"]["overall"]
    for key, _ in METRICS:
        lines.append(key.ljust(22) + _fmt(oa.get(key), 8) + _fmt(ob.get(key), 8) + _delta(oa.get(key), ob.get(key)))
    return lines


def _type_lines(a: dict, b: dict) -> list[str]:
    """The headline metrics per question type, A / B pairs."""
    types = list(dict.fromkeys([*a["summary"]["by_type"], *b["summary"]["by_type"]]))
    type_w = max([14] + [len(t) + 1 for t in types])
    cell_w = 14
    lines = ["", "per type".ljust(type_w) + "   n"
             + "".join(f"{label + ' A / B':>{cell_w}}" for _, label in _TYPE_METRICS)]
    for t in types:
        ta, tb = a["summary"]["by_type"].get(t) or {}, b["summary"]["by_type"].get(t) or {}
        n = (ta or tb).get("n", 0)
        cells = "".join(f"{_fmt(ta.get(k), 5)} / {_fmt(tb.get(k), 5).strip():<5}".rjust(cell_w)
                        for k, _ in _TYPE_METRICS)
        lines.append(t.ljust(type_w) + f"{n:4d}" + cells)
    return lines


def _speed_lines(a: dict, b: dict) -> list[str]:
    """p50 and p95 per timing stage of both reports."""
    sa, sb = a["summary"].get("speed", {}), b["summary"].get("speed", {})
    stages = list(dict.fromkeys([*sa, *sb]))
    if not stages:
        return []
    lines = ["", "seconds".ljust(12) + "p50 A".rjust(8) + "p50 B".rjust(8) + "p95 A".rjust(8) + "p95 B".rjust(8)]
    for stage in stages:
        x, y = sa.get(stage, {}), sb.get(stage, {})
        lines.append(stage.ljust(12) + "".join(_fmt(v, 8) for v in (x.get("p50"), y.get("p50"), x.get("p95"),
                                                                    y.get("p95"))))
    return lines


def _outcome_changes(ra: dict, rb: dict) -> list[str]:
    """How one question's outcome differs between two rows ("hit@1 0->1", "abstained True->False")."""
    diffs = []
    for metric, label in _OUTCOMES:
        va, vb = ra["metrics"].get(metric), rb["metrics"].get(metric)
        if va is not None and vb is not None and va != vb:
            diffs.append(f"{label} {va:g}->{vb:g}")
    if ra.get("abstained") != rb.get("abstained"):
        diffs.append(f"abstained {ra.get('abstained')}->{rb.get('abstained')}")
    return diffs


def _ids(label: str, ids: list) -> str:
    return f"only in {label} ({len(ids)}): " + ", ".join(map(str, ids[:IDS_SHOWN])) + (
        " ..." if len(ids) > IDS_SHOWN else "")


def _question_lines(a: dict, b: dict) -> list[str]:
    """The questions whose outcome changed, then those only one report holds."""
    def key_of(r):
        return r.get("id") or r.get("question")

    qa = {key_of(r): r for r in a.get("questions", [])}
    qb = {key_of(r): r for r in b.get("questions", [])}
    changed = []
    for k in qa.keys() & qb.keys():
        diffs = _outcome_changes(qa[k], qb[k])
        if diffs:
            changed.append((k, qa[k]["type"], diffs))
    lines = ["", f"questions whose outcome differs: {len(changed)}"]
    for k, t, diffs in sorted(changed, key=lambda x: str(x[0])):
        lines.append(f"  {k} [{t}]: " + ", ".join(diffs))
    only_a, only_b = sorted(qa.keys() - qb.keys(), key=str), sorted(qb.keys() - qa.keys(), key=str)
    if only_a:
        lines.append(_ids("A", only_a))
    if only_b:
        lines.append(_ids("B", only_b))
    return lines


def compare(a: dict, b: dict, names: Optional[tuple[str, str]] = None) -> str:
    """Two reports side by side (B minus A in the delta column), then the questions whose outcome changed."""
    na = (names or (None, None))[0] or a.get("meta", {}).get("name", "A")
    nb = (names or (None, None))[1] or b.get("meta", {}).get("name", "B")
    lines = [f"A = {_header_line(a)}", f"B = {_header_line(b)}", ""]
    lines += _overall_lines(a, b, na, nb)
    lines += _type_lines(a, b)
    lines += _speed_lines(a, b)
    lines += _question_lines(a, b)
    return "\n".join(lines)


# --- files ------------------------------------------------------------------------------------------------------


def write_report(report: dict, path: Union[str, Path]) -> Path:
    """Write a report as indented UTF-8 JSON (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def read_report(path: Union[str, Path]) -> dict:
    """A report written by :func:`write_report` (ValueError when it is not one)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "summary" not in data or "overall" not in data.get("summary", {}):
        raise ValueError(f"{path} is not an evaluation report")
    return data
