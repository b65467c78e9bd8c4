"""A GET whose redirects we follow ourselves, so that two rules hold whatever HTTP client huggingface_hub
hands us (httpx under 1.x, httpx2 under 2.x, or a client factory the user installed):

- the token goes to the endpoint's origin only. Once a redirect leaves it (the Hub's CDN, an object store
  behind a signed URL) no Authorization header is sent again, not even if a later hop comes back;
- every hop is kept (status, X-Repo-Commit), so the caller can refuse a commit that contradicts the one
  it resolved: on the Hub the header sits on the 302 to the CDN, not on the CDN's answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from registry.errors import UpstreamError

REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_HOPS = 10
_DEFAULT_PORT = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) as browsers compare them: ``http://a`` and ``http://a:80`` are one origin."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORT.get(scheme, 0)


@dataclass(frozen=True)
class Hop:
    url: str
    status: int
    repo_commit: str | None
    authorized: bool  # whether this request carried the token


def _without_token(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != "authorization"}


@contextmanager
def stream_get(session: Any, url: str, headers: Mapping[str, str], *, token_origin: tuple[str, str, int],
               timeout: float) -> Iterator[tuple[Any, list[Hop]]]:
    """Open ``url`` for streaming, following up to MAX_HOPS redirects; yields the final response and
    the hops that led to it (the final one last). The token never leaves ``token_origin``."""
    hops: list[Hop] = []
    send = dict(headers)
    for _ in range(MAX_HOPS + 1):
        if origin(url) != token_origin:
            send = _without_token(send)  # and it stays dropped for every later hop
        with session.stream("GET", url, headers=send, follow_redirects=False, timeout=timeout) as response:
            location = response.headers.get("Location")
            hops.append(Hop(url, response.status_code, response.headers.get("X-Repo-Commit"),
                            any(k.lower() == "authorization" for k in send)))
            if response.status_code in REDIRECT_STATUS and location:
                response.read()  # a redirect's body is small; reading it lets the connection be reused
                url = urljoin(url, location)
                continue
            yield response, hops
            return
    # signed CDN URLs carry secrets: name only where the chain started and the host it ended on
    raise UpstreamError(
        f"{hops[0].url}: more than {MAX_HOPS} redirects (the last to {origin(url)[1]}); the server or its CDN loops",
        details={"url": hops[0].url},
    )
