"""The evaluation harness's scores (``manage.py evaluate``) for the offline assistant and for a
fake model, with the time each run takes.

The fake model is an OpenAI-compatible server (``tests.fakes.openai_server``) that the real
``openai`` client talks to over HTTP; it behaves like a model that only searches and pastes: it
calls ``kb_search`` with the customer's words, then answers with the first result's passage and
a link to it (or, with no result, offers a ticket or a person). It is the floor a real model
must beat, and it exercises the model path of the pipeline (tool calls, results, citations).

Scores are deterministic; the wall time of a run is measured ``--runs`` times (median, range).

    .venv/bin/python -m bench.eval_bench [--runs 3] [--only offline,fake-model]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.fakes.openai_server import Custom, FakeOpenAIServer, Reply, ToolCallReply, tool_call

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("fact", "citation_precision", "citation_recall", "offer", "tools")
NO_RESULT = (
    "I couldn't find that in the help centre. I can open a ticket for you, or connect you "
    "with a person from the support team."
)


def search_and_paste(body: dict[str, Any]) -> Reply | ToolCallReply:
    """The fake model: search first, then paste the best passage with its link."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") != "tool":
        question = next(
            (str(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        return tool_call("kb_search", {"query": question[:500], "maxResults": 3})
    try:
        results = json.loads(last.get("content") or "{}").get("results") or []
    except ValueError:
        results = []
    if not results:
        return Reply(NO_RESULT)
    best = results[0]
    return Reply(f"{best['passage']}\n\nSource: [{best['title']}]({best['url']})")


def evaluate(env: dict[str, str], out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", "evaluate", "--json", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def run_setup(name: str, runs: int, tmp: Path) -> dict[str, Any]:
    base = {**os.environ, "LOG_LEVEL": "WARNING", "LLM_BASE_URL": "", "OPENAI_API_KEY": ""}
    server = None
    if name == "fake-model":
        server = FakeOpenAIServer().start()
        server.set_default(Custom(search_and_paste))
        base |= {"LLM_BASE_URL": server.base_url, "LLM_MODEL": "fake-model", "LLM_API_KEY": "x"}
    try:
        out = tmp / f"{name}.json"
        seconds = [evaluate(base, out) for _ in range(runs)]
    finally:
        if server is not None:
            server.stop()
    document = json.loads(out.read_text())
    turns = sum(len(case["turns"]) for case in document["cases"])
    return {
        "chain": document["chain"],
        "scores": document["scores"],
        "seconds": seconds,
        "turns": turns,
    }


def report(name: str, result: dict[str, Any]) -> None:
    seconds = result["seconds"]
    print(f"\n-- {name} (chain: {' → '.join(result['chain'])})")
    print(
        f"run of {result['turns']} turns (scratch database set-up included): median "
        f"{statistics.median(seconds):.1f} s (range {min(seconds):.1f} to {max(seconds):.1f})"
    )
    for part, table in result["scores"].items():
        overall = table["all"]
        cells = ", ".join(
            f"{metric} {overall[metric]:.2f}"
            for metric in METRICS
            if overall.get(metric) is not None
        )
        print(f"{part}: {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="offline,fake-model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="supportbot-eval-bench-") as tmp:
        for name in args.only.split(","):
            report(name, run_setup(name, args.runs, Path(tmp)))


if __name__ == "__main__":
    main()
