"""A tiny OTLP/HTTP receiver on loopback: answers 200 to every POST and counts what it got.

Enough for the OpenTelemetry SDK's ``http/protobuf`` exporter (``/v1/traces``,
``/v1/metrics``, ``/v1/logs``): the tracing cost measured is the cost of
producing and exporting spans, not of storing them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field

MAX_BODY = 64 * 1024 * 1024
KEPT_TRACE_BYTES = 128 * 1024 * 1024
"""Trace bodies kept for counting spans afterwards; beyond that, spans are extrapolated."""
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass
class OtlpReceiver:
    host: str = "127.0.0.1"
    posts: Counter[str] = field(default_factory=Counter)
    """POSTs received, by path."""
    received: Counter[str] = field(default_factory=Counter)
    """Body bytes received, by path."""
    _server: asyncio.Server | None = None
    _traces: list[bytes] = field(default_factory=list)
    _kept: int = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> OtlpReceiver:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request on a keep-alive connection; False when the peer is done."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path = [*lines[0].split(" "), "", ""][:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            size = await _read_chunked(reader)
        else:
            length = int(headers.get("content-length", "0") or 0)
            if length > MAX_BODY:
                writer.write(BAD)
                await writer.drain()
                return False
            body = await reader.readexactly(length)
            size = length
            if path == "/v1/traces" and self._kept + size <= KEPT_TRACE_BYTES:
                self._traces.append(body)
                self._kept += size
        if method == "POST":
            self.posts[path] += 1
            self.received[path] += size
        writer.write(OK)
        await writer.drain()
        return headers.get("connection", "").lower() != "close"

    def spans(self) -> int | None:
        """Spans received (decoded after the fact; None without ``opentelemetry-proto``)."""
        try:
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                ExportTraceServiceRequest,
            )
        except ImportError:
            return None
        counted = 0
        for body in self._traces:
            request = ExportTraceServiceRequest.FromString(body)
            counted += sum(
                len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans
            )
        total = self.received["/v1/traces"]
        if not self._kept or self._kept == total:
            return counted
        return round(counted * total / self._kept)

    @property
    def total_bytes(self) -> int:
        return sum(self.received.values())


async def _read_chunked(reader: asyncio.StreamReader) -> int:
    total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return total
        if total + size > MAX_BODY:
            raise ConnectionError("body too large")
        await reader.readexactly(size + 2)
        total += size
