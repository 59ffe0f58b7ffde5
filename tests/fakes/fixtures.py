"""Pytest fixtures around the fakes: two independent OpenAI-compatible servers and a refused port.

Each test gets fresh servers (start and stop take milliseconds), so a stalled response or a
leftover script can never leak into the next test. The S3 server is the exception: one per run,
with a fresh bucket per test, since isolation lives in the bucket.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.openai_server import FakeOpenAIServer, refusing_socket
from tests.fakes.s3_server import MotoS3Server, S3Bucket


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAIServer]:
    """The primary model's server."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def fake_llm_fallback() -> Iterator[FakeOpenAIServer]:
    """A second, independent server (the fallback model)."""
    with FakeOpenAIServer(model="fake-fallback-model") as server:
        yield server


@pytest.fixture
def refused_base_url() -> Iterator[str]:
    """An OpenAI base URL on 127.0.0.1 where every connection is refused."""
    sock = refusing_socket()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()


@pytest.fixture(scope="session")
def _moto_s3() -> Iterator[MotoS3Server]:
    """One S3 server for the whole run (moto's import is the slow part, not a bucket)."""
    with MotoS3Server() as server:
        yield server


@pytest.fixture
def s3_server(_moto_s3: MotoS3Server) -> Iterator[S3Bucket]:
    """A fresh, empty bucket on the run's S3 server; emptied and deleted after the test."""
    bucket = S3Bucket(server=_moto_s3, name=_moto_s3.create_bucket())
    yield bucket
    _moto_s3.delete_bucket(bucket.name)
