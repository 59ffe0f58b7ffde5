"""Client identity, for HTTP and WebSocket alike: the client's address through trusted proxies
(one spelling per client), its label in keys, logs and the admin, and its keyed fingerprint.

Every limit keyed by client, the security log and the sessions' stored fingerprint use these, so
that a client is the same client whichever transport it arrives on.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.http import HttpRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_ip(request: HttpRequest) -> str:
    """The client address: REMOTE_ADDR, or X-Forwarded-For when the peer is a trusted proxy."""
    return client_address(
        request.META.get("REMOTE_ADDR", "") or "", request.META.get("HTTP_X_FORWARDED_FOR", "")
    )


def client_address(remote: str, forwarded: str) -> str:
    """The client of a connection from ``remote`` that carried ``forwarded`` (X-Forwarded-For),
    in one spelling per client: ports and brackets dropped, an IPv4-mapped IPv6 address as IPv4,
    and an IPv6 address as its /64 network (one home or host gets a /64 and picks any address
    in it), so that neither respelling nor rotating addresses makes a new client for the limits.
    """
    peer = _address(remote)
    if peer is None:
        return remote
    if _trusted(peer):
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        # Walk from the nearest hop back, skipping our own proxies; a garbled hop ends the walk
        # (what lies beyond it cannot be trusted), and the proxy itself is the client.
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                break
            if not _trusted(address):
                return _client_form(address)
    return _client_form(peer)


def _address(value: str) -> Address | None:
    text = value.strip()
    if text.startswith("["):  # "[2001:db8::1]:443"
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # "10.0.0.1:5000"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address) -> bool:
    return address in _proxy_addresses(tuple(settings.TRUSTED_PROXIES))


@functools.cache
def _proxy_addresses(
    proxies: tuple[str, ...],
) -> frozenset[Address]:
    """TRUSTED_PROXIES parsed once (per value of the setting), not on every request."""
    return frozenset(address for address in map(_address, proxies) if address is not None)


def _client_form(address: Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and not address.is_loopback:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def scope_client_ip(scope: dict[str, Any]) -> str:
    """The client of an ASGI connection (a WebSocket's scope), as ``client_ip`` sees it on HTTP."""
    client = scope.get("client") or ("", 0)
    return client_address(str(client[0] or ""), _forwarded(scope.get("headers") or ()))


def _forwarded(headers: Iterable[tuple[bytes, bytes]]) -> str:
    return b", ".join(value for name, value in headers if name == b"x-forwarded-for").decode(
        "latin-1"
    )


def client_label(ip: str) -> str:
    """How a client IP appears in keys, logs and the admin: as is, or a keyed hash."""
    if not ip:
        return "unknown"
    if settings.HASH_CLIENT_IPS:
        return "ip_" + ip_fingerprint(ip)[:20]
    return ip


def ip_fingerprint(ip: str) -> str:
    """A keyed hash of an IP, for storing it (e.g. on a session) without keeping the address."""
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, b"ip:" + ip.encode(), hashlib.sha256).hexdigest()
