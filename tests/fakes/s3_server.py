"""A real S3 protocol server (moto) on 127.0.0.1 that boto3 and django-storages talk to.

Only the network edge is fake: boto3, its signing, s3transfer and ``S3Storage`` run for real
against moto's S3 implementation over HTTP.

    server = MotoS3Server().start()
    bucket = server.create_bucket()
    ...  # point S3Storage(endpoint_url=server.endpoint_url, bucket_name=bucket) at it
    server.client().get_object(Bucket=bucket, Key="archives/...")
    server.stop()

The server runs in a thread of the test process, as moto's own ``ThreadedMotoServer`` does, rather
than as a ``moto_server`` subprocess: it binds port 0 itself (no free-port race), is ready as
soon as ``start()`` returns (no polling) and pays moto's import once. ``ThreadedMotoServer``
itself is not used because its ``stop()`` never closes the listening socket (connections after
it would sit in the backlog and hang instead of being refused) and it prints on start.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"  # moto accepts any credentials; these only have to be set
REGION = "us-east-1"


class MotoS3Server:
    """moto's S3 (and any other moto service) over HTTP on 127.0.0.1, in a background thread."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None

    @property
    def endpoint_url(self) -> str:
        """The ``endpoint_url`` for boto3 / ``S3Storage``."""
        if self._server is None:
            raise RuntimeError("the S3 server is not running")
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoS3Server:
        """Bind a free port and serve; returns once connections are accepted."""
        # Imported here: the fixtures module imports this one, and a run without S3 tests
        # should not pay for importing moto.
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                pass  # one line per request on stderr is noise in a test run; errors still log

        app = DomainDispatcherApplication(create_backend_app)
        # Listening starts in make_server, so the server is reachable before the thread runs.
        server = make_server(self.host, 0, app, threaded=True, request_handler=QuietHandler)
        self.port = server.server_port
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits for one poll at most
            name=f"moto-s3-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (later connections are refused)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)
        self._server = None
        self._thread = None
        self._client = None

    def client(self) -> Any:
        """A plain boto3 S3 client for this server (not our code: what tests check against)."""
        import boto3
        from botocore.config import Config

        # Built once: loading the service model is most of a client's cost; clients are
        # thread-safe.
        if self._client is None:
            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
                region_name=REGION,
                config=Config(s3={"addressing_style": "path"}),
            )
        return self._client

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh, unique one by default) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete a bucket and everything in it."""
        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", ()):
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)

    def __enter__(self) -> MotoS3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class S3Bucket:
    """One bucket on a running ``MotoS3Server`` (what the ``s3_server`` fixture gives a test)."""

    server: MotoS3Server
    name: str

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    def client(self) -> Any:
        """A plain boto3 S3 client for the server."""
        return self.server.client()

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix``, sorted."""
        response = self.client().list_objects_v2(Bucket=self.name, Prefix=prefix)
        return sorted(item["Key"] for item in response.get("Contents", ()))

    def read(self, key: str) -> bytes:
        """The stored bytes of one object, exactly as S3 holds them."""
        return self.client().get_object(Bucket=self.name, Key=key)["Body"].read()
