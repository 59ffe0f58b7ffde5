"""PII detection benchmark: precision and recall per kind on a labelled set, and redaction speed.

Every sentence of ``bench/pii_sentences.jsonl`` (support-chat messages about Nimbus, each
labelled with the exact PII values it holds; about a third are hard negatives: ticket ids,
order numbers, versions, dates, prices, Luhn-invalid card-like numbers, IBANs with a bad
checksum, our own ``sess_``/``msg_`` ids) goes through ``find_pii``.

Scoring. A predicted match is a true positive when its kind equals a labelled value's kind and
the two spans overlap substantially: intersection over union >= ``MIN_IOU`` (0.8), which an
exact span meets with 1.0 and which forgives a trailing character or a "Bearer " prefix but not
half a number. Each label is matched at most once (best overlap first); an unmatched prediction
is a false positive of its kind, an unmatched label a false negative of its kind, so a value
found as the wrong kind counts against both. Precision and recall are per kind and overall
(micro-averaged).

Speed. ``redact_pii`` on every sentence, on ~200-character messages made of consecutive
sentences (the message size of the latency budget, here dense with numbers and PII: the target
applies to these), and on ~200-character messages made of the everyday customer questions of
``bench/kb_questions.jsonl`` (the common case); p50/p95 per message, the median of ``--runs``
runs of the whole set after one warm-up pass. Also ``StreamRedactor`` fed each long
message word by word: the cost per delta, and whether its output equals ``redact_pii``'s.

Prints a table, PASS or MISS against ``TARGETS`` (the exit code is 0 either way: a shortfall is
a finding, not a crash), the misses, and, last, one JSON line with the figures.

    .venv/bin/python -m bench.pii_bench [--runs 3]
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

setup()
from chat.guards.pii import KINDS, PiiMatch, StreamRedactor, find_pii, redact_pii  # noqa: E402

SENTENCES = Path(__file__).resolve().with_name("pii_sentences.jsonl")
QUESTIONS = Path(__file__).resolve().with_name("kb_questions.jsonl")  # plain customer questions
MIN_IOU = 0.8
LONG_MESSAGE = 200  # characters: consecutive sentences are joined up to about this length
TARGETS = {"precision": 0.97, "recall": 0.97, "p95_ms_200_chars": 0.5}


@dataclass(frozen=True)
class Label:
    kind: str
    start: int
    end: int
    value: str


@dataclass(frozen=True)
class Sentence:
    text: str
    labels: tuple[Label, ...]


def load_sentences(path: Path = SENTENCES) -> list[Sentence]:
    """The labelled sentences; raises ValueError naming a bad line (unknown kind, value not in
    the text)."""
    sentences: list[Sentence] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text = row["text"]
            labels: list[Label] = []
            for item in row["pii"]:
                kind, value = item["kind"], item["value"]
                # The n-th label of a repeated value is its n-th occurrence.
                seen = sum(1 for label in labels if label.value == value)
                start = -1
                for _ in range(seen + 1):
                    start = text.find(value, start + 1)
                if kind not in KINDS or start < 0:
                    raise ValueError(f"bad kind {kind!r} or value not in text")
                labels.append(Label(kind, start, start + len(value), value))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path.name} line {number}: {exc}") from exc
        sentences.append(Sentence(text, tuple(labels)))
    return sentences


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Intersection over union of two half-open spans."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union else 0.0


@dataclass
class Outcome:
    sentence: Sentence
    true_positives: list[tuple[PiiMatch, Label]]
    false_positives: list[PiiMatch]
    false_negatives: list[Label]


def score_sentence(sentence: Sentence, predicted: Sequence[PiiMatch]) -> Outcome:
    """Pair predictions with labels of the same kind, best overlap first, one to one."""
    pairs = sorted(
        (
            (iou((p.start, p.end), (label.start, label.end)), pi, li)
            for pi, p in enumerate(predicted)
            for li, label in enumerate(sentence.labels)
            if p.kind == label.kind
        ),
        reverse=True,
    )
    used_p: set[int] = set()
    used_l: set[int] = set()
    tps: list[tuple[PiiMatch, Label]] = []
    for overlap, pi, li in pairs:
        if overlap < MIN_IOU or pi in used_p or li in used_l:
            continue
        used_p.add(pi)
        used_l.add(li)
        tps.append((predicted[pi], sentence.labels[li]))
    return Outcome(
        sentence=sentence,
        true_positives=tps,
        false_positives=[p for i, p in enumerate(predicted) if i not in used_p],
        false_negatives=[label for i, label in enumerate(sentence.labels) if i not in used_l],
    )


def ratio(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 4) if denominator else 1.0


def accuracy(outcomes: Sequence[Outcome]) -> dict[str, dict[str, float]]:
    """Per kind and overall: labels, predictions, tp, fp, fn, precision, recall."""
    table: dict[str, dict[str, float]] = {}
    for kind in (*KINDS, "all"):

        def mine(kind_of: str, kind: str = kind) -> bool:
            return kind == "all" or kind_of == kind

        tp = sum(1 for o in outcomes for p, _label in o.true_positives if mine(p.kind))
        fp = sum(1 for o in outcomes for p in o.false_positives if mine(p.kind))
        fn = sum(1 for o in outcomes for label in o.false_negatives if mine(label.kind))
        table[kind] = {
            "labels": tp + fn,
            "found": tp + fp,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn),
        }
    return table


def evaluate(sentences: Sequence[Sentence]) -> list[Outcome]:
    """Every sentence scored against ``find_pii``."""
    return [score_sentence(s, find_pii(s.text)) for s in sentences]


def long_messages(sentences: Sequence[Sentence], size: int = LONG_MESSAGE) -> list[str]:
    """Consecutive sentences joined into messages of about ``size`` characters."""
    return joined([s.text for s in sentences], size)


def joined(texts: Sequence[str], size: int = LONG_MESSAGE) -> list[str]:
    """Consecutive texts joined into messages of about ``size`` characters."""
    messages: list[str] = []
    current = ""
    for text in texts:
        current = f"{current} {text}" if current else text
        if len(current) >= size:
            messages.append(current)
            current = ""
    return messages


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def time_redaction(texts: Sequence[str], *, runs: int) -> dict[str, float]:
    """p50/p95/max of ``redact_pii`` per text in ms: the median over ``runs`` passes."""
    for text in texts:  # warm-up: phonenumbers loads a region's metadata on first use
        redact_pii(text)
    p50s, p95s, maxes = [], [], []
    for _ in range(runs):
        timings: list[float] = []
        for text in texts:
            start = time.perf_counter()
            redact_pii(text)
            timings.append((time.perf_counter() - start) * 1000)
        p50s.append(statistics.median(timings))
        p95s.append(percentile(timings, 95))
        maxes.append(max(timings))
    return {
        "messages": len(texts),
        "mean_chars": round(statistics.mean(len(t) for t in texts), 1),
        "p50_ms": round(statistics.median(p50s), 4),
        "p95_ms": round(statistics.median(p95s), 4),
        "max_ms": round(statistics.median(maxes), 4),
    }


def stream_check(texts: Sequence[str]) -> dict[str, Any]:
    """``StreamRedactor`` fed word by word: µs per delta, and texts whose output differs from
    ``redact_pii`` (should be none)."""
    deltas = 0
    mismatches = 0
    started = time.perf_counter()
    for text in texts:
        words = text.split(" ")
        redactor = StreamRedactor()
        out = [redactor.feed(w if i == 0 else " " + w) for i, w in enumerate(words)]
        out.append(redactor.finish())
        deltas += len(words)
        if "".join(out) != redact_pii(text).text:
            mismatches += 1
    elapsed = time.perf_counter() - started
    return {
        "texts": len(texts),
        "deltas": deltas,
        "us_per_delta": round(elapsed / max(deltas, 1) * 1e6, 1),
        "mismatches": mismatches,
    }


def print_report(
    table: dict[str, dict[str, float]],
    timings: dict[str, dict[str, float]],
    stream: dict[str, Any],
    outcomes: Sequence[Outcome],
    verdicts: dict[str, dict[str, Any]],
) -> None:
    columns = ("labels", "found", "tp", "fp", "fn", "precision", "recall")
    print(f"PII detection on {len(outcomes)} sentences (match: same kind, span IoU >= {MIN_IOU})")
    print(f"{'kind':<8}" + "".join(f"{c:>11}" for c in columns))
    for kind, figures in table.items():
        print(f"{kind:<8}" + "".join(f"{figures[c]:>11}" for c in columns))
    for name, t in timings.items():
        print(
            f"redact_pii {name:<10} {t['messages']} messages of {t['mean_chars']} chars:"
            f" p50 {t['p50_ms']} ms, p95 {t['p95_ms']} ms, max {t['max_ms']} ms"
        )
    print(
        f"StreamRedactor word by word: {stream['us_per_delta']} µs per delta over"
        f" {stream['deltas']} deltas, {stream['mismatches']} outputs differing from redact_pii"
    )
    for metric, verdict in verdicts.items():
        state = "PASS" if verdict["pass"] else "MISS"
        print(f"{state} {metric} {verdict['value']} (target {verdict['target']})")
    misses = [o for o in outcomes if o.false_positives or o.false_negatives]
    print(f"\n{len(misses)} sentences with a false positive or a false negative")
    for o in misses:
        print(f"  {o.sentence.text!r}")
        for p in o.false_positives:
            print(f"      FP {p.kind}: {p.value!r}")
        for label in o.false_negatives:
            print(f"      FN {label.kind}: {label.value!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="timed passes (the median is kept)")
    args = parser.parse_args(argv)

    sentences = load_sentences()
    outcomes = evaluate(sentences)
    table = accuracy(outcomes)
    messages = long_messages(sentences)
    timings = {
        "sentences": time_redaction([s.text for s in sentences], runs=args.runs),
        "200-chars": time_redaction(messages, runs=args.runs),
    }
    if QUESTIONS.exists():  # everyday questions, mostly without PII: the common case
        questions = [json.loads(line)["q"] for line in QUESTIONS.read_text().splitlines() if line]
        timings["questions"] = time_redaction(joined(questions), runs=args.runs)
    stream = stream_check(messages)
    verdicts = {
        "precision": {
            "target": f">= {TARGETS['precision']}",
            "value": table["all"]["precision"],
            "pass": table["all"]["precision"] >= TARGETS["precision"],
        },
        "recall": {
            "target": f">= {TARGETS['recall']}",
            "value": table["all"]["recall"],
            "pass": table["all"]["recall"] >= TARGETS["recall"],
        },
        "p95_ms_200_chars": {
            "target": f"< {TARGETS['p95_ms_200_chars']}",
            "value": timings["200-chars"]["p95_ms"],
            "pass": timings["200-chars"]["p95_ms"] < TARGETS["p95_ms_200_chars"],
        },
    }
    print_report(table, timings, stream, outcomes, verdicts)
    summary = {
        "sentences": len(sentences),
        "negatives": sum(1 for s in sentences if not s.labels),
        "min_iou": MIN_IOU,
        "by_kind": table,
        "latency_ms": timings,
        "stream": stream,
        "targets": verdicts,
    }
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
