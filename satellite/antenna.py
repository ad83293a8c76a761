"""``Antenna``: a client program's handle on the office, through any node.

    antenna = Antenna("127.0.0.1", 8000)                   # or several nodes:
    antenna = Antenna(nodes=["127.0.0.1:8001", "127.0.0.1:8002"])

    @antenna.on("data")                  # the office state changed (coalesced)
    def changed(data):
        print(data.avg_temp, data.targets, [d.mac_addr for d in data.online_devices])

    @antenna.on("lights")                # callback(payload, data) or callback(payload)
    def lights(payload, data): ...

    antenna.set("lights", "on")          # returns once durable on the node
    antenna.publish("door", {"who": "courier"})
    antenna.state()                      # the same snapshot as ``data``
    antenna.members(); antenna.topology(); antenna.metrics()
    antenna.start()                      # a background thread; watch() blocks; stop()

    async for event in antenna.events("lights"):     # for asyncio programs
        print(event.name, event.payload)

While watching, a lost node is no failure: the antenna reconnects with backoff, to the
next node of its list when it was given several, subscribes again, and fires the
callbacks of every target that changed while it was away, so no target change is
missed. Every field of ``data`` reads both as an attribute and as a key.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import random
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgpack
from loguru import logger

from protocols import link, wire
from protocols.secure import Channel, Handshake, SecureError, parse_key

MAX_BACKOFF = 5.0  # seconds between reconnection attempts, at most
SEEN_IDS = 10_000  # event ids remembered to drop a second delivery (an hour at 3/s)


def change_mark(stamp: Any) -> tuple[bytes, int] | None:
    """``(b"t/<node>/<incarnation>", n)`` of a target-change event's id, or of a snapshot's
    ``last_change``: a node numbers its changes in order; None for anything else."""
    if isinstance(stamp, str):
        stamp = stamp.encode()
    if not isinstance(stamp, bytes) or not stamp.startswith(b"t/"):
        return None
    prefix, _, n = stamp.rpartition(b"/")
    return (prefix, int(n)) if n.isdigit() and len(n) < 20 else None


class AntennaError(Exception):
    """Base of the Antenna's errors."""


class NodeUnreachable(AntennaError):
    """No node of the list answers (or the one we had went away)."""


class HandshakeRefused(AntennaError):
    """The node answered but refused us (another protocol version, say)."""


class BadKey(HandshakeRefused):
    """The node holds another cluster key than ours."""


class Data(dict):
    """A dict whose keys also read as attributes, nested all the way down:
    ``data.avg_temp == data["avg_temp"]``, ``data.online_devices[0].mac_addr``.
    (A key named like a dict method, ``items`` say, reads as a key only.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key, value in self.items():
            dict.__setitem__(self, key, wrap(value))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def wrap(value: Any) -> Any:
    if isinstance(value, dict) and not isinstance(value, Data):
        return Data(value)
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


@dataclass(frozen=True)
class Event:
    """One event as ``events()`` yields it."""

    name: str
    payload: Any
    data: Data | None
    origin: str


def parse_node(node: str | tuple[str, int]) -> tuple[str, int]:
    """``"host:port"`` or ``(host, port)`` -> ``(host, port)``; ValueError when neither."""
    if isinstance(node, tuple):
        host, port = node
        return str(host), int(port)
    host, sep, port = str(node).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{node!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


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
        nodes: Iterable[str | tuple[str, int]] | None = None,
        key: str | bytes | list | None = None,
    ) -> None:
        self.nodes = [parse_node(n) for n in nodes] if nodes else [(host, int(port))]
        # The cluster key as `satellite keygen` prints it (or raw bytes, or several: the
        # first is used unless the node names another one we hold).
        keys = key if isinstance(key, list) else [key] if key else []
        self.keyring = [k if isinstance(k, bytes) else parse_key(k) for k in keys]
        self._channel: Channel | None = None
        self.host, self.port = self.nodes[0]
        self.timeout, self.client = timeout, client
        self.callbacks: dict[str, list[Callable]] = {}
        self._arities: dict[int, tuple[Callable, int]] = {}  # id -> (callback, its arity)
        self.data: Data | None = None  # the latest office snapshot
        self.node: str | None = None  # the id of the node we are attached to
        self.attachments = 0  # connections made so far: 1, and one more per reconnection
        self._sock: socket.socket | None = None
        self._decoder = wire.FrameDecoder()
        self._pending: list = []
        self._write_lock = threading.Lock()  # one writer at a time
        self._connect_lock = threading.RLock()
        self._replies: dict[int, Any] = {}
        self._reply_ready = threading.Condition()
        self._req = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._reader: int | None = None  # ident of the thread in watch()
        self._stopping = threading.Event()
        self.delivery: link.Delivery | None = None  # the event being dispatched
        self._fired: dict[str, Any] = {}  # target name -> the last value dispatched
        # Ids of the events lately dispatched: a node whose Gossip restarted delivers the
        # last ones again (its neighbours re-announce them), and a user sees each once.
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        # The attached node's last target change that our snapshot holds (its
        # ``last_change``): a change event of its up to there came by another path than
        # the snapshot, and later; it is dropped, or a stale value would fire again.
        self._as_of: tuple[bytes, int] | None = None
        self._deferred: list | None = None  # events read while a resync awaits its snapshot

    # -- connection -----------------------------------------------------------------------

    def connect(self) -> Antenna:
        """Attach to the first node of the list that answers (from the current one on)."""
        with self._connect_lock:
            if self._sock is not None:
                return self
            errors = []
            start = self.nodes.index((self.host, self.port))
            for i in range(len(self.nodes)):
                host, port = self.nodes[(start + i) % len(self.nodes)]
                try:
                    self._attach(host, port)
                    return self
                except NodeUnreachable as exc:
                    errors.append(str(exc))
            raise NodeUnreachable("; ".join(errors))

    def _attach(self, host: str, port: int) -> None:
        try:
            sock = socket.create_connection((host, port), timeout=self.timeout)
        except OSError as exc:
            raise NodeUnreachable(f"node {host}:{port} unreachable: {exc}") from None
        # Requests are small and each waits for its reply: Nagle would only hold them.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host, self.port = host, port
        self._sock, self._decoder, self._pending = sock, wire.FrameDecoder(), []
        self._channel = None
        try:
            rest = self._handshake(sock, f"{host}:{port}") if self.keyring else b""
            if rest:
                self._pending = self._decoder.feed(self._channel.open(rest))
            self._write(link.ClientHello(link.PROTOCOL_VERSION, self.client))
            first = self._read_one()
        except (AntennaError, SecureError) as exc:
            self.close()
            if isinstance(exc, SecureError):
                raise BadKey(f"node {host}:{port}: {exc}") from None
            raise
        if type(first) is link.Refused:
            self.close()
            if "key" in first.reason:
                raise BadKey(f"node {host}:{port} refused our key: {first.reason}")
            raise HandshakeRefused(f"node {host}:{port} refused the handshake: {first.reason}")
        if type(first) is not link.Welcome:
            self.close()
            raise HandshakeRefused(f"unexpected answer to the handshake: {type(first).__name__}")
        self.node = first.node
        self.attachments += 1
        if self.callbacks:
            self._subscribe()

    def _handshake(self, sock: socket.socket, where: str) -> bytes:
        """Prove we hold the key and check that the node does; returns what followed."""
        hs = Handshake(self.keyring, True, os.urandom(16))
        try:
            sock.sendall(hs.start())
            while not hs.done:
                data = sock.recv(1 << 16)
                if not data:
                    raise BadKey(
                        f"node {where} closed the connection during the key handshake: "
                        "it holds another cluster key"
                    )
                out = hs.feed(data)
                if out:
                    sock.sendall(out)
        except OSError as exc:
            raise NodeUnreachable(f"node {where} went away: {exc}") from None
        self._channel = hs.channel
        return hs.rest

    def _subscribe(self) -> None:
        # "data" always: callbacks get the office snapshot with every event.
        self._write(link.Subscribe(tuple(sorted(set(self.callbacks) | {"data"}))))

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass

    def _write(self, msg: Any) -> None:
        sock = self._sock
        if sock is None:
            raise NodeUnreachable("not connected")
        frame = wire.encode(msg)
        with self._write_lock:  # one writer at a time: records are numbered in order
            if self._channel is not None:
                frame = self._channel.seal(frame)
            try:
                sock.sendall(frame)
            except OSError as exc:
                raise NodeUnreachable(f"node {self.host}:{self.port} went away: {exc}") from None

    def _read_one(self) -> Any:
        while not self._pending:
            sock = self._sock
            if sock is None:
                raise NodeUnreachable("not connected")
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                raise NodeUnreachable("node did not answer in time") from None
            except OSError as exc:
                raise NodeUnreachable(f"node {self.host}:{self.port} went away: {exc}") from None
            if not data:
                raise NodeUnreachable(f"node {self.host}:{self.port} closed the connection")
            try:
                if self._channel is not None:
                    data = self._channel.open(data)
                self._pending = self._decoder.feed(data)
            except wire.WireError as exc:
                raise AntennaError(f"node sent a frame we cannot read: {exc}") from None
        return self._pending.pop(0)

    # -- subscribing and publishing -------------------------------------------------------

    def on(self, name: str) -> Callable[[Callable], Callable]:
        """Decorator: call the function for every event ``name`` (``"*"``: every event
        but ``"data"``; ``"data"``: the office state changed)."""

        def register(callback: Callable) -> Callable:
            first = name not in self.callbacks
            self.callbacks.setdefault(name, []).append(callback)
            if first and self._sock is not None:
                self._subscribe()
            return callback

        return register

    def publish(self, name: str, payload: Any = None) -> None:
        """Broadcast an event through the whole office. (Not retried on another node
        when the connection breaks on the way: it may have gone out already.)"""
        data = msgpack.packb(payload, use_bin_type=True)
        self._request(lambda req: link.Publish(req, name, data), retry=False)

    def set(self, name: str, value: Any) -> tuple[int, int, str]:
        """Set an office target (``lights`` -> ``"on"``); returns once it is durable on
        this node. Every node's clients subscribed to ``name`` get it as an event.
        Returns the write's hybrid-logical-clock timestamp ``(ms, counter, node)``:
        of concurrent writes to one target, the one with the highest stamp wins."""
        data = msgpack.packb(value, use_bin_type=True)
        physical_ms, logical, node = self._request(lambda req: link.SetTarget(req, name, data))
        return physical_ms, logical, node

    def state(self) -> Data:
        """The office state as this node has it (the same snapshot as ``data``)."""
        return Data(self._ask("state"))

    def members(self) -> list[Data]:
        return wrap(self._ask("members"))

    def topology(self) -> Data:
        return Data(self._ask("topology"))

    def metrics(self) -> Data:
        """``{"node", "counters": {name: n}, "gauges": {name: x}, "restarts": {role: n}}``"""
        return Data(self._ask("metrics"))

    def join(self, *peers: str) -> None:
        """Ask the node to contact these seeds' peer addresses (as ``serf join``)."""
        self._control("join", list(peers))

    def block(self, *peers: str) -> None:
        """A partition drill: the node drops its links to these peer addresses and refuses
        new ones; ``block()`` with none heals. For tests and ``satellite chaos``."""
        self._control("block", list(peers))

    def faults(self, loss: float = 0.0, delay_ms: int = 0) -> None:
        """A chaos drill: the node drops this share of its outgoing peer messages and
        delays the rest by ``delay_ms``; ``faults()`` ends it."""
        self._control("faults", {"loss": loss, "delay_ms": delay_ms})

    def delivered(self, since: int = 0) -> Data:
        """The events this node delivered after number ``since``: ``{"epoch", "first",
        "last", "events": [[n, name, payload], ...]}`` (a new epoch: the node's Gossip
        restarted and numbers from 1 again; ``first``: the oldest it still remembers, of
        about its last 256 KiB). A page holds at most 2,000 events and 256 KiB of them:
        ask again after the last ``n`` until it is ``last``."""
        body = self._control("delivered", {"since": since})
        for row in body["events"]:
            row[2] = msgpack.unpackb(row[2], raw=False)
        return Data(body)

    def _control(self, command: str, args: Any) -> Any:
        data = msgpack.packb(args, use_bin_type=True)
        return self._request(lambda req: link.Control(req, command, data))

    def _ask(self, what: str) -> Any:
        return self._request(lambda req: link.Request(req, what))

    def _request(self, make: Callable[[int], Any], retry: bool = True) -> Any:
        req = next(self._req)
        if self._thread is not None and threading.get_ident() != self._reader:
            # The background loop reads (and reconnects); wait for it to hand us the reply.
            self._await_connection()
            self._write(make(req))
            with self._reply_ready:
                ok = self._reply_ready.wait_for(lambda: req in self._replies, self.timeout)
                if not ok:
                    raise NodeUnreachable("node did not answer in time")
                reply = self._replies.pop(req)
        else:
            try:
                reply = self._call(make(req))
            except NodeUnreachable:
                # The node went away since the last call: the next node of the list
                # (or the same one, restarted) gets one more try.
                self.close()
                self._next_node()
                if not retry or self._reader == threading.get_ident():
                    raise
                reply = self._call(make(req))
        body = msgpack.unpackb(reply.body, raw=False)
        if not reply.ok:
            raise AntennaError(str(body))
        return body

    def _call(self, msg: Any) -> Any:
        self.connect()
        if self._sock is not None:
            self._sock.settimeout(self.timeout)  # the watch loop polls with a short one
        self._write(msg)
        while True:
            frame = self._read_one()
            if type(frame) is link.Reply and frame.req == msg.req:
                return frame
            self._dispatch(frame)

    def _await_connection(self) -> None:
        deadline = time.monotonic() + self.timeout
        while self._sock is None:
            if time.monotonic() > deadline or self._stopping.is_set():
                raise NodeUnreachable("no node of the list answers")
            time.sleep(0.02)

    # -- receiving ------------------------------------------------------------------------

    def _dispatch(self, frame: Any) -> None:
        if type(frame) is link.Reply:
            with self._reply_ready:
                self._replies[frame.req] = frame
                self._reply_ready.notify_all()
            return
        if type(frame) is not link.Delivery:
            return
        if self._deferred is not None:
            self._deferred.append(frame)  # after the snapshot, which may hold it already
            return
        if frame.name != "data":
            if frame.id in self._seen:
                return
            self._seen[frame.id] = None
            if len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
            if self._in_snapshot(change_mark(frame.id)):
                return
        payload = msgpack.unpackb(frame.data, raw=False)
        self.delivery = frame  # which event the callbacks are running for
        if frame.name == "data":
            mark = change_mark(payload.get("last_change")) if isinstance(payload, dict) else None
            if mark is not None and self._in_snapshot(mark) and mark != self._as_of:
                return  # older than the snapshot we hold
            self.data, self._as_of = Data(payload), mark or self._as_of
            self._fire("data", self.data, self.data)
            return
        if frame.id.startswith(b"t/"):
            if frame.name in self._fired and self._fired[frame.name] == payload:
                return  # a change the snapshot of a (re)connection brought first
            self._fired[frame.name] = payload
            if self.data is not None:
                # The snapshot's own update follows within half a second; the
                # callbacks see the new value now.
                targets = {**self.data.get("targets", {}), frame.name: payload}
                self.data["targets"] = Data(targets)
        self._fire(frame.name, wrap(payload), self.data)
        if "*" in self.callbacks:
            self._fire("*", wrap(payload), self.data)

    def _fire(self, name: str, payload: Any, data: Any) -> None:
        for callback in list(self.callbacks.get(name, [])):
            try:
                # inspect.signature costs about 13 us: once per callback, not per event.
                known = self._arities.get(id(callback))
                if known is None or known[0] is not callback:
                    known = self._arities[id(callback)] = (callback, _arity(callback))
                arity = known[1]
                if arity >= 2:
                    callback(payload, data)
                elif arity == 1:
                    callback(payload)
                else:
                    callback()
            except Exception:
                # A user's bug must not kill the antenna: log it and go on.
                logger.exception("Antenna callback {} failed on {!r}", callback, name)

    def _in_snapshot(self, mark: tuple[bytes, int] | None) -> bool:
        """Whether the change ``mark`` names is one our snapshot holds already."""
        held = self._as_of
        return mark is not None and held is not None and mark[0] == held[0] and mark[1] <= held[1]

    def _resync(self) -> None:
        """After (re)connecting: take the node's snapshot, and fire the callbacks of the
        targets that changed while we were away. Events that come while we wait for it
        are held until it is in: the snapshot's answer and the node's events take
        different paths through it, and either may come first."""
        if not self.callbacks:
            return
        before = self.data
        self._deferred = []
        try:
            self.data = self.state()
        except BaseException:
            # No snapshot to order them by: as they came (the next resync catches up).
            deferred, self._deferred = self._deferred, None
            for frame in deferred:
                self._dispatch(frame)
            raise
        deferred, self._deferred = self._deferred, None
        self._as_of = change_mark(self.data.get("last_change"))
        if before is not None:
            old, new = before.get("targets", {}), self.data.get("targets", {})
            for name, value in sorted(new.items()):
                # Skip what an event already brought while we resubscribed.
                changed = value != old.get(name) and value != self._fired.get(name)
                if name in self.callbacks and changed:
                    self._fired[name] = value
                    self.delivery = link.Delivery(name, b"", self.node or "", b"t/resync")
                    self._fire(name, value, self.data)
            if before != self.data:
                self._fire("data", self.data, self.data)
        for frame in deferred:
            self._dispatch(frame)

    def watch(self) -> None:
        """Receive and dispatch events until ``stop()``; reconnect when the node goes."""
        self._reader = threading.get_ident()
        self.connect()
        self._resync()
        self._loop()

    def _loop(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            if self._sock is None:
                try:
                    self._reconnect()
                    backoff = 0.1
                except NodeUnreachable as exc:
                    logger.debug("Antenna: {}; again in {:.1f} s", exc, backoff)
                    self._stopping.wait(backoff * (0.5 + random.random()))
                    backoff = min(MAX_BACKOFF, backoff * 2)
                continue
            if self._sock.gettimeout() != self.timeout:
                # Set once, not before every read: each setting is a system call. The
                # timeout bounds a write from another thread (``publish``); a read that
                # times out is only a quiet node. ``stop`` shuts the socket down to end
                # the wait at once.
                self._sock.settimeout(self.timeout)
            try:
                frame = self._read_one()
            except NodeUnreachable as exc:
                if "in time" in str(exc):
                    continue
                if not self._stopping.is_set():
                    logger.warning("Antenna: {}; reconnecting", exc)
                self.close()
                self._next_node()
                continue
            self._dispatch(frame)

    def _next_node(self) -> None:
        i = self.nodes.index((self.host, self.port))
        self.host, self.port = self.nodes[(i + 1) % len(self.nodes)]

    def _reconnect(self) -> None:
        self.connect()
        try:
            self._resync()
        except AntennaError:
            self.close()
            raise NodeUnreachable("the node went away while we resubscribed") from None
        logger.info("Antenna: attached to {} at {}:{}", self.node, self.host, self.port)

    def start(self) -> Antenna:
        """Watch in a background thread; raises at once if no node answers. On return
        ``data`` holds the node's snapshot."""
        self.connect()
        self._resync()
        self._stopping.clear()
        ready = threading.Event()

        def run() -> None:
            self._reader = threading.get_ident()
            ready.set()
            try:
                self._loop()
            except AntennaError as exc:
                if not self._stopping.is_set():
                    logger.warning("Antenna: {}", exc)

        self._thread = threading.Thread(target=run, name="antenna", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.close()  # the watching thread's read returns
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
        self.close()

    async def events(self, *names: str) -> AsyncIterator[Event]:
        """Yield every event named in ``names`` (all but ``"data"`` when none given)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def push(name: str) -> Callable:
            def callback(payload: Any, data: Any) -> None:
                frame = self.delivery
                real = frame.name if frame is not None else name  # "*" -> the real name
                origin = frame.origin if frame is not None else ""
                event = Event(real, payload, data, origin)
                loop.call_soon_threadsafe(queue.put_nowait, event)

            return callback

        for name in names or ("*",):
            self.on(name)(push(name))
        if self._thread is None:
            await loop.run_in_executor(None, self.start)
        while True:
            yield await queue.get()

    def __enter__(self) -> Antenna:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.stop()
