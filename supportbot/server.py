"""daphne with supportbot's limits: ``python -m supportbot.server [daphne options] app``.

The same command line as ``daphne`` (which gets the same behaviour from ``supportbot.asgi``).
Two differences from daphne's own:

- A WebSocket protocol error (above all a frame over daphne's 1 MiB message limit) ends the
  socket with a closing handshake carrying its code (1009 "message too big") instead of a
  dropped TCP connection, so the client learns why. Frames over 64 KiB and up to 1 MiB are read
  and answered with an ``error`` frame by the consumer.
- Every status goes out with its standard reason phrase: Twisted's table lacks some that we
  send (429 Too Many Requests, 422) and would say "Unknown Status".
- An HTTP request body over ``MAX_REQUEST_BODY_BYTES`` (1 MiB) is refused by the server itself:
  daphne (Twisted) otherwise receives the whole body, then queues all of it for the application
  before the application runs, so no middleware could refuse it sooner or cheaper (a 1 GiB body
  took 40 s and 1 GiB of memory to earn its 413). The 413 of API.md goes out as soon as the
  headers are read when ``Content-Length`` is over the limit, or as soon as a chunked body passes
  it; the rest of the body is read and dropped, never kept, and the connection is closed.
  Bodies over 64 KiB and up to the limit are still refused by the application
  (``ErrorShapeMiddleware``), with the same answer.
"""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import daphne.server
import structlog
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.ws_protocol import WebSocketFactory
from django.conf import settings
from twisted.web import http

from supportbot.clients import client_address
from supportbot.env import load_settings_or_exit
from supportbot.errors import body_too_large, error_body
from supportbot.ids import CLIENT_REQUEST_ID_RE, new_request_id

log = structlog.get_logger("supportbot.access")

# After a refusal the answer and a FIN go out at once, and what the client still sends is read
# and dropped for this long: closing a socket with unread input resets the connection, and a
# reset can destroy the answer before the client reads it (the lingering close of nginx/Apache).
LINGER_SECONDS = 2.0


class ClosingWebSocketFactory(WebSocketFactory):
    def setProtocolOptions(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("failByDrop", False)
        super().setProtocolOptions(*args, **kwargs)


class BodyLimitedRequest(WebRequest):
    """daphne's HTTP request, refusing a body over ``MAX_REQUEST_BODY_BYTES`` while it arrives.

    Twisted's channel calls ``gotLength`` once the headers are read (with the declared length,
    or None for a chunked body) and ``handleContentChunk`` for every piece of the body; only
    after the last piece does daphne hand the request to the application.
    """

    content: Any  # Twisted's: the body received so far (a file), None before gotLength
    _received = 0
    _refused = False
    _linger: Any = None

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        super().setResponseCode(code, message or reason_phrase(code))

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > _limit():
            self._refuse(declared=length)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > _limit():
            self._refuse(declared=None)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:  # a refused body's end, read in the same piece: nothing to run
            super().requestReceived(command, path, version)

    def connectionLost(self, reason: Any) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        super().connectionLost(reason)

    def _refuse(self, *, declared: int | None) -> None:
        self._refused = True
        channel = self.channel
        # No "100 Continue" for a body we refuse (Twisted sends it after gotLength).
        self.requestHeaders.removeHeader(b"Expect")
        if self.content is not None:
            self.content.close()  # the part of a chunked body received so far
            self.content = None
        # Whatever else the client sends on this connection is dropped unread by the parser, and
        # so is the rest of the piece being decoded now (parsed, its end would run the request,
        # and garbage would add a "400 Bad Request" after our answer).
        channel.dataReceived = _drop
        pending = getattr(getattr(channel, "_transferDecoder", None), "_buffer", None)
        if isinstance(pending, bytearray):
            del pending[:]  # the chunked decoder stops when its buffer is empty
        transport = channel.transport
        transport.write(self._refusal(channel, declared))
        channel._networkProducer.unregisterProducer()  # as HTTPChannel.loseConnection does
        getattr(transport, "loseWriteConnection", transport.loseConnection)()
        # Not at the top: importing twisted.internet.reactor installs Twisted's default reactor,
        # and daphne installs its asyncio reactor first; by the time a request arrives it has.
        from twisted.internet import reactor

        clock: Any = reactor
        self._linger = clock.callLater(
            LINGER_SECONDS, getattr(transport, "abortConnection", transport.loseConnection)
        )

    def _refusal(self, channel: http.HTTPChannel, declared: int | None) -> bytes:
        """API.md's 413 (the application's own, word for word) as a whole HTTP response."""
        method = getattr(channel, "_command", b"").decode("latin-1")
        target = getattr(channel, "_path", b"").split(b"?", 1)[0].decode("latin-1")
        path = unquote(target)
        supplied = (self.requestHeaders.getRawHeaders(b"X-Request-ID") or [b""])[0]
        request_id = supplied.decode("latin-1")
        if not CLIENT_REQUEST_ID_RE.match(request_id):
            request_id = new_request_id()
        error = error_body(
            body_too_large(settings.MAX_BODY_BYTES), request_id=request_id, path=path, method=method
        )
        body = json.dumps(error).encode()
        peer = self.client
        forwarded = b",".join(self.requestHeaders.getRawHeaders(b"X-Forwarded-For") or [])
        log.warning(
            "request_body_refused",
            method=method,
            path=path,
            status=413,
            declared_bytes=declared,
            received_bytes=self._received,
            limit_bytes=_limit(),
            request_id=request_id,
            client_ip=client_address(getattr(peer, "host", "") or "", forwarded.decode("latin-1")),
        )
        headers = [
            (b"Content-Type", b"application/json"),
            (b"Content-Length", str(len(body)).encode()),
            (b"Connection", b"close"),
            (b"X-Request-ID", request_id.encode()),
            (b"X-Content-Type-Options", b"nosniff"),
            (b"Date", http.datetimeToString(time.time())),
        ]
        head = b"HTTP/1.1 413 " + (reason_phrase(413) or b"") + b"\r\n"
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        return head + b"\r\n" + body


class BodyLimitedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BodyLimitedRequest
        return protocol


def reason_phrase(code: int) -> bytes | None:
    """The standard reason phrase of ``code`` (RFC 9110 and the IANA registry, as Python's
    ``http.HTTPStatus`` has them), or None for a code with none (Twisted's then applies)."""
    try:
        return HTTPStatus(code).phrase.encode("latin-1")
    except ValueError:
        return None


def _limit() -> int:
    return int(settings.MAX_REQUEST_BODY_BYTES)


def _drop(data: bytes) -> None:
    return None


def use_our_factories() -> None:
    """daphne.server builds its factories from the names it imported; point those at ours.
    Also called by ``supportbot.asgi`` when plain ``daphne`` loads the application (daphne
    imports the application before it builds the factories), so both commands behave alike."""
    daphne.server.WebSocketFactory = ClosingWebSocketFactory
    daphne.server.HTTPFactory = BodyLimitedHTTPFactory


def main() -> None:
    load_settings_or_exit()
    use_our_factories()
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
