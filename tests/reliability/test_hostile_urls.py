"""Hostile URLs against a running ``registry serve`` (issue 12): traversal in every path segment (plain, encoded,
double-encoded, backslashed, overlong UTF-8), overlong paths, odd methods, malformed and huge headers, Range
variants, bad tokens, HEAD beside GET. Every answer must be a 2xx/3xx/4xx (or, for a request the HTTP parser
cannot read, a closed connection), no traceback in the server's log, never a 500, and never a byte from outside
the store: a 2xx file body is always bytes of a file of the repo."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.reliability.mirror_helpers import raw_request, registry_serve
from tests.serve_helpers import add_registered, make_tiny_repo

REPO = "acme/tiny"
PRIVATE = "acme/private"
TOKEN = "tok-" + "g" * 20
SECRET = b"SECRET-OUTSIDE-THE-STORE-7f3a9c"

TRAVERSALS = ["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "..%2f..%2f..%2fsecret.txt",
              "%2e%2e%2f%2e%2e%2fsecret.txt", "..%5c..%5csecret.txt", "%2e%2e%5csecret.txt", "..\\..\\secret.txt",
              "%c0%ae%c0%ae", "%c0%af", "%e0%80%ae", "....%2f%2f", "..;", ".", "%2e", "", "%2f", "%252f", "~",
              "%2fetc%2fpasswd", "%00", "secret.txt%00.json", "%25", "%u002e%u002e", "a" * 300]


def _templates() -> list[tuple[str, list[str]]]:
    """(method, segments) with '{}' where a hostile segment goes."""
    resolve = ["acme", "tiny", "resolve", "main", "1_Pooling", "config.json"]
    info = ["api", "models", "acme", "tiny", "revision", "main"]
    tree = ["api", "models", "acme", "tiny", "tree", "main", "1_Pooling"]
    pinfo = ["api", "models", "acme", "tiny", "paths-info", "main"]
    refs = ["api", "models", "acme", "tiny", "refs"]
    ui = ["ui", "models", "acme", "tiny"]
    out = []
    for method, segs, positions in (("GET", resolve, range(6)), ("HEAD", resolve, range(6)), ("GET", info, (2, 3, 5)),
                                    ("GET", tree, (2, 3, 5, 6)), ("POST", pinfo, (2, 3, 5)), ("GET", refs, (2, 3)),
                                    ("GET", ui, (2, 3))):
        for i in positions:
            out.append((method, segs[:i] + ["{}"] + segs[i + 1:]))
    return out


def _cases(private_commit: str) -> list[tuple[str, bytes, bool]]:
    """(name, raw request bytes, may the connection close unanswered)."""
    cases: list[tuple[str, bytes, bool]] = []

    def req(method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"",
            closes: bool = False) -> None:
        head = {"Host": "127.0.0.1", "Connection": "close", **(headers or {})}
        if body:
            head["Content-Length"] = str(len(body))
        raw = f"{method} {target} HTTP/1.1\r\n".encode("latin-1") + b"".join(
            f"{k}: {v}\r\n".encode("latin-1") for k, v in head.items()) + b"\r\n" + body
        cases.append((f"{method} {target[:80]} {str(headers)[:60]}", raw, closes))

    for method, segs in _templates():
        for bad in TRAVERSALS:
            target = "/" + "/".join(segs).replace("{}", bad)
            if method == "POST":
                req("POST", target, {"Content-Type": "application/x-www-form-urlencoded"}, b"paths=config.json")
            else:
                req(method, target)
    # whole-path traversals and overlong paths
    for target in ["/acme/tiny/resolve/main/../../../../secret.txt", "/acme/tiny/resolve/main/..%2f..%2f..%2fsecret.txt",
                   "/../../secret.txt", "/%2e%2e/%2e%2e/secret.txt", "/acme/tiny/resolve/main//etc/passwd",
                   "/acme/tiny/resolve/main/%2fetc%2fpasswd", "/acme/tiny/resolve/main/1_Pooling/../config.json",
                   "/acme/tiny/resolve/main/./config.json", "/acme/tiny/resolve/main/config.json/",
                   "/acme/tiny/resolve/main\\config.json", "/acme/tiny/resolve/main/%5c..%5c..%5csecret.txt",
                   "/api/models/../../secret.txt", "/api/models/acme/tiny/tree/main/..%2f..",
                   "/api/models/acme/tiny/tree/main/%2e%2e/%2e%2e", "/api/datasets/../models/acme/tiny",
                   "/datasets/acme/tiny/resolve/main/config.json", "/spaces/../acme/tiny/resolve/main/config.json",
                   "/" + "a/" * 2000 + "config.json", "/acme/tiny/resolve/main/" + "x" * 8000,
                   "/api/models/" + "%00" * 2000, "/acme/tiny/resolve/" + "%ff" * 1000 + "/config.json",
                   "/acme/tiny/resolve/main/config.json?" + "a=b&" * 2000, "/ui/../secret.txt", "/ui/%2e%2e/secret.txt",
                   "/ui?q=%00", "/ui/models/acme/tiny@%00", "/ui/models/..%2f..%2fsecret.txt", "*",
                   "http://evil.example/acme/tiny/resolve/main/config.json", "//acme/tiny/resolve/main/config.json",
                   "/api/models/acme/tiny/revision/refs%2fpr%2f..%2f..%2f..", "/api/agent-harnesses/../../secret.txt"]:
        for method in ("GET", "HEAD"):
            req(method, target, closes=target == "*")
    # odd methods on every route kind
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO", "get", "M" * 100):
        for target in ("/acme/tiny/resolve/main/config.json", "/api/models/acme/tiny", "/api/models/acme/tiny/refs",
                       "/api/models/acme/tiny/paths-info/main", "/ui"):
            req(method, target, body=b"x" if method in ("PUT", "PATCH") else b"", closes=method in ("get", "M" * 100))
    # malformed and huge headers
    good = "/acme/tiny/resolve/main/config.json"
    for headers, closes in (({"X-Big": "v" * 60_000}, True), ({"X-" + "k" * 10_000: "v"}, True),
                            ({f"X-{i}": "v" for i in range(500)}, True), ({"Content-Length": "-1"}, True),
                            ({"Content-Length": "9" * 30}, True), ({"Transfer-Encoding": "chunked, identity"}, True),
                            ({"Host": "\xff\xfe"}, False), ({"Accept-Encoding": "gzip;q=" + "9" * 5000}, False),
                            ({"If-None-Match": '"' + "a" * 5000 + '"'}, False), ({"Cookie": "a=" + "b" * 5000}, False),
                            ({"Expect": "100-continue"}, False), ({"Connection": "keep-alive, upgrade",
                                                                    "Upgrade": "h2c"}, True)):
        for method in ("GET", "HEAD"):
            req(method, good, headers, closes=closes)
    cases.append(("no host, HTTP/1.0", b"GET " + good.encode() + b" HTTP/1.0\r\n\r\n", False))
    cases.append(("HTTP/2.0 request line", b"GET " + good.encode() + b" HTTP/2.0\r\n\r\n", True))
    cases.append(("NUL in a header", b"GET " + good.encode() + b" HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", True))
    cases.append(("no colon", b"GET " + good.encode() + b" HTTP/1.1\r\nHost: x\r\nbroken\r\n\r\n", True))
    cases.append(("bare LF", b"GET " + good.encode() + b" HTTP/1.1\nHost: x\n\n", True))
    cases.append(("space in target", b"GET /acme/tiny/resolve/main/con fig.json HTTP/1.1\r\nHost: x\r\n\r\n", True))
    cases.append(("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", True))
    # Range variants
    for rng in ("bytes=0-0", "bytes=-1", "bytes=0-", "bytes=5-2", "bytes=-0", "bytes=0-1,2-3", "bytes=" + "9" * 5000 + "-",
                "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000, "bytes=a-b", "bytes=--1", "bytes=1--2", "bytes=0x10-",
                "bytes=1e3-", "bytes= 1 - 2 ", "bytes=0-1\x0b", "Bytes=0-1", "bytes=" + ",".join(["0-1"] * 2000),
                "items=0-1", "", "bytes=", "bytes=-", "bytes=99999999999999999999-", "bytes=\xb2-\xb3"):
        for method in ("GET", "HEAD"):
            req(method, good, {"Range": rng})
    # tokens: the private repo answers 401 whatever the bad token, the same as a repo that does not exist
    for auth in ("Bearer", "Bearer ", "Bearer " + "a" * 10_000, "Basic " + "YTpi", "Bearer wrong-token-123",
                 "bearer " + TOKEN + "x", "Bearer " + TOKEN[:-1], "Bearer\t" + TOKEN + "\t\t", "Token " + TOKEN,
                 "Bearer " + TOKEN + " extra", "Bearer \xff\xfe", "", "Bearer " + "%00" * 10):
        for target in (f"/{PRIVATE}/resolve/main/config.json", f"/api/models/{PRIVATE}", "/api/models/acme/absent",
                       f"/{PRIVATE}/resolve/{private_commit}/config.json"):
            for method in ("GET", "HEAD"):
                req(method, target, {"Authorization": auth})
    return cases


@pytest.fixture
def hostile_server(reg, registry_env, tmp_path):
    folder = make_tiny_repo(tmp_path / "tiny", big=False)
    add_registered(reg, folder, REPO)
    private = make_tiny_repo(tmp_path / "private", big=False, seed=1)
    private_commit = add_registered(reg, private, PRIVATE)
    for where in (tmp_path, tmp_path / "home", tmp_path / "home" / "store"):
        if where.is_dir():
            (where / "secret.txt").write_bytes(SECRET)
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'protected = ["{PRIVATE}"]\n[[tokens]]\nname = "nodes"\ntoken = "{TOKEN}"\n'
                      f'read = ["{PRIVATE}"]\n')
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    files.update({p.relative_to(private).as_posix(): p.read_bytes() for p in private.rglob("*") if p.is_file()})
    with registry_serve(registry_env, tmp_path / "serve.log", "--token-file", str(tokens)) as srv:
        yield srv, files, private_commit


def test_hostile_urls_never_500_never_leave_the_store(hostile_server, trials):
    srv, files, private_commit = hostile_server
    t = trials("hostile: url")
    blobs = list(files.values())
    statuses: dict[int | None, int] = {}
    for name, raw, may_close in _cases(private_commit):
        reply = raw_request(srv.port, raw)
        status = reply.status if reply is not None else None
        statuses[status] = statuses.get(status, 0) + 1
        if reply is None:
            t.record(f"{name}: closed unanswered", may_close)
            continue
        ok = 200 <= reply.status < 500 and SECRET not in reply.body and b"SQLite format" not in reply.body
        if ok and reply.status in (200, 206) and b"/resolve/" in raw.split(b"\r\n", 1)[0] and reply.body:
            ok = any(reply.body in data for data in blobs)  # only bytes of the repo's own files
        if ok and b"/private/" in raw.split(b"\r\n", 1)[0] and b"Authorization: Bearer " + TOKEN.encode() + b"\r\n" \
                not in raw:
            ok = reply.status in (401, 404)
        t.record(f"{name} -> {reply.status}", ok)
    # the good token still works, and the server still answers plain requests after all of that
    for target in (f"/acme/private/resolve/{private_commit}/config.json", "/acme/tiny/resolve/main/config.json"):
        reply = raw_request(srv.port, f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                            "Connection: close\r\n\r\n".encode())
        t.record(f"afterwards {target}", reply is not None and reply.status == 200
                 and hashlib.sha256(reply.body).hexdigest() in {hashlib.sha256(b).hexdigest() for b in blobs})
    log = srv.log()
    t.record("no traceback in the log", "Traceback" not in log and "Exception in ASGI" not in log)
    t.record("no 500 in the access log", not re.search(r'" 5\d\d\b', log))
    assert t.tried > 500
    assert t.escaped == [], (t.escaped[:30], statuses, log[-4000:])
