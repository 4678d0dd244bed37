"""uvicorn's httptools protocol with a cap on a request's head, which httptools does not have.

h11 refuses a request line and headers over `h11_max_incomplete_event_size`; httptools (llhttp) reads a head of
any size, so a client could make a worker hold megabytes per connection before the broker sees a thing. Here a
request whose line and headers pass MAX_HEAD_BYTES is answered `431 Request Header Fields Too Large` and its
connection closed, before any of it reaches the app. Two counts: the URL and the header fields as the parser
hands them over (exact, for a head that arrives whole), and the bytes of every read that ends with the head
still open (for one that trickles in or holds a single endless field). A read in which the request before
ended is not counted (it may hold that request's body): with pipelining a head may take one read more than
the cap. See decision 0012.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from broker.serving import MAX_HEAD_BYTES

_MESSAGE = f"The request's line and headers are over {MAX_HEAD_BYTES} bytes.\n".encode()
_REFUSAL = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_MESSAGE), _MESSAGE))


class HeadTooLarge(Exception):
    """Raised inside a parser callback: httptools stops parsing and uvicorn answers the request as malformed."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_open = True  # between a message's first byte (or the connection's) and its headers' end
        self._fields = 0  # bytes of the URL and the complete header fields of the current head
        self._reads = 0  # bytes of the reads that ended inside the current head
        self._refused = False
        self._previous_ended = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open, self._fields, self._reads = True, 0, 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._previous_ended = True
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self._fields += size
        if self._fields > MAX_HEAD_BYTES:
            self._refused = True
            raise HeadTooLarge

    def data_received(self, data: bytes) -> None:
        self._previous_ended = False
        super().data_received(data)
        if not self._head_open or self._previous_ended or self.transport.is_closing():
            return
        self._reads += len(data)
        if self._reads > MAX_HEAD_BYTES:
            self._refused = True
            self.send_400_response("")

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)
            return
        self.logger.warning("Request head over %d bytes: refused with 431.", MAX_HEAD_BYTES)
        self.transport.write(_REFUSAL)
        self.transport.close()
