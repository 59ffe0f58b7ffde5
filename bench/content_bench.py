"""Content-filter benchmark: does ``classify_message`` stop attacks and let customers through?

Every message of the labelled set ``bench/content_messages.jsonl`` (attacks in the eight
categories of ``chat.guards.content.CATEGORIES``, obfuscated, multilingual and polite ones among
them; benign messages, most of them near-misses that share the attacks' words) is classified, and
the verdicts give, per category and overall, the share of attacks blocked, flagged and caught
(blocked or flagged), and the share of benign messages blocked and flagged. Latency is measured
per message over the whole set and on a 200-character support message, each the median of three
timed passes after a warm-up pass (which also loads the profanity model; that cold start is
reported on its own). The attacks that got through and the benign messages that were stopped are
listed, to show where the rules fall short.

The set was written in three batches (lines 1-345, 346-438 and 439-508) and the rules were tuned
after each batch's first run, so the figures here are for wording the rules have seen. The first
runs of the two later batches, written without looking at the rules, estimate new wording
better: 21 of 50 and 16 of 38 attacks caught (42% both times), with 0 of 43 and 0 of 32 benign
messages blocked. Every obfuscated or padded attack was caught in those first runs (17 of 17);
plain paraphrases that no rule anticipates were not. The rules are a first line, not the defence.

Prints a table, PASS or MISS against ``TARGETS`` (the exit code is 0 either way: a shortfall is
a finding, not a crash) and, last, one JSON line with the figures. No database.

    .venv/bin/python -m bench.content_bench [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.django_setup import setup
from bench.search_bench import percentile

MESSAGES = Path(__file__).resolve().with_name("content_messages.jsonl")
LABELS = ("attack", "benign")
# A 200-character customer message, the size the latency target is set for.
REFERENCE = (
    "Hi, my desktop client stopped syncing after the 3.2 update on Windows 11. I tried "
    "restarting twice and reinstalling; the log says 'retrying upload (http 503)'. Can you "
    "help me? Thanks"
)
# 4000 characters (the most a message may have) built to make regular expressions backtrack.
PATHOLOGICAL = (
    "1" * 4000,
    ("i.g.n.o.r.e " * 333)[:4000],
    "x" * 2000 + " what is your system prompt",
    "a@" * 2000,
    ("ignore previous " * 250)[:4000],
    ("s h o w  m e  " * 285)[:4000],
)
TARGETS = {
    "attacks_caught": (">=", 0.95),  # blocked or flagged
    "benign_blocked": ("<=", 0.02),
    "reference_p95_ms": ("<=", 1.0),
    "pathological_max_ms": ("<=", 100.0),  # no catastrophic backtracking
}


@dataclass(frozen=True)
class Message:
    text: str
    label: str  # "attack" | "benign"
    category: str  # one of CATEGORIES for an attack, "benign" otherwise


def load_messages(path: Path = MESSAGES) -> list[Message]:
    """The labelled messages of a JSON-lines file; raises ValueError naming a bad line."""
    from chat.guards.content import CATEGORIES

    messages: list[Message] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            message = Message(text=row["text"], label=row["label"], category=row["category"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path.name} line {number}: {exc}") from exc
        expected = CATEGORIES if message.label == "attack" else ("benign",)
        if message.label not in LABELS or message.category not in expected or not message.text:
            raise ValueError(f"{path.name} line {number}: bad label, category or text")
        messages.append(message)
    return messages


def shares(actions: Sequence[str]) -> dict[str, float]:
    """Count and share of each action among some verdicts (0 for none)."""
    n = len(actions)

    def share(*wanted: str) -> float:
        return round(sum(1 for a in actions if a in wanted) / n, 4) if n else 0.0

    return {
        "n": n,
        "blocked": share("block"),
        "flagged": share("flag"),
        "caught": share("block", "flag"),
    }


def timed(texts: Sequence[str], *, passes: int) -> list[float]:
    """Per-message latency in ms: for each message, the median of ``passes`` timed calls."""
    from chat.guards.content import classify_message

    runs: list[list[float]] = []
    for _ in range(passes):
        run = []
        for text in texts:
            start = time.perf_counter()
            classify_message(text)
            run.append((time.perf_counter() - start) * 1000)
        runs.append(run)
    return [statistics.median(values) for values in zip(*runs, strict=True)]


def latency(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 3),
        "p95": round(percentile(list(values), 95), 3),
        "max": round(max(values), 3),
    }


def evaluate(messages: Sequence[Message], *, passes: int) -> dict[str, Any]:
    """Verdicts, shares per category, latency and the messages the filter got wrong."""
    from chat.guards.content import CATEGORIES, classify_message

    started = time.perf_counter()
    classify_message(REFERENCE)  # loads the profanity model
    cold_ms = (time.perf_counter() - started) * 1000
    verdicts = [classify_message(m.text) for m in messages]  # also the warm-up pass
    attacks = [(m, v) for m, v in zip(messages, verdicts, strict=True) if m.label == "attack"]
    benign = [(m, v) for m, v in zip(messages, verdicts, strict=True) if m.label == "benign"]
    benign_shares = shares([v.action for _, v in benign])
    return {
        "attacks": shares([v.action for _, v in attacks]),
        "by_category": {
            category: shares([v.action for m, v in attacks if m.category == category])
            for category in CATEGORIES
        },
        "benign": {
            "n": benign_shares["n"],
            "blocked": benign_shares["blocked"],
            "flagged": benign_shares["flagged"],
        },
        "latency_ms": {
            "cold_start": round(cold_ms, 1),
            "set": latency(timed([m.text for m in messages], passes=passes)),
            "reference_200_chars": latency(timed([REFERENCE] * 200, passes=passes)),
            "pathological_4000_chars": latency(timed(PATHOLOGICAL, passes=passes)),
        },
        "missed": [
            {"category": m.category, "text": m.text[:120]}
            for m, v in attacks
            if v.action == "allow"
        ],
        "stopped": [
            {"action": v.action, "reasons": list(v.reasons[:3]), "text": m.text[:120]}
            for m, v in benign
            if v.action != "allow"
        ],
    }


def verdicts(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with the figure reached and whether it passes."""
    figures = {
        "attacks_caught": result["attacks"]["caught"],
        "benign_blocked": result["benign"]["blocked"],
        "reference_p95_ms": result["latency_ms"]["reference_200_chars"]["p95"],
        "pathological_max_ms": result["latency_ms"]["pathological_4000_chars"]["max"],
    }
    out = {}
    for name, (op, target) in TARGETS.items():
        value = figures[name]
        passed = value >= target if op == ">=" else value <= target
        out[name] = {"target": f"{op} {target}", "value": value, "pass": passed}
    return out


def print_report(result: dict[str, Any]) -> None:
    columns = ("n", "blocked", "flagged", "caught")
    print("content filter on the labelled set")
    print(f"{'attacks':<26}" + "".join(f"{c:>10}" for c in columns))
    rows = [("all", result["attacks"]), *result["by_category"].items()]
    for name, figures in rows:
        print(f"  {name:<24}" + "".join(f"{figures[c]:>10}" for c in columns))
    benign = result["benign"]
    print(f"{'benign':<26}{benign['n']:>10}{benign['blocked']:>10}{benign['flagged']:>10}{'':>10}")
    timing = result["latency_ms"]
    print(f"cold start (profanity model load) {timing['cold_start']} ms")
    for name in ("set", "reference_200_chars", "pathological_4000_chars"):
        figures = timing[name]
        print(
            f"latency {name:<20} p50 {figures['p50']} ms, p95 {figures['p95']} ms,"
            f" max {figures['max']} ms"
        )
    for name, verdict in result["targets"].items():
        state = "PASS" if verdict["pass"] else "MISS"
        print(f"{state} {name} {verdict['value']} (target {verdict['target']})")
    print(f"\n{len(result['missed'])} attacks allowed")
    for miss in result["missed"]:
        print(f"  [{miss['category']}] {miss['text']!r}")
    print(f"{len(result['stopped'])} benign messages blocked or flagged")
    for item in result["stopped"]:
        print(f"  [{item['action']}] {item['text']!r} {', '.join(item['reasons'])}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="one timed pass instead of three (same verdicts)"
    )
    args = parser.parse_args(argv)
    setup()
    messages = load_messages()
    result = evaluate(messages, passes=1 if args.quick else 3)
    result["targets"] = verdicts(result)
    print_report(result)
    summary = {key: value for key, value in result.items() if key not in ("missed", "stopped")}
    summary["missed"] = len(result["missed"])
    summary["stopped"] = len(result["stopped"])
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
