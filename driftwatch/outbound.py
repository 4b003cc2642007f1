"""Every HTTP call driftwatch makes to the outside (notifiers, embedders) goes through one kind
of client: httpx with explicit connect and read timeouts, no redirects followed (a redirect
would carry a secret URL's body to another host), and one error type naming the host only.

A response that is not HTTP at all (any non-HTTP service listening on the URL) is an
`httpx.RemoteProtocolError`, an `httpx.HTTPError` like every other transport failure, so it
becomes the caller's error too instead of escaping as `http.client.BadStatusLine`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx

from driftwatch import __version__
from driftwatch.errors import DriftwatchError


def describe_url(url: str) -> str:
    """`https://hooks.slack.com/…`: enough to find the receiver, nothing that grants access."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable url)"
    return f"{parts.scheme}://{parts.hostname or ''}{port}/…"


def make_client(connect_timeout: float, read_timeout: float, connect_retries: int = 0) -> httpx.Client:
    """A client whose every request gives up after `connect_timeout` to connect and
    `read_timeout` between received bytes. `connect_retries` retries only failures to
    connect, when nothing was sent, so they can never duplicate a request."""
    return httpx.Client(
        timeout=httpx.Timeout(read_timeout, connect=min(connect_timeout, read_timeout)),
        transport=httpx.HTTPTransport(retries=connect_retries),
        headers={"User-Agent": f"driftwatch/{__version__}"},
        follow_redirects=False,
    )


def post_json(
    client: httpx.Client,
    url: str,
    body: Any,
    where: str,
    error: type[DriftwatchError],
    headers: dict[str, str] | None = None,
) -> Any:
    """POST `body` as JSON; the answer's JSON (None for an empty or non-JSON answer).
    Any failure, including a non-2xx status, raises `error` with `where` and the cause."""
    try:
        response = client.post(url, json=body, headers=headers)
    except httpx.TimeoutException as exc:
        raise error(f"{where}: timed out ({type(exc).__name__})") from None
    except httpx.RemoteProtocolError:
        raise error(f"{where}: the answer is not HTTP") from None
    except httpx.InvalidURL:
        raise error(f"{where}: not a valid URL") from None
    except httpx.ConnectError as exc:
        raise error(f"{where}: unreachable ({_first_line(exc)})") from None
    except httpx.HTTPError as exc:
        raise error(f"{where}: {type(exc).__name__}: {_first_line(exc)}") from None
    if not response.is_success:
        raise error(f"{where}: HTTP {response.status_code} {response.reason_phrase}")
    try:
        return response.json() if response.content else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"


__all__ = ["describe_url", "make_client", "post_json"]
