"""schemathesis against ``/api/openapi.json`` of a live server on PostgreSQL (rate limits off).

Every operation of the published schema gets a fixed number of generated requests, valid ones
(``positive``) and ones that break the schema (``negative``), from a fixed seed, so a run is
repeatable. Generated ids almost never name anything, so each case is sent in one of three
variants (drawn by hypothesis too): as generated; with every id it carries pointed at a live
session, message, ticket or workflow execution; or that and the fields the schema cannot express
(the ``requestId`` pattern, the workflow types, a ticket's fields) made well-formed, so the
handlers are exercised past their lookups and checks, down to the model and the database.

What must hold for every request: no 5xx, and every error is JSON in API.md's shape. At the end
the server's log holds no traceback.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode

from tests.fuzz.conftest import FuzzTarget

# The first test of a run also waits for the live server (migrations, knowledge base, start-up)
# on two shared cores; every test bounds its own work (fixed case counts, reply timeouts).
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(600)]

SEED = 20240601
MAX_EXAMPLES = 50  # per operation and generation mode

ERROR_KEYS = {"error", "requestId", "timestamp", "path", "method"}
AS_GENERATED, LIVE_IDS, WELL_FORMED = "as generated", "live ids", "well-formed"


@dataclass
class LiveIds:
    """Real identifiers that generated cases are pointed at, so the handlers get past lookups."""

    session_id: str
    message_id: str
    ticket_id: str
    execution_id: str


def _post(base_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base_url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.load(response))


@pytest.fixture(scope="module")
def live_ids(fuzz_target: FuzzTarget) -> LiveIds:
    base = fuzz_target.server.base_url
    session_id = fuzz_target.server.create_session()
    answer = _post(base, "/api/chat", {"sessionId": session_id, "message": "How do I log in?"})
    ticket = _post(
        base,
        "/api/tools/ticket",
        {
            "action": "create",
            "sessionId": session_id,
            "ticketData": {
                "title": "Cannot log in",
                "description": "The login page says my password is wrong.",
                "priority": "low",
                "category": "account",
            },
        },
    )
    execution = _post(
        base,
        "/api/workflow/execute",
        {
            "workflowType": "complex_query",
            "parameters": {
                "query": "How do I reset my password?",
                "context": {"sessionId": session_id},
            },
        },
    )
    return LiveIds(
        session_id=session_id,
        message_id=str(answer["messageId"]),
        ticket_id=str(ticket["ticketId"]),
        execution_id=str(execution["executionId"]),
    )


def _point_at_live(case: Case, ids: LiveIds) -> None:
    """Replace every id the case carries by a live one."""
    path = case.path_parameters or {}
    if "session_id" in path:
        path["session_id"] = ids.session_id
    if "execution_id" in path:
        path["execution_id"] = ids.execution_id
    body = case.body
    if not isinstance(body, dict):
        return
    if "sessionId" in body or case.operation.path in ("/api/chat", "/api/tools/ticket"):
        body["sessionId"] = ids.session_id
    if "ticketId" in body:
        body["ticketId"] = ids.ticket_id
    if "messageId" in body:
        body["messageId"] = ids.message_id
    parameters = body.get("parameters")
    if isinstance(parameters, dict):
        parameters["context"] = {"sessionId": ids.session_id}


REQUEST_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,40}", fullmatch=True)
QUESTIONS = st.sampled_from(
    [
        "I forgot my password",
        "How do I export my files?",
        "My sync is stuck at 99%",
        "Can I get a refund for last month?",
    ]
)


def _well_formed(path: str, ids: LiveIds) -> st.SearchStrategy[dict[str, Any]]:
    """Body fields that pass the checks the published schema does not describe."""
    text = st.text(min_size=3, max_size=300)
    if path == "/api/chat":
        return st.fixed_dictionaries(
            {"message": QUESTIONS | st.text(min_size=1, max_size=300)},
            optional={"requestId": REQUEST_ID},
        )
    if path == "/api/tools/ticket":
        ticket_data = st.fixed_dictionaries(
            {
                "title": text,
                "description": text,
                "priority": st.sampled_from(["low", "medium", "high", "urgent"]),
                "category": st.text(max_size=64),
            },
            optional={
                "userEmail": st.emails() | st.text(max_size=60),
                "metadata": st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3),
            },
        )
        ticket_id = st.just(ids.ticket_id) | st.from_regex(r"TKT-[A-Z0-9]{8}", fullmatch=True)
        return st.fixed_dictionaries(
            {"action": st.just("create"), "ticketData": ticket_data}
        ) | st.fixed_dictionaries({"action": st.just("status"), "ticketId": ticket_id})
    if path == "/api/workflow/execute":
        return st.fixed_dictionaries(
            {
                "workflowType": st.sampled_from(["complex_query", "escalation", "tool_chain"]),
                "parameters": st.fixed_dictionaries(
                    {"context": st.just({"sessionId": ids.session_id})},
                    optional={"query": QUESTIONS | text, "tools": st.lists(st.text(), max_size=3)},
                ),
            },
            optional={"idempotencyKey": REQUEST_ID},
        )
    if path == "/api/session/{session_id}/report":
        return st.fixed_dictionaries(
            {}, optional={"messageId": st.just(ids.message_id), "reason": st.text(max_size=200)}
        )
    if path == "/api/session/{session_id}/handoff":
        return st.fixed_dictionaries(
            {},
            optional={
                "reason": st.text(max_size=200),
                "contactEmail": st.emails() | st.text(max_size=60),
                "stopBot": st.booleans(),
            },
        )
    if path == "/api/session/{session_id}/rating":
        return st.fixed_dictionaries(
            {"score": st.integers(1, 5)}, optional={"comment": st.text(max_size=200)}
        )
    if path == "/api/session/{session_id}/feedback":
        return st.fixed_dictionaries(
            {"messageId": st.just(ids.message_id), "vote": st.sampled_from(["up", "down"])}
        )
    return st.just({})


@pytest.fixture(scope="module")
def api_schema(fuzz_target: FuzzTarget) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict({"seed": SEED})
    return schemathesis.openapi.from_url(
        f"{fuzz_target.server.base_url}/api/openapi.json", config=config, timeout=30
    )


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def log_start(fuzz_target: FuzzTarget) -> int:
    return fuzz_target.log_offset()


BOTH = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# An operation whose only input is a free string in the path has no schema-breaking input.
POSITIVE = (GenerationMode.POSITIVE,)
# Every operation the schema publishes, and the generation modes it is fuzzed with.
OPERATIONS: dict[str, tuple[GenerationMode, ...]] = {
    "POST /api/session": BOTH,
    "GET /api/session/{session_id}": BOTH,
    "DELETE /api/session/{session_id}": POSITIVE,
    "POST /api/session/{session_id}/report": POSITIVE,
    "POST /api/chat": BOTH,
    "POST /api/tools/search": BOTH,
    "POST /api/tools/ticket": BOTH,
    "POST /api/workflow/execute": BOTH,
    "GET /api/workflow/{execution_id}": POSITIVE,
    "GET /api/status": POSITIVE,
    # Staff or METRICS_TOKEN: the fuzzer has neither, so every input meets the refusal first.
    "GET /api/metrics": BOTH,
    "GET /api/session/{session_id}/handoff": POSITIVE,
    "POST /api/session/{session_id}/handoff": BOTH,
    "POST /api/session/{session_id}/rating": BOTH,
    "POST /api/session/{session_id}/feedback": BOTH,
    # Staff endpoints: a client without the admin's login is refused before anything else.
    "GET /api/staff/inbox": POSITIVE,
    "GET /api/staff/agents": POSITIVE,
    "POST /api/staff/handoffs/{handoff_id}/take": POSITIVE,
    "POST /api/staff/handoffs/{handoff_id}/assign": POSITIVE,
    "POST /api/staff/handoffs/{handoff_id}/release": POSITIVE,
    "POST /api/staff/handoffs/{handoff_id}/resolve": POSITIVE,
    "POST /api/staff/handoffs/{handoff_id}/reply": POSITIVE,
    "POST /api/staff/sessions/{session_id}/pickup": POSITIVE,
    "POST /api/staff/sessions/{session_id}/notes": POSITIVE,
    "POST /api/staff/drafts/{draft_id}/discard": POSITIVE,
    # The embeddable widget: session ids and signed identities in the body, no cookie.
    "POST /api/widget/session": BOTH,
    "POST /api/widget/session/new": BOTH,
    "POST /api/widget/identify": BOTH,
}


def _operations(api_schema: schemathesis.BaseSchema) -> dict[str, schemathesis.APIOperation]:
    found = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here
        found[f"{operation.method.upper()} {operation.path}"] = operation
    return found


def check_response(case: Case, response: schemathesis.Response) -> None:
    """What must hold for any request: no 5xx, errors as JSON in API.md's shape."""
    where = case.as_curl_command()
    assert response.status_code < 500, f"{response.status_code} for {where}\n{response.text[:2000]}"
    if response.status_code >= 400:
        content_type = (response.headers.get("content-type") or [""])[0]
        assert content_type.startswith("application/json"), (
            f"{response.status_code} is {content_type!r} for {where}: {response.text[:500]}"
        )
        body = response.json()
        assert set(body) >= ERROR_KEYS, (where, body)
        error = body["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), (where, body)


def test_every_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    assert set(_operations(api_schema)) == set(OPERATIONS)


@pytest.mark.parametrize(
    ("label", "mode"),
    [
        pytest.param(label, mode, id=f"{mode.value}-{label}")
        for label, modes in OPERATIONS.items()
        for mode in modes
    ],
)
def test_operation_answers_every_request_without_a_server_error(
    label: str,
    mode: GenerationMode,
    api_schema: schemathesis.BaseSchema,
    fuzz_target: FuzzTarget,
    live_ids: LiveIds,
    http: requests.Session,
    log_start: int,
) -> None:
    operation = _operations(api_schema)[label]
    statuses: Counter[str] = Counter()

    @hypothesis.seed(SEED)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure is reported
    )
    @given(
        case=operation.as_strategy(generation_mode=mode),
        variant=st.sampled_from([AS_GENERATED, LIVE_IDS, WELL_FORMED]),
        data=st.data(),
    )
    def run(case: Case, variant: str, data: st.DataObject) -> None:
        if variant != AS_GENERATED:
            _point_at_live(case, live_ids)
        if variant == WELL_FORMED and isinstance(case.body, dict):
            case.body.update(data.draw(_well_formed(operation.path, live_ids)))
        if variant != AS_GENERATED and operation.method.upper() == "DELETE":
            # Ending the shared session would make every later case a 409: end a new one.
            case.path_parameters = {"session_id": fuzz_target.server.create_session()}
        response = case.call(session=http, timeout=30)
        check_response(case, response)
        code = response.json()["error"]["code"] if response.status_code >= 400 else ""
        statuses[f"{variant}: {response.status_code} {code}".strip()] += 1

    run()
    print(f"\n{label} {mode.value}: {dict(sorted(statuses.items()))}")
    log = fuzz_target.log_since(log_start)
    assert "Traceback" not in log, log[-4000:]
