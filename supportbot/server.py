"""daphne with supportbot's WebSocket options: ``python -m supportbot.server [daphne options] app``.

The same command line as ``daphne`` (which gets the same behaviour from ``supportbot.asgi``).
One difference from daphne's own: a protocol error (above all a frame over
daphne's 1 MiB message limit) ends the socket with a closing handshake carrying its code (1009
"message too big") instead of a dropped TCP connection, so the client learns why. Frames over
64 KiB and up to 1 MiB are read and answered with an ``error`` frame by the consumer.
"""

from __future__ import annotations

from typing import Any

import daphne.server
from daphne.cli import CommandLineInterface
from daphne.ws_protocol import WebSocketFactory

from supportbot.env import load_settings_or_exit


class ClosingWebSocketFactory(WebSocketFactory):
    def setProtocolOptions(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("failByDrop", False)
        super().setProtocolOptions(*args, **kwargs)


def use_closing_factory() -> None:
    """daphne.server builds its factory from the name it imported; point that name at ours.
    Also called by ``supportbot.asgi`` when plain ``daphne`` loads the application (daphne
    imports the application before it builds the factory), so both commands behave alike."""
    daphne.server.WebSocketFactory = ClosingWebSocketFactory


def main() -> None:
    load_settings_or_exit()
    use_closing_factory()
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
