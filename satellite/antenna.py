"""``Antenna``: a client program's handle on the office, through any node.

    antenna = Antenna("127.0.0.1", 8000)

    @antenna.on("door")                 # callback(payload, data) or callback(payload)
    def rang(payload, data): ...

    antenna.publish("door", {"who": "courier"})
    antenna.members()                    # [{"node", "addr", "status"}, ...]
    antenna.topology()                   # the node's actor tree and overlay views
    antenna.start()                      # a background thread; watch() blocks; stop()

``data`` is what comes with the event: its name, the node it came from and its id
(the office state joins it when the State actor lands).
"""

from __future__ import annotations

import inspect
import itertools
import socket
import threading
from collections.abc import Callable
from typing import Any

import msgpack
from loguru import logger

from protocols import link, wire


class AntennaError(Exception):
    """Base of the Antenna's errors."""


class NodeUnreachable(AntennaError):
    pass


class HandshakeRefused(AntennaError):
    pass


def _arity(callback: Callable) -> int:
    """How many of (payload, data) the callback takes: its required positional
    parameters (``lambda p, who=name: ...`` takes one), or both with ``*args``."""
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    required = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return min(2, len(required))


class Antenna:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        timeout: float = 5.0,
        client: str = "antenna",
    ) -> None:
        self.host, self.port, self.timeout, self.client = host, port, timeout, client
        self.callbacks: dict[str, list[Callable]] = {}
        self._sock: socket.socket | None = None
        self._decoder = wire.FrameDecoder()
        self._lock = threading.Lock()  # one writer at a time
        self._replies: dict[int, Any] = {}
        self._reply_ready = threading.Condition()
        self._req = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.node: str | None = None

    # -- connection -----------------------------------------------------------------------

    def connect(self) -> Antenna:
        if self._sock is not None:
            return self
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise NodeUnreachable(f"node {self.host}:{self.port} unreachable: {exc}") from None
        self._sock = sock
        self._decoder = wire.FrameDecoder()
        self._write(link.ClientHello(link.PROTOCOL_VERSION, self.client))
        first = self._read_one()
        if type(first) is link.Refused:
            self.close()
            raise HandshakeRefused(f"node refused the handshake: {first.reason}")
        if type(first) is not link.Welcome:
            self.close()
            raise HandshakeRefused(f"unexpected answer to the handshake: {type(first).__name__}")
        self.node = first.node
        if self.callbacks:
            self._write(link.Subscribe(tuple(self.callbacks)))
        return self

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _write(self, msg: Any) -> None:
        if self._sock is None:
            raise NodeUnreachable("not connected")
        frame = wire.encode(msg)
        with self._lock:
            try:
                self._sock.sendall(frame)
            except OSError as exc:
                raise NodeUnreachable(f"node {self.host}:{self.port} went away: {exc}") from None

    def _read_one(self) -> Any:
        while True:
            pending = getattr(self, "_pending_msgs", None)
            if pending:
                return pending.pop(0)
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                raise NodeUnreachable("node did not answer in time") from None
            except OSError as exc:
                raise NodeUnreachable(f"node {self.host}:{self.port} went away: {exc}") from None
            if not data:
                raise NodeUnreachable(f"node {self.host}:{self.port} closed the connection")
            try:
                self._pending_msgs = self._decoder.feed(data)
            except wire.WireError as exc:
                raise AntennaError(f"node sent a frame we cannot read: {exc}") from None

    # -- subscribing and publishing -------------------------------------------------------

    def on(self, name: str) -> Callable[[Callable], Callable]:
        """Decorator: call the function for every event ``name`` (``"*"`` for all)."""

        def register(callback: Callable) -> Callable:
            first = name not in self.callbacks
            self.callbacks.setdefault(name, []).append(callback)
            if first and self._sock is not None:
                self._write(link.Subscribe(tuple(self.callbacks)))
            return callback

        return register

    def publish(self, name: str, payload: Any = None) -> None:
        """Broadcast an event through the whole office."""
        self.connect()
        data = msgpack.packb(payload, use_bin_type=True)
        self._request(link.Publish(next(self._req), name, data))

    def set(self, name: str, value: Any) -> None:
        """Set an office target (``lights`` -> ``"on"``); returns once it is durable on
        this node. Every node's clients subscribed to ``name`` get it as an event."""
        self.connect()
        data = msgpack.packb(value, use_bin_type=True)
        self._request(link.SetTarget(next(self._req), name, data))

    def state(self) -> dict:
        """The office state as this node has it: ``targets`` and ``members``."""
        return self._ask("state")

    def members(self) -> list[dict]:
        return self._ask("members")

    def topology(self) -> dict:
        return self._ask("topology")

    def _ask(self, what: str) -> Any:
        self.connect()
        return self._request(link.Request(next(self._req), what))

    def _request(self, msg: Any) -> Any:
        self._write(msg)
        if self._thread is not None and self._thread.is_alive():
            # The background loop reads; wait for it to hand us the reply.
            with self._reply_ready:
                ok = self._reply_ready.wait_for(lambda: msg.req in self._replies, self.timeout)
                if not ok:
                    raise NodeUnreachable("node did not answer in time")
                reply = self._replies.pop(msg.req)
        else:
            while True:
                frame = self._read_one()
                if type(frame) is link.Reply and frame.req == msg.req:
                    reply = frame
                    break
                self._dispatch(frame)
        body = msgpack.unpackb(reply.body, raw=False)
        if not reply.ok:
            raise AntennaError(str(body))
        return body

    # -- receiving ------------------------------------------------------------------------

    def _dispatch(self, frame: Any) -> None:
        if type(frame) is link.Reply:
            with self._reply_ready:
                self._replies[frame.req] = frame
                self._reply_ready.notify_all()
            return
        if type(frame) is not link.Delivery:
            return
        payload = msgpack.unpackb(frame.data, raw=False)
        data = {"event": frame.name, "origin": frame.origin, "id": frame.id.hex()}
        for callback in self.callbacks.get(frame.name, []) + self.callbacks.get("*", []):
            try:
                if _arity(callback) >= 2:
                    callback(payload, data)
                elif _arity(callback) == 1:
                    callback(payload)
                else:
                    callback()
            except Exception:
                logger.exception("Antenna callback {} failed on {!r}", callback, frame.name)

    def watch(self) -> None:
        """Receive and dispatch events until ``stop()``."""
        self.connect()
        self._sock.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                frame = self._read_one()
            except NodeUnreachable as exc:
                if "in time" in str(exc):
                    continue
                raise
            self._dispatch(frame)

    def start(self) -> Antenna:
        self.connect()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="antenna", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.watch()
        except AntennaError as exc:
            if not self._stopping.is_set():
                logger.warning("Antenna: {}", exc)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self.close()

    def __enter__(self) -> Antenna:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.stop()
