"""``manage.py verify_deployment``: every part of a deployment checked for real, a table (or
JSON) of what works, exit 1 when something is broken, and never a secret or a hang.

The checks run on threads of their own, so the tests use a transactional database (the rows a
check writes and reads are committed, as in a real process).
"""

from __future__ import annotations

import io
import json
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from chat.llm.chain import reset_chain
from chat.models import ChatSession, Message
from ops.deployment_turn import VERIFY_QUESTION, VERIFY_USER_ID
from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.django_db(transaction=True)

EMBEDDED_CHECKS = [
    "settings",
    "system-checks",
    "database",
    "redis",
    "cache",
    "channel-layer",
    "celery-broker",
    "celery-worker",
    "celery-beat",
    "model:offline",
    "archives",
    "knowledge-base",
    "turn",
]


def verify(*args: str) -> tuple[int, str, str]:
    """Run the command: (exit code, stdout, stderr with the CommandError's message)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_deployment", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    return 0, out.getvalue(), err.getvalue()


def table_rows(output: str) -> dict[str, tuple[str, str]]:
    """The table's rows by check name: (status, detail), folded detail lines joined."""
    rows: dict[str, list[str]] = {}
    last = ""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if not line.startswith("│") or len(cells) != 4:
            continue
        name, status, _ms, detail = cells
        if name:
            last = name
            rows[name] = [status, detail]
        elif last:
            rows[last][1] += " " + detail
    return {name: (status, detail) for name, (status, detail) in rows.items()}


def squashed(text: str) -> str:
    """Text without whitespace: a detail folded over table lines compares whole."""
    return "".join(text.split())


def use_models(settings, *, primary: str = "", fallback: str = "", model: str = "fake-model"):
    """The chain the settings describe: a primary and/or a fallback at these base URLs."""
    settings.LLM_BASE_URL = primary
    settings.LLM_MODEL = model if primary else ""
    settings.OPENAI_API_KEY = "sk-fallback-key-not-shown" if fallback else ""
    settings.OPENAI_BASE_URL = fallback or "https://api.openai.com/v1"
    settings.OPENAI_MODEL = "fake-fallback-model"
    settings.LLM_MAX_RETRIES = 0
    reset_chain()


@pytest.fixture(autouse=True)
def _test_mailer_silenced(settings):
    """The test runner swaps in Django's locmem mail backend, which its deploy checks call
    development-only (mail.E001): an artefact of the test run, silenced the way operators
    silence a check, which also shows that silenced checks are left out."""
    settings.SILENCED_SYSTEM_CHECKS = [*settings.SILENCED_SYSTEM_CHECKS, "mail.E001"]


@pytest.fixture
def silent_base_url() -> Iterator[str]:
    """An OpenAI base URL whose server accepts connections and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections complete in the backlog; nothing ever reads them
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()


def test_the_embedded_default_passes_and_names_every_check(
    kb, offline_only, settings, _archives_in_tmp: Path
):
    code, out, err = verify()

    assert code == 0, (out, err)
    rows = table_rows(out)
    assert list(rows) == EMBEDDED_CHECKS
    assert rows["database"][0] == "ok" and "every migration applied" in rows["database"][1]
    assert rows["redis"][0] == ("ok" if settings.REDIS_URL else "skipped")
    for name in ("cache", "channel-layer", "celery-broker", "archives", "knowledge-base"):
        assert rows[name][0] == "ok", (name, rows[name])
    assert rows["celery-worker"] == (
        "skipped",
        "tasks run eagerly in this process (CELERY_TASK_ALWAYS_EAGER)",
    )
    # Present but no model: a warning, not a failure.
    assert rows["model:offline"][0] == "warn"
    assert "no language model configured" in rows["model:offline"][1]
    assert rows["system-checks"][0] == "warn" and "ops.W003" in rows["system-checks"][1]
    assert "ops.W003: No language model is configured" in out  # the messages, under the table
    assert rows["turn"][0] == "ok"
    assert "answered by offline-assistant" in rows["turn"][1]
    assert "session deleted" in rows["turn"][1]
    assert re.fullmatch(r"\d+ ok, \d+ warn, 0 fail, \d+ skipped", out.rstrip().splitlines()[-1])
    # Nothing left behind: no session, no message, no probe object.
    assert not ChatSession.objects.filter(user_id=VERIFY_USER_ID).exists()
    assert not Message.objects.exists()
    assert [path for path in _archives_in_tmp.rglob("*") if path.is_file()] == []


def test_json_output_parses_and_carries_every_check(kb, offline_only):
    code, out, _ = verify("--json")

    assert code == 0
    body = json.loads(out)
    assert body["ok"] is True and body["strict"] is False
    assert [check["name"] for check in body["checks"]] == EMBEDDED_CHECKS
    assert sum(body["summary"].values()) == len(EMBEDDED_CHECKS)
    assert body["summary"]["fail"] == 0
    for check in body["checks"]:
        assert check["status"] in {"ok", "warn", "fail", "skipped"}
        assert isinstance(check["timeMs"], float | int) and check["timeMs"] >= 0
        assert isinstance(check["detail"], str) and check["detail"]
    system = next(check for check in body["checks"] if check["name"] == "system-checks")
    assert any(note.startswith("ops.W003: ") for note in system["notes"])


def test_strict_fails_on_warnings(kb, offline_only):
    code, _, err = verify("--strict", "--json")

    assert code == 1
    assert "model:offline" in err and "system-checks" in err


def test_archive_storage_that_cannot_be_written_fails(kb, offline_only, settings, tmp_path):
    # A directory that cannot be made (its parent is a file): unwritable even for root.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    storages = dict(settings.STORAGES)
    options = {**storages["archives"].get("OPTIONS", {}), "location": str(blocker / "archives")}
    storages["archives"] = {**storages["archives"], "OPTIONS": options}
    settings.STORAGES = storages

    code, out, err = verify()

    assert code == 1
    status, detail = table_rows(out)["archives"]
    assert status == "fail"
    assert squashed(f"FileSystemStorage {blocker / 'archives'}: NotADirectoryError") in squashed(
        detail
    )
    assert err.strip().endswith("1 check failed: archives")
    assert table_rows(out)["turn"][0] == "ok"  # the rest still runs


def test_redis_at_a_closed_port_fails_without_showing_its_password(kb, offline_only, settings):
    settings.REDIS_URL = "redis://:redis-pass-not-shown@127.0.0.1:1/0"
    settings.LLM_API_KEY = "sk-primary-key-not-shown"

    code, out, err = verify()

    assert code == 1
    status, detail = table_rows(out)["redis"]
    assert status == "fail"
    assert detail.startswith("REDIS_URL redis://***@127.0.0.1:1/0: ConnectionError")
    assert "Connection refused" in detail
    assert "redis" in err.rsplit("failed:", 1)[1]
    for secret in ("redis-pass-not-shown", "sk-primary-key-not-shown"):
        assert secret not in out and secret not in err


def test_a_real_model_is_checked_link_by_link_and_answers_the_turn(
    kb, settings, fake_llm: FakeOpenAIServer
):
    use_models(settings, primary=fake_llm.base_url)

    code, out, err = verify()

    assert code == 0, (out, err)
    rows = table_rows(out)
    assert rows["model:primary"] == (
        "ok",
        f"fake-model at {fake_llm.base_url}: GET /models answered",
    )
    assert rows["model:offline"][0] == "ok"  # the last link behind a real model
    assert rows["turn"][0] == "ok" and "answered by fake-model" in rows["turn"][1]
    asked = fake_llm.chat_requests[-1].body["messages"]
    assert asked[-1]["content"] == VERIFY_QUESTION
    assert "ops.W003" not in rows["system-checks"][1]


def test_a_dead_model_link_fails_while_the_turn_falls_back(
    kb, settings, fake_llm: FakeOpenAIServer, refused_base_url: str
):
    use_models(settings, primary=refused_base_url, fallback=fake_llm.base_url)

    code, out, err = verify("--json")

    assert code == 1
    checks = {check["name"]: check for check in json.loads(out)["checks"]}
    assert checks["model:primary"]["status"] == "fail"
    assert checks["model:primary"]["detail"] == (
        f"fake-model at {refused_base_url}: unreachable or refused (GET /models failed)"
    )
    assert checks["model:fallback"]["status"] == "ok"
    # The turn still got an answer, from the fallback: a warning, not a second failure.
    assert checks["turn"]["status"] == "warn"
    assert "answered by fake-fallback-model" in checks["turn"]["detail"]
    assert err.strip().endswith("1 check failed: model:primary")
    assert "sk-fallback-key-not-shown" not in out + err


def test_a_hanging_backend_gives_no_answer_within_its_time_limit(settings, silent_base_url):
    use_models(settings, primary=silent_base_url)
    started = time.monotonic()

    code, out, _ = verify("--timeout", "1", "--skip", "turn", "--skip", "knowledge-base")

    assert time.monotonic() - started < 15  # every check at most a second, none waited out
    rows = table_rows(out)
    assert code == 1
    assert rows["model:primary"] == ("fail", "no answer within 1 s")
    assert rows["turn"] == ("skipped", "skipped (--skip)")


@pytest.fixture
def tasks_need_a_worker(tmp_path) -> Iterator[None]:
    """As in production: tasks go to the broker, and a worker must take them. A filesystem
    broker gets folders of the test's own, out of reach of a worker a developer runs."""
    from celery import current_app

    conf = current_app.conf
    eager, options = conf.task_always_eager, conf.broker_transport_options
    conf.task_always_eager = False
    if str(conf.broker_url).startswith("filesystem://"):
        for folder in ("queue", "control"):
            (tmp_path / folder).mkdir()
        conf.broker_transport_options = {
            **options,
            "data_folder_in": str(tmp_path / "queue"),
            "data_folder_out": str(tmp_path / "queue"),
            "control_folder": str(tmp_path / "control"),
        }
    yield
    conf.task_always_eager, conf.broker_transport_options = eager, options


def test_no_worker_fails_the_worker_check(kb, offline_only, tasks_need_a_worker):
    code, out, err = verify("--timeout", "4", "--skip", "turn")

    status, detail = table_rows(out)["celery-worker"]
    assert (status, detail.split(":")[0]) == ("fail", "no worker answered a ping within 2 s")
    assert code == 1 and err.strip().endswith("1 check failed: celery-worker")


def test_bad_options_are_refused():
    with pytest.raises(CommandError, match="must be a number of seconds above 0, not '0'"):
        call_command("verify_deployment", "--timeout", "0")
    with pytest.raises(CommandError, match="--skip: no check nope"):
        call_command("verify_deployment", "--skip", "nope")
    with pytest.raises(CommandError, match="--url must be http"):
        call_command("verify_deployment", "--url", "ftp://example.com")


@pytest.fixture(scope="module")
def supportbot_server(tmp_path_factory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("verify-live")).prepare().start()
    yield server
    server.stop()


def test_with_url_the_turn_runs_over_http_and_ends_its_session(
    kb, offline_only, supportbot_server: LiveServer
):
    code, out, err = verify("--url", supportbot_server.base_url, "--json")

    assert code == 0, (out, err)
    turn = next(check for check in json.loads(out)["checks"] if check["name"] == "turn")
    assert turn["status"] == "ok"
    assert turn["detail"].startswith("over HTTP: answered by offline-assistant in ")
    # The server has its own database: the session was ended there (and could not be deleted
    # from here); in a deployment sharing one database it is deleted too.
    assert turn["detail"].endswith("session ended (another database)")
    with sqlite3.connect(supportbot_server.var_dir / "db.sqlite3") as db:
        rows = db.execute(
            "SELECT status FROM chat_chatsession WHERE user_id = ?", [VERIFY_USER_ID]
        ).fetchall()
    assert rows == [("ended",)]
