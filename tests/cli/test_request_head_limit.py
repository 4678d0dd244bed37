"""The served HTTP stack refuses a request head over MAX_HEAD_BYTES (httptools alone reads heads of any size), and
never mistakes a body for headers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from broker.bounded_http import BoundedHttpToolsProtocol
from broker.serving import MAX_HEAD_BYTES, uvicorn_config
from broker.store.embedded import free_port


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    answer = str(size).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    chosen = free_port()
    server = uvicorn.Server(uvicorn_config(_app, "127.0.0.1", chosen))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield chosen
    server.should_exit = True
    thread.join(timeout=10)


def _exchange(port: int, *chunks: bytes) -> bytes:
    """Send the chunks one after another (each its own write) and read until the server closes or answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for chunk in chunks:
            try:
                conn.sendall(chunk)
            except OSError:  # the server closed the connection after refusing: its answer is still to read
                break
            time.sleep(0.01)
        answer = b""
        while b"\r\n\r\n" not in answer or not _complete(answer):
            data = conn.recv(65536)
            if not data:
                break
            answer += data
        return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    lengths = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    length = lengths[0] if lengths else 0
    return len(body) >= length


def _head(extra: bytes = b"", method: bytes = b"GET", body: bytes = b"") -> bytes:
    length = b"content-length: %d\r\n" % len(body) if body else b""
    return b"%s / HTTP/1.1\r\nhost: broker.test\r\n%s%s\r\n%s" % (method, length, extra, body)


def test_the_server_uses_the_bounded_protocol() -> None:
    assert uvicorn_config(_app, "127.0.0.1", 0).http is BoundedHttpToolsProtocol


def test_a_head_under_the_cap_is_served(port: int) -> None:
    cookies = b"".join(b"cookie: c%d=%s\r\n" % (n, b"v" * 1000) for n in range(20))  # ~20 KiB in 20 lines
    assert _exchange(port, _head(cookies)).startswith(b"HTTP/1.1 200")


def test_a_head_over_the_cap_is_refused_with_431_in_one_piece_or_dripped(port: int) -> None:
    big = b"x-big: " + b"a" * (MAX_HEAD_BYTES + 1024) + b"\r\n"
    answer = _exchange(port, _head(big))
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
    assert answer.endswith(b"over %d bytes.\n" % MAX_HEAD_BYTES) and b"connection: close" in answer
    many = [b"GET / HTTP/1.1\r\nhost: broker.test\r\n"] + [b"x-h%d: %s\r\n" % (n, b"b" * 4000) for n in range(12)]
    answer = _exchange(port, *many, b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
    # One field that never ends, a KiB at a time: refused before it is whole.
    endless = [b"GET / HTTP/1.1\r\nhost: broker.test\r\nx-endless: "] + [b"c" * 1024] * (MAX_HEAD_BYTES // 1024 + 8)
    answer = _exchange(port, *endless)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]


def test_a_body_is_never_counted_as_head(port: int) -> None:
    body = b"f=" + b"z" * (3 * MAX_HEAD_BYTES)
    answer = _exchange(port, _head(method=b"POST", body=body))  # the head and the whole body in one write
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(str(len(body)).encode())
    # Two requests on one connection (pipelined), the second's head begun in the write of the first's body and
    # finished a moment later: the read that ends the first request is not the second's head.
    second = _head()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(_head(method=b"POST", body=b"y" * (3 * MAX_HEAD_BYTES)) + second[:20])
        time.sleep(0.1)
        conn.sendall(second[20:])
        answers = b""
        while answers.count(b"HTTP/1.1 200") < 2:
            data = conn.recv(65536)
            assert data, answers
            answers += data
    assert b"431" not in answers
