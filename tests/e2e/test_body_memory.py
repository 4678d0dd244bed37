"""The memory bound of request bodies, on a real `broker serve` process: a huge form, streamed (chunked) the way
the attack review sent it (many fields of a mebibyte), is refused with 413 while the process stays its size."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from broker.store.embedded import free_port
from tests.cli import production_env, running_broker
from tests.conftest import vault_entry, vault_key

FIELD = b"a" * ((1 << 20) - 64)  # under the form parser's own limit per field (1 MiB)
FIELDS = 96  # 96 MiB in all: without the cap, the form parser holds every field at once


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM) so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def fields() -> Iterator[bytes]:
    yield b"grant_type=refresh_token"
    for number in range(FIELDS):
        yield b"&f%d=" % number
        for offset in range(0, len(FIELD), 1 << 16):
            yield FIELD[offset:offset + (1 << 16)]


def post_streamed(port: int, path: str) -> tuple[bytes, int]:
    """POST a chunked body on a raw socket while reading the answer; (the answer's head, bytes sent). Sending
    stops when the broker answers or closes the connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    answer = bytearray()

    def read() -> None:
        try:
            while b"\r\n\r\n" not in answer and (data := sock.recv(65536)):
                answer.extend(data)
        except OSError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent = 0
    try:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode())
        for chunk in fields():
            if answer:
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the broker closed the connection after answering: the rest was never read
    reader.join(timeout=30)
    sock.close()
    return bytes(answer).partition(b"\r\n\r\n")[0], sent


def test_a_huge_streamed_form_is_refused_without_the_process_growing(redis_url: str, keys_dir: Path,
                                                                      tmp_path: Path) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = production_env(redis_url, keys_dir, vault_entry(vault_key()), ISSUER=issuer, RATE_LIMITS="off")
    with running_broker("serve", "--host", "127.0.0.1", "--port", str(port), env=env, cwd=tmp_path) as broker:
        broker.wait_for(f"{issuer}/readyz")
        before = peak_rss_mib(broker.pid)
        head, sent = post_streamed(port, "/oauth/token")
        grown = peak_rss_mib(broker.pid) - before
        assert grown < 16, f"the broker grew by {grown:.0f} MiB for one request ({sent} bytes sent)"
        assert head.startswith(b"HTTP/1.1 413"), head
        assert broker.wait_for(f"{issuer}/healthz").status_code == 200
