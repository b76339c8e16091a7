"""A counting TCP proxy between lamin_nb and an S3 server: it counts the bytes that really go
to the server (not lamin_nb's own numbers) and can cut every connection, for real, mid-part.

Runs its own asyncio loop in a daemon thread of the test process::

    proxy = CountingProxy("127.0.0.1", 9000).start()
    ... point AWS_ENDPOINT_URL at proxy.endpoint ...
    proxy.upstream   # bytes sent to the server so far
    proxy.go_down()  # close every connection, refuse new ones
    proxy.rate = 2 << 20  # a slow uplink: 2 MiB/s for all connections together
    proxy.come_up()
    proxy.requests   # the request lines ("GET /bucket?list-type=2&..."), in order
"""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

from tests.support.servers import free_port

PIECE = 64 * 1024
# an HTTP/1.1 request line at the start of a read or after a CRLF (bodies in the tests are
# random bytes: a false match would need this exact text)
LIST_PARAMS = {
    "list-type", "prefix", "delimiter", "marker", "max-keys", "encoding-type", "start-after",
    "continuation-token", "fetch-owner",
}  # fmt: skip
REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/1\.[01]\r\n")


class CountingProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.upstream = 0  # client -> server bytes
        self.downstream = 0
        self.requests: list[str] = []  # "METHOD target" of each request seen, in order
        self.down = False
        self.cut_at: int | None = None  # go down once upstream reaches this
        self.rate: float | None = None  # bytes per second client -> server, all connections
        self._free_at = 0.0  # throttling: when the shared link is free again (loop time)
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._run, name="counting-proxy", daemon=True)
        self._ready = threading.Event()

    # -- control (any thread) ---------------------------------------------------------------

    def start(self) -> CountingProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def stop(self) -> None:
        self._call(self._close_all)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def reset(self) -> None:
        self.upstream = self.downstream = 0
        self.requests = []

    def list_requests(self, bucket: str) -> list[str]:
        """The object listings (ListObjects v1 or v2) of ``bucket`` seen so far: a GET on the
        bucket itself with only listing parameters (not ``?lifecycle``, ``?uploads``...)."""
        found = []
        for line in self.requests:
            method, _, target = line.partition(" ")
            path, _, query = target.partition("?")
            keys = {part.partition("=")[0] for part in query.split("&") if part}
            if method == "GET" and path.rstrip("/") == f"/{bucket}" and keys <= LIST_PARAMS:
                found.append(line)
        return found

    def go_down(self) -> None:
        """Close every open connection and refuse new ones (a dropped network)."""
        self.down = True
        self._call(self._close_all)

    def come_up(self) -> None:
        self.down = False
        self.cut_at = None

    def _call(self, fn: Any) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        self._server.close()

    def _close_all(self) -> None:
        for writer in list(self._writers):
            transport = writer.transport
            if transport is not None:
                transport.abort()  # RST: the client sees the connection drop mid-request
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer, upstream=True),
            self._pipe(up_reader, writer, upstream=False),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool
    ) -> None:
        try:
            while data := await reader.read(PIECE):
                if self.down:
                    break
                if upstream:
                    if self.cut_at is not None and self.upstream + len(data) >= self.cut_at:
                        self.go_down_now()
                        break
                    self.upstream += len(data)
                    self.requests += [
                        f"{m.group(1).decode()} {m.group(2).decode()}"
                        for m in REQUEST_LINE.finditer(data)
                    ]
                    await self._throttle(len(data))
                else:
                    self.downstream += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def _throttle(self, nbytes: int) -> None:
        """A slow uplink, shared by every connection (parts in parallel do not add up)."""
        if not self.rate:
            return
        now = self._loop.time()
        self._free_at = max(self._free_at, now) + nbytes / self.rate
        await asyncio.sleep(self._free_at - now)

    def go_down_now(self) -> None:
        """From inside the loop: the network drops here and now."""
        self.down = True
        self._close_all()
