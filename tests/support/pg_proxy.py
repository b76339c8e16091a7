"""A TCP proxy between lamin_nb and PostgreSQL that loses the reply to one COMMIT, for real.

It forwards everything and reads the frontend protocol as it goes. Once armed, the connection
that sends a statement containing ``after`` (by default the insert of a transaction's marker
row) is watched: its next Query (``Q``) or Parse (``P``) message holding ``COMMIT`` is
forwarded to the server, then the client's side is closed before any reply byte reaches it.
The server's reply is read and dropped; ``applied`` is set once it said ``COMMIT`` and was
ready again (the commit happened), then the server's side is closed too::

    proxy = CommitReplyLostProxy("127.0.0.1", 5432).start()
    ln.init(storage=..., db=proxy.url(pg_url))
    proxy.arm()
    ... a transaction commits: lamin_nb sees its connection drop during COMMIT ...
    assert proxy.applied.wait(10)

Only one COMMIT is cut per ``arm()``; every other connection and message passes through.
The proxied URL disables TLS and GSS encryption, or the stream could not be read.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from dataclasses import dataclass, field

from tests.support.proxy import PIECE, CountingProxy

SSL_REQUEST, GSS_REQUEST = 80877103, 80877104  # answered by the server with one byte
MARKER_INSERT = b"INSERT INTO lamin_transaction"


@dataclass
class _Framer:
    """Splits one direction of the stream into whole messages: (type byte or 0, bytes)."""

    untyped: bool  # the client's startup packets carry no type byte
    buf: bytearray = field(default_factory=bytearray)
    one_byte_answers: int = 0  # server side: replies to SSL or GSS requests still due

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        found = []
        while True:
            if self.one_byte_answers and self.buf:
                self.one_byte_answers -= 1
                found.append((self.buf[0], bytes(self.buf[:1])))
                del self.buf[:1]
                continue
            head = 4 if self.untyped else 5
            if len(self.buf) < head:
                return found
            (length,) = struct.unpack("!i", self.buf[head - 4 : head])
            size = length if self.untyped else length + 1
            if len(self.buf) < size:
                return found
            message = bytes(self.buf[:size])
            del self.buf[:size]
            found.append((0 if self.untyped else message[0], message))


@dataclass
class _Link:
    """One client connection: both framers and whether its COMMIT's reply is being lost."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    up: _Framer = field(default_factory=lambda: _Framer(untyped=True))
    down: _Framer = field(default_factory=lambda: _Framer(untyped=False))
    watched: bool = False
    cut: bool = False


class CommitReplyLostProxy(CountingProxy):
    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.after: bytes | None = None
        self.cut = threading.Event()  # the COMMIT went to the server, the client was cut
        self.applied = threading.Event()  # the server answered it: COMMIT, ready again
        self.replies: list[str] = []  # command tags the server sent after the cut

    def url(self, db_url: str) -> str:
        """``db_url`` through this proxy (its host and port replaced, encryption off)."""
        from sqlalchemy.engine import make_url

        url = make_url(db_url).set(host="127.0.0.1", port=self.port)
        url = url.update_query_dict({"sslmode": "disable", "gssencmode": "disable"})
        return url.render_as_string(hide_password=False)

    def arm(self, after: bytes = MARKER_INSERT) -> None:
        """Lose the reply to the next COMMIT of a connection that sent ``after``."""
        self.cut.clear()
        self.applied.clear()
        self.replies.clear()
        self.after = after

    # -- the loop ------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._client_to_server(reader, link),
            self._server_to_client(up_reader, link),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _client_to_server(self, reader: asyncio.StreamReader, link: _Link) -> None:
        try:
            while not link.cut and (data := await reader.read(PIECE)):
                for kind, message in link.up.feed(data):
                    if self._lose_reply(link, kind, message):
                        link.cut = True  # set first: not one reply byte gets through
                        link.client.transport.abort()
                    link.server.write(message)
                    self.upstream += len(message)
                    if link.cut:
                        await link.server.drain()
                        self.cut.set()
                        return
                await link.server.drain()
        except (ConnectionError, OSError):
            pass
        if not link.cut:
            link.server.transport.abort()

    def _lose_reply(self, link: _Link, kind: int, message: bytes) -> bool:
        if kind == 0:  # a startup packet: the next one, or typed messages, follow
            (code,) = struct.unpack("!i", message[4:8])
            if code in (SSL_REQUEST, GSS_REQUEST):
                link.down.one_byte_answers += 1
            else:
                link.up.untyped = False
            return False
        if kind not in (ord("Q"), ord("P")) or self.after is None:
            return False
        if not link.watched:
            link.watched = self.after in message
            return False
        if b"COMMIT" in message:
            self.after = None  # one cut per arm()
            return True
        return False

    async def _server_to_client(self, reader: asyncio.StreamReader, link: _Link) -> None:
        try:
            while data := await reader.read(PIECE):
                messages = link.down.feed(data)
                if not link.cut:
                    self.downstream += len(data)
                    link.client.write(data)
                    await link.client.drain()
                    continue
                for kind, message in messages:  # after the cut: read, never forwarded
                    if kind == ord("C"):
                        self.replies.append(message[5:].rstrip(b"\0").decode())
                    elif kind == ord("Z"):
                        if "COMMIT" in self.replies:
                            self.applied.set()
                        link.server.transport.abort()
                        return
        except (ConnectionError, OSError):
            pass
        link.client.transport.abort()
