"""registry.fetch.redirects: the token stays with the endpoint's origin through a chain of redirects, on
huggingface_hub's own HTTP session (httpx under 1.x, httpx2 under 2.x), against real servers on two hosts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from registry.fetch.redirects import origin, stream_get

pytestmark = pytest.mark.hubclient


class _Hop(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    routes: dict[str, str] = {}  # path -> Location ("": a 302 without one); a path not listed answers 200 "ok"
    seen: list[tuple[str, str, str | None]] = []  # (host, path, Authorization)

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append((self.server.server_address[0], self.path, self.headers.get("Authorization")))
        target = self.routes.get(self.path)
        self.send_response(200 if target is None else 302)
        if target:
            self.send_header("Location", target)
        self.send_header("Content-Length", "2" if target is None else "0")
        self.end_headers()
        if target is None:
            self.wfile.write(b"ok")


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str]]:
    servers = [ThreadingHTTPServer((host, 0), _Hop) for host in ("127.0.0.1", "127.0.0.2")]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    _Hop.seen = []
    try:
        yield tuple(f"http://{s.server_address[0]}:{s.server_address[1]}" for s in servers)  # type: ignore[misc]
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def test_token_never_follows_a_redirect_away_nor_comes_back(two_hosts):
    from huggingface_hub.utils import get_session

    home, away = two_hosts
    _Hop.routes = {"/start": f"{away}/hop", "/hop": f"{home}/final"}
    with stream_get(get_session(), f"{home}/start", {"authorization": "Bearer t0ken", "X-Other": "kept"},
                    token_origin=origin(home), timeout=10) as (response, hops):
        assert response.status_code == 200 and response.read() == b"ok"
    assert [h.status for h in hops] == [302, 302, 200]
    assert [h.authorized for h in hops] == [True, False, False]
    assert [(path, auth) for _, path, auth in _Hop.seen] == [("/start", "Bearer t0ken"), ("/hop", None),
                                                            ("/final", None)]


def test_token_follows_a_redirect_within_the_origin(two_hosts):
    from huggingface_hub.utils import get_session

    home, _ = two_hosts
    _Hop.routes = {"/start": "/moved"}  # relative: a repo rename on the same server
    with stream_get(get_session(), f"{home}/start", {"Authorization": "Bearer t0ken"},
                    token_origin=origin(home), timeout=10) as (response, hops):
        assert response.read() == b"ok"
    assert [auth for _, _, auth in _Hop.seen] == ["Bearer t0ken", "Bearer t0ken"]


@pytest.mark.parametrize(("a", "b", "same"), [
    ("http://h", "http://h:80/x", True),
    ("https://H.example", "https://h.example:443", True),
    ("http://h:8080", "http://h:8081", False),
    ("http://h", "https://h", False),
    ("http://127.0.0.1:5", "http://localhost:5", False),  # by name, as browsers and httpx compare
])
def test_origin(a, b, same):
    assert (origin(a) == origin(b)) is same


def test_a_redirect_without_location_is_not_taken_for_the_file(two_hosts):
    from registry.errors import UpstreamError
    from registry.fetch.hub import HubClient, RemoteFile

    home, _ = two_hosts
    commit = "a" * 40
    _Hop.routes = {f"/o/r/resolve/{commit}/f.json": ""}

    class Sink:
        offset = 0

        def write(self, chunk: bytes) -> None:
            raise AssertionError("a 302's body is not the file")

        def restart(self) -> None:
            pass

    with pytest.raises(UpstreamError, match="HTTP 302"):
        HubClient(home, retries=0).download("o/r", commit, RemoteFile("f.json", 2, "b" * 40), Sink())
