"""A bare AMQP 0-9-1 publisher for the push latency benchmark: frames encoded before the clock
starts, written to a plain socket on a schedule, publisher confirms counted by a reader thread.

aio-pika spends 70-90 us of CPU per publish on this kind of machine (measured): at 15,000
messages/s that is a whole core taken from the daemon under test. Writing frames encoded
beforehand costs about a microsecond a message, so the machine is left to the broker, the
daemon and Postgres, which are what the benchmark measures.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from pamqp import body, commands, frame, header
from pamqp.heartbeat import Heartbeat

FRAME_END = 0xCE
HEADER = struct.Struct(">BHI")  # type, channel, size
CHANNEL = 1
HANDSHAKE_TIMEOUT_S = 10.0


class PublishError(Exception):
    """The broker refused the connection or closed it."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int
    user: str
    password: str
    vhost: str

    @classmethod
    def parse(cls, url: str) -> Address:
        parts = urlsplit(url)
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        return cls(parts.hostname or "localhost", parts.port or 5672,
                   unquote(parts.username or "guest"), unquote(parts.password or "guest"), vhost)


def publish_frames(exchange: str, routing_key: str, payload: bytes, message_id: str,
                   headers: Mapping[str, Any], content_type: str = "application/json") -> bytes:
    """One persistent message (basic.publish, its content header and body) as bytes."""
    props = commands.Basic.Properties(content_type=content_type, delivery_mode=2,
                                      message_id=message_id, headers=dict(headers))
    return (frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=routing_key),
                          CHANNEL)
            + frame.marshal(header.ContentHeader(0, len(payload), props), CHANNEL)
            + frame.marshal(body.ContentBody(payload), CHANNEL))


class RawPublisher:
    """One connection, one channel in confirm mode. `send` writes encoded messages (see
    publish_frames); confirms arrive on a reader thread (`confirmed`, `nacked`)."""

    def __init__(self, url: str) -> None:
        self.address = Address.parse(url)
        self.sock: socket.socket | None = None
        self.sent = 0
        self.confirmed = 0   # every delivery tag up to this one is settled (ack or nack)
        self.nacked = 0
        self.error: str | None = None
        self._above: set[int] = set()  # single acks above `confirmed`
        self._buffer = b""
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def connect(self) -> None:
        a = self.address
        sock = socket.create_connection((a.host, a.port), timeout=HANDSHAKE_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        sock.sendall(frame.marshal(header.ProtocolHeader(), 0))
        self._expect(commands.Connection.Start)
        self._write(commands.Connection.StartOk(
            client_properties={"product": "feed-worker push latency benchmark",
                               "capabilities": {"publisher_confirms": True}},
            mechanism="PLAIN", response=f"\0{a.user}\0{a.password}"))
        tune = self._expect(commands.Connection.Tune)
        assert isinstance(tune, commands.Connection.Tune)
        self._write(commands.Connection.TuneOk(channel_max=tune.channel_max,
                                               frame_max=tune.frame_max, heartbeat=0))
        self._write(commands.Connection.Open(virtual_host=a.vhost))
        self._expect(commands.Connection.OpenOk)
        self._write(commands.Channel.Open(), CHANNEL)
        self._expect(commands.Channel.OpenOk)
        self._write(commands.Confirm.Select(), CHANNEL)
        self._expect(commands.Confirm.SelectOk)
        sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_confirms, name="confirms",
                                        daemon=True)
        self._reader.start()

    def send(self, data: bytes, messages: int) -> None:
        if self.error is not None:
            raise PublishError(self.error)
        assert self.sock is not None
        self.sock.sendall(data)
        self.sent += messages

    def wait_confirmed(self, deadline_s: float) -> bool:
        """True once every message sent is confirmed (or nacked), False at the deadline."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.confirmed >= self.sent or self.error is not None:
                return self.confirmed >= self.sent
            time.sleep(0.005)
        return False

    def close(self) -> None:
        if self.sock is None:
            return
        try:
            self._write(commands.Connection.Close(reply_code=200, reply_text="done", class_id=0,
                                                   method_id=0))
            if self._reader is not None:
                self._reader.join(2.0)
        except OSError:
            pass
        finally:
            self.sock.close()
            self.sock = None

    # -- frames -----------------------------------------------------------------------------

    def _write(self, value: Any, channel: int = 0) -> None:
        assert self.sock is not None
        self.sock.sendall(frame.marshal(value, channel))

    def _frame(self) -> Any:
        """The next frame read from the socket (blocking)."""
        assert self.sock is not None
        while True:
            if len(self._buffer) >= HEADER.size:
                _, _, size = HEADER.unpack_from(self._buffer)
                end = HEADER.size + size + 1
                if len(self._buffer) >= end:
                    if self._buffer[end - 1] != FRAME_END:
                        raise PublishError("malformed frame from the broker")
                    _, _, value = frame.unmarshal(self._buffer[:end])
                    self._buffer = self._buffer[end:]
                    return value
            chunk = self.sock.recv(65536)
            if not chunk:
                raise PublishError("the broker closed the connection")
            self._buffer += chunk

    def _expect(self, kind: type) -> Any:
        while True:
            value = self._frame()
            if isinstance(value, kind):
                return value
            if isinstance(value, (commands.Connection.Close, commands.Channel.Close)):
                raise PublishError(f"{value.reply_code} {value.reply_text}")
            if not isinstance(value, Heartbeat):
                raise PublishError(f"expected {kind.__name__}, got {type(value).__name__}")

    def _read_confirms(self) -> None:
        try:
            while True:
                value = self._frame()
                if isinstance(value, (commands.Basic.Ack, commands.Basic.Nack)):
                    self._settle(value.delivery_tag, value.multiple,
                                 isinstance(value, commands.Basic.Nack))
                elif isinstance(value, (commands.Connection.Close, commands.Channel.Close)):
                    self.error = f"closed by the broker: {value.reply_code} {value.reply_text}"
                    return
                elif isinstance(value, commands.Connection.CloseOk):
                    return
        except (OSError, PublishError) as exc:
            if self.sock is not None and self.error is None:
                self.error = f"{type(exc).__name__}: {exc}"

    def _settle(self, tag: int, multiple: bool, nack: bool) -> None:
        with self._lock:
            if multiple:
                if nack:
                    self.nacked += tag - self.confirmed - sum(1 for t in self._above if t <= tag)
                self.confirmed = max(self.confirmed, tag)
                self._above = {t for t in self._above if t > tag}
            else:
                if nack:
                    self.nacked += 1
                self._above.add(tag)
            while self.confirmed + 1 in self._above:
                self.confirmed += 1
                self._above.discard(self.confirmed)
