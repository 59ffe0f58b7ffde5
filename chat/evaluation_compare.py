"""The text report of an evaluation run (``manage.py evaluate``) and its comparison with an
earlier run's JSON file: scores per part and kind, failures, and what changed case by case."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chat.evaluation import METRICS, TARGETS

LABELS = {
    "fact": "facts",
    "citation_precision": "cite prec",
    "citation_recall": "cite rec",
    "offer": "offer",
    "tools": "tools",
}


def _cell(value: float | None) -> str:
    return "   -" if value is None else f"{value:.2f}"


def score_lines(document: dict[str, Any], *, failures_of: set[str]) -> Iterator[str]:
    """The scores table of every part, then the failures of the parts in ``failures_of``
    (the held-out part's failures stay unread by whoever tunes the answers)."""
    yield "chain: " + " → ".join(document["chain"])
    header = f"{'':<16}{'turns':>6}" + "".join(f"{LABELS[m]:>11}" for m in METRICS)
    for part, table in document["scores"].items():
        yield ""
        yield f"== {part}"
        yield header
        for group, row in sorted(table.items(), key=lambda item: (item[0] == "all", item[0])):
            cells = "".join(f"{_cell(row[m]):>11}" for m in METRICS)
            yield f"{group:<16}{row['turns']:>6}{cells}"
    yield ""
    yield "targets: " + ", ".join(f"{LABELS[m]} ≥ {t}" for m, t in TARGETS.items())
    for case in document["cases"]:
        if case["part"] not in failures_of:
            continue
        for turn in case["turns"]:
            if turn.get("failures"):
                yield f"FAIL {case['id']} turn {turn['turn']}: " + "; ".join(turn["failures"])
                yield f"     answer: {' '.join(turn['answer'].split())[:240]}"


def compare_lines(
    before: dict[str, Any], after: dict[str, Any], *, cases_of: set[str]
) -> Iterator[str]:
    """Each part's overall scores before → after, and the cases of the parts in ``cases_of``
    that went from passing every check to failing one, or back."""
    yield ""
    yield "== compared with the earlier run"
    for part, table in after["scores"].items():
        old = before.get("scores", {}).get(part, {}).get("all", {})
        new = table.get("all", {})
        cells = [
            f"{LABELS[m]} {_cell(old.get(m))} → {_cell(new.get(m))}"
            for m in METRICS
            if old.get(m) is not None or new.get(m) is not None
        ]
        yield f"{part}: " + ", ".join(cells)
    passing_before = _passing(before)
    parts = {case["id"]: case["part"] for case in after["cases"]}
    for case_id, passing in sorted(_passing(after).items()):
        if parts[case_id] not in cases_of:
            continue
        if case_id not in passing_before or passing_before[case_id] == passing:
            continue
        yield f"{'fixed' if passing else 'broken'}: {case_id}"


def _passing(document: dict[str, Any]) -> dict[str, bool]:
    return {
        case["id"]: not any(turn.get("failures") for turn in case["turns"])
        for case in document.get("cases", [])
    }
