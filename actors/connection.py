"""One TCP connection per actor: the talk's ``recv_loop``.

``Connection`` owns a non-blocking socket, watched with ``ThespianWatch``; it unframes
what arrives with ``protocols.wire`` and sends through a bounded queue until it hands
the sending side to Gossip (``Connection.hand_over``), which writes to the connection
from then on. A peer that sends what the wire refuses gets one log line and a closed
connection.
``Listener`` is the talk's ``accept_loop``: it accepts, and hands each new socket to a
supervisor of connection workers; node_sup's process hosts it, and the processes that
node_sup forks close their copies of its sockets (``_NOT_INHERITED``).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from datetime import timedelta
from multiprocessing.reduction import DupFd
from typing import Any, Protocol

from loguru import logger
from thespian.actors import WakeupMessage, WatchMessage

from actors.base import Hosted, SatelliteActor
from protocols import link, wire
from protocols.secure import Channel, Handshake, SecureError

SEND_QUEUE_MAX = 4 << 20  # bytes waiting for a slow peer before we give up on it
PIPE_QUEUE_MAX = 8 << 20  # bytes waiting in a pipe's outbox before it counts as broken
RECV_CHUNK = 1 << 16
LOCAL_FRAME = 1 << 30  # a frame between a worker and Gossip: a batch of the peer's frames
GREETING_TIMEOUT = 5.0  # seconds to finish the key handshake and say hello
FRAME_TIMEOUT = 10.0  # seconds a frame may take to arrive whole once it has begun


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


class StartWorker:
    """Ask a connection-worker supervisor for a worker on this socket or address;
    ``supervisor``: which one, when it is hosted in the process we send to."""

    def __init__(self, args: dict, supervisor: str | None = None) -> None:
        self.args = args
        self.supervisor = supervisor


def start_worker(actor: Any, workers: Any, args: dict) -> None:
    """Ask the worker supervisor ``workers`` (an address from a context, or ``Hosted``)
    for a connection worker."""
    if isinstance(workers, Hosted):
        actor.send(workers.address, StartWorker(args, workers.handle))
    else:
        actor.send(workers, StartWorker(args))


class SendFrames:
    """Frames (already encoded) for a connection worker to write, in order."""

    def __init__(self, frames: bytes, close: bool = False) -> None:
        self.frames = frames
        self.close = close


class WantPipe:
    """From a connection worker to Gossip: make us a pipe, to reach ``peer`` (None: an
    Antenna's worker). Gossip makes it and keeps its end, so a worker that writes and
    leaves at once cannot take the pipe away unread; and only Gossip runs the thread
    that hands descriptors over (multiprocessing's resource sharer: about 0.3 MiB in
    each peer worker that ran it, ``python bench/node_memory.py``)."""

    def __init__(self, worker: Any, peer: str | None = None) -> None:
        self.worker, self.peer = worker, peer


class PipeFor:
    """From Gossip to a connection worker: its end of the pipe (``Pipe.pair``)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle


class Pipe:
    """One end of a local stream between a connection worker and Gossip.

    What a broadcast carries goes through it as wire frames: the kernel moves them
    from one process to the other, where an actor message is pickled, sent over
    Thespian's own TCP connection and acknowledged (about 0.45 ms of CPU each, two per
    broadcast hop). Actor messages stay for everything else (control, queries, and
    the handover of the pipe itself, as a ``DupFd``)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, 1 << 20)  # the kernel caps it
        self.sock = sock
        self.outbox = bytearray()
        self.broken = False

    @classmethod
    def pair(cls) -> tuple[Pipe, DupFd]:
        """Our end, and the other end as a handle to send in an actor message."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        handle = DupFd(theirs.fileno())  # a duplicate travels; ours can go
        theirs.close()
        return cls(mine), handle

    @classmethod
    def take(cls, handle: Any) -> Pipe:
        """The end that ``handle`` (from ``pair``) carries; OSError if its sender died."""
        try:
            fd = handle.detach()
        except EOFError as exc:  # it died while handing the descriptor over
            raise OSError(f"the sender of the pipe is gone: {exc!r}") from exc
        return cls(socket.socket(fileno=fd))

    def fileno(self) -> int:
        return self.sock.fileno()

    def write_with_fd(self, data: bytes, fd: int) -> bool:
        """Send ``data`` with a duplicate of descriptor ``fd`` riding on its first byte
        (SCM_RIGHTS). Only with nothing waiting before it; False if that is not so now,
        or the pipe is broken."""
        if self.broken or self.outbox:
            return False
        try:
            sent = socket.send_fds(self.sock, [data], [fd])
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self.close()
            return False
        self.outbox += data[sent:]
        return self.flush()

    def write(self, data: bytes) -> bool:
        """Send ``data`` after what waits; False once the pipe is broken (the other end
        gone, or so far behind that it had better start over)."""
        if self.broken:
            return False
        self.outbox += data
        if len(self.outbox) > PIPE_QUEUE_MAX:
            self.close()
            return False
        return self.flush()

    def flush(self) -> bool:
        if send_buffered(self.sock, self.outbox):
            return True
        self.close()
        return False

    def read(self, fds: list[int] | None = None) -> bytes:
        """Everything that has arrived; ``broken`` is set when the other end is gone.
        With ``fds``, descriptors that came along (``write_with_fd``) are added to it."""
        chunks = []
        while not self.broken:
            try:
                if fds is None:
                    data = self.sock.recv(RECV_CHUNK)
                else:
                    data, got, _, _ = socket.recv_fds(self.sock, RECV_CHUNK, 1)
                    fds.extend(got)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self.close()
                break
            chunks.append(data)
            if len(data) < RECV_CHUNK:
                break  # all there was, most likely: no second call just to hear so
        return b"".join(chunks)

    def close(self) -> None:
        self.broken = True
        self.outbox.clear()
        try:
            self.sock.close()
        except OSError:
            pass


def send_buffered(sock: socket.socket, buffer: bytearray) -> bool:
    """Send from the front of ``buffer`` what the non-blocking ``sock`` takes now, and
    take it off; False if the socket failed."""
    while buffer:
        try:
            sent = sock.send(buffer)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        del buffer[:sent]
    return True


def keep_tcp_alive(sock: socket.socket) -> None:
    """Let the kernel find a peer that vanished (power cut, cable out): probes after 5 s
    of silence, every 2 s, dead after 3 unanswered; no process wakes up for it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3)):
        option = getattr(socket, name, None)
        if option is not None:  # Linux has all three
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class Connection(SatelliteActor):
    """Base of the per-connection workers."""

    threaded_io = True  # the socket and the pipe are served by a thread (actors/iothread.py)
    # Tags of frames to pass on undecoded (``on_frame`` gets None for the message): for
    # the actor they go to, which checks them (``wire.FrameDecoder.feed_frames``).
    undecoded: frozenset[bytes] = frozenset()
    keepalive = 1.0  # seconds between pings on an idle link; 3 missed = dead
    quiet_ok = False  # True: the other side may stay silent (a listening client)

    def init(self, args: dict) -> None:
        self.sock: socket.socket | None = None
        limits = self.context.get("limits") or {}
        self.decoder = wire.FrameDecoder(limits.get("max_frame", wire.MAX_FRAME))
        self.send_buffer = limits.get("send_buffer", SEND_QUEUE_MAX)
        self.outbox = bytearray()
        self.flush_armed = False
        self.closing = False
        self.pipe: Pipe | None = None  # to Gossip, once Gossip sent it (``want_pipe``)
        self.handed = False  # Gossip writes to the connection now (``hand_over``)
        self.pipe_wanted = False
        self.pipe_pending = bytearray()  # for the pipe, before it came (``pipe_for``)
        self.last_rx = self.last_tx = time.monotonic()
        self.remote = "?"
        # With a cluster key, nothing but the handshake goes out or comes in until both
        # sides proved they hold it; what we write meanwhile waits in ``held``.
        self.keyring: list[bytes] | None = self.context.get("keyring") or None
        self.handshake: Handshake | None = None
        self.channel: Channel | None = None
        self.held = bytearray()
        self.greeted = False  # subclasses set it on the other side's valid hello
        self.partial_since: float | None = None  # a frame began arriving then
        self.partial_armed = False
        if "fd" in args:
            try:
                self.sock = socket.socket(fileno=args["fd"].detach())
            except OSError as exc:
                # The listener that accepted it died before we took the socket over.
                logger.warning("[{}] {}: lost a new connection: {}", self.node_id, self.role, exc)
                self.sock = None
                self.exit_normally()
                return
            host, port = self.sock.getpeername()[:2]
            self.remote = f"{host}:{port}"
        else:
            host, port = split_addr(args["connect"])
            self.remote = args["connect"]
            try:
                self.sock = socket.create_connection((host, port), timeout=args.get("timeout", 2.0))
            except OSError as exc:
                self.sock = None
                self.connect_failed(exc)
                return
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        keep_tcp_alive(self.sock)
        self.watching = [self.sock.fileno()]
        self.wakeupAfter(timedelta(seconds=self.keepalive), payload="keepalive")
        self.wakeupAfter(timedelta(seconds=GREETING_TIMEOUT), payload="greeting")
        if self.keyring:
            self.handshake = Handshake(self.keyring, "connect" in args, os.urandom(16))
            self.send_raw(self.handshake.start())
        self.connected()

    # -- what subclasses write ------------------------------------------------------------

    def connected(self) -> None: ...

    def connect_failed(self, exc: OSError) -> None:
        self.close(f"cannot connect: {exc}")

    def on_frame(self, msg: Any, frame: bytes) -> None:
        """One message from the other side, and its frame as it came (decrypted); None
        for the message of a frame whose tag is in ``undecoded``."""

    def frames_read(self) -> None:
        """Every frame of one read went through ``on_frame``: pass on what was gathered."""

    def on_actor_message(self, msg: Any, sender: Any) -> None: ...

    def closed(self, reason: str) -> None: ...

    def on_idle(self) -> None: ...

    def key_refused(self, reason: str) -> None:
        """The other side failed the key handshake (or does not do it)."""
        self.close(f"key handshake failed: {reason}", bad=True)

    # -- the loop -------------------------------------------------------------------------

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, WatchMessage):
            if self.pipe is not None and self.pipe.fileno() in msg.ready:
                self._pipe_readable()
            if self.sock is not None and self.sock.fileno() in msg.ready:
                self._readable()
        elif isinstance(msg, WakeupMessage):
            if msg.payload == "flush":
                self.flush_armed = False
                self._flush()
                self._flush_pipe()
                self.hand_over()
            elif msg.payload == "greeting" and self.sock is not None and not self.greeted:
                self.close(f"no hello within {GREETING_TIMEOUT:.0f} s", bad=True)
            elif msg.payload == "keepalive" and self.sock is not None:
                if not self.quiet_ok and time.monotonic() - self.last_rx > 3 * self.keepalive:
                    self.close("no keepalive for %.0f s" % (3 * self.keepalive))
                    return
                self.on_idle()
                self.wakeupAfter(timedelta(seconds=self.keepalive), payload="keepalive")
            elif msg.payload == "partial" and self.sock is not None:
                self.partial_armed = False
                since = self.partial_since
                if since is not None:
                    late = time.monotonic() - since
                    if late >= FRAME_TIMEOUT:
                        late_by = f"{FRAME_TIMEOUT:.0f} s"
                        self.close(f"a frame still incomplete after {late_by}", bad=True)
                        return
                    self._arm_partial(FRAME_TIMEOUT - late)
        elif isinstance(msg, SendFrames):
            if self.handed:
                # Gossip writes them, then closes its side; we close ours when it has.
                self.write(msg.frames, close=msg.close)
                self.closing = self.closing or msg.close
                return
            self.write(msg.frames)
            if msg.close:
                self.closing = True
                self._flush()
        else:
            self.on_actor_message(msg, sender)

    def _readable(self) -> None:
        if self.sock is None:
            return
        try:
            data = self.sock.recv(RECV_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(f"receive failed: {exc}")
            return
        if not data:
            self.close("closed by the other end")
            return
        self.last_rx = time.monotonic()
        if self.handshake is not None and not self.handshake.done:
            try:
                self.send_raw(self.handshake.feed(data))
            except SecureError as exc:
                self.key_refused(str(exc))
                return
            if not self.handshake.done:
                return
            self.channel = self.handshake.channel
            if self.held:
                self.send_raw(self.channel.seal(bytes(self.held)))
                self.held.clear()
            data = self.handshake.rest
        try:
            if self.channel is not None:
                data = self.channel.open(data)
            messages = self.decoder.feed_frames(data, self.undecoded)
        except wire.WireError as exc:
            self.close(f"bad frame ({type(exc).__name__}: {exc})", bad=True)
            return
        incomplete = self.decoder.pending() or (self.channel and self.channel.pending())
        if not incomplete:
            self.partial_since = None
        elif self.partial_since is None:
            self.partial_since = self.last_rx
            if not self.partial_armed:
                self._arm_partial(FRAME_TIMEOUT)
        for message, frame in messages:
            if self.sock is None:
                return
            self.on_frame(message, frame)
        self.frames_read()

    # -- the pipe to Gossip ---------------------------------------------------------------

    def want_pipe(self, peer: str | None = None) -> None:
        """Ask Gossip for a pipe (``WantPipe``); until it comes (``pipe_for``), what
        ``to_pipe`` gets waits in ``pipe_pending``."""
        gossip = self.context.get("gossip")
        if gossip is not None and not self.pipe_wanted:
            self.pipe_wanted = True
            self.send(gossip, WantPipe(self.myAddress, peer))

    def pipe_for(self, handle: Any) -> None:
        """Gossip's answer: our end of the pipe. What waited for it goes first."""
        try:
            pipe = Pipe.take(handle)
        except OSError as exc:
            if self.sock is not None:
                self.close(f"no pipe to Gossip: {exc}")
            return
        if self.sock is None:
            pipe.close()  # closed already: taken all the same, or Gossip's end would wait
            return
        self.pipe = pipe
        self.watching.append(pipe.fileno())
        if self.pipe_pending:
            self.to_pipe(bytes(self.pipe_pending))
            self.pipe_pending.clear()
        self.hand_over()

    def hand_over(self) -> None:
        """Give Gossip the sending side of the connection (``link.Handover``), once the
        key handshake is done and nothing of ours waits to go out on either stream:
        each hop of a broadcast then wakes two processes here, not three (issue 8).
        Until it can, the next flush tries again; after it, what we write goes to Gossip
        as ``link.Outgoing``. We keep reading: the receive loop stays ours."""
        if (
            self.handed
            or self.pipe is None
            or self.sock is None
            or self.closing
            or (self.keyring and self.channel is None)
            or self.outbox
            or self.held
        ):
            return
        sealer = self.channel.sealer if self.channel is not None else None
        handover = link.Handover(sealer.key, sealer.sent) if sealer else link.Handover(b"", 0)
        frame = wire.encode(handover)
        if self.pipe.write_with_fd(frame, self.sock.fileno()):
            self.handed = True
            self._flush_pipe()  # what the pipe did not take goes on the next flush
        elif self.pipe.broken:
            self.close("the pipe to Gossip broke")
        elif not self.flush_armed:  # the pipe is full for now: try again shortly
            self.flush_armed = True
            self.wakeupAfter(timedelta(milliseconds=5), payload="flush")

    def take_pipe_pending(self) -> bytes:
        """For a worker closing before its pipe came: what waited for the pipe (taken;
        it goes to Gossip as a message), or nothing once the pipe was there."""
        if self.pipe is not None:
            return b""
        frames = bytes(self.pipe_pending)
        self.pipe_pending.clear()
        return frames

    def to_pipe(self, frames: bytes) -> None:
        if self.pipe is None:
            if len(self.pipe_pending) + len(frames) > self.send_buffer:
                self.close("too much for Gossip before the pipe to it came", bad=True)
                return
            self.pipe_pending += frames
        elif frames:
            self.pipe.write(frames)
            self._flush_pipe()

    def _flush_pipe(self) -> None:
        if self.pipe is None:
            return
        if self.pipe.broken:
            if self.sock is not None:
                self.close("the pipe to Gossip broke")
        elif self.pipe.outbox and self.pipe.flush() and self.pipe.outbox:
            if not self.flush_armed:
                self.flush_armed = True
                self.wakeupAfter(timedelta(milliseconds=5), payload="flush")

    def _pipe_readable(self) -> None:
        # Gossip writes nothing to a worker's pipe (it writes the connection itself, or
        # keeps what it has until the handover): watched only to see it close.
        self.pipe.read()
        if self.pipe is not None and self.pipe.broken and self.sock is not None:
            # Gossip is gone (it is being restarted, and this worker with it).
            self.close("the pipe to Gossip closed")

    def _arm_partial(self, delay: float) -> None:
        # Only while a frame is half in: an idle link costs no wakeups for this.
        self.partial_armed = True
        self.wakeupAfter(timedelta(seconds=delay), payload="partial")

    def write(self, frames: bytes, close: bool = False) -> None:
        """Frames for the other side: sealed when there is a key (held until the
        handshake is done); after the handover, Gossip's to write (and ``close``)."""
        if self.handed:
            if frames or close:
                self.last_tx = time.monotonic()
                self.to_pipe(wire.encode(link.Outgoing(frames, close), max_frame=LOCAL_FRAME))
            return
        if not frames:
            return
        if self.keyring:
            if self.channel is None:
                if len(self.held) + len(frames) > self.send_buffer:
                    self.close("send queue full before the handshake ended")
                    return
                self.held += frames
                return
            frames = self.channel.seal(frames)
        self.send_raw(frames)

    def send_raw(self, data: bytes) -> None:
        if self.sock is None or not data:
            return
        if len(self.outbox) + len(data) > self.send_buffer:
            self.close("send queue full: the other end does not read")
            return
        self.outbox += data
        self._flush()

    def _flush(self) -> None:
        if self.sock is None:
            return
        while self.outbox:
            try:
                sent = self.sock.send(self.outbox)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.close(f"send failed: {exc}")
                return
            del self.outbox[:sent]
            self.last_tx = time.monotonic()
        if self.outbox:
            if not self.flush_armed:
                self.flush_armed = True
                self.wakeupAfter(timedelta(milliseconds=5), payload="flush")
        elif self.closing and not self.handed:  # handed: Gossip closes its side first
            self.close("done")

    def close(self, reason: str, bad: bool = False) -> None:
        if bad:
            logger.warning("[{}] {} {}: {}; closing", self.node_id, self.role, self.remote, reason)
        if self.pipe is not None:
            self.pipe.close()
        if self.sock is not None:
            self._close_socket()
        self.watching = []
        self.closed(reason)
        self.exit_normally()

    def _close_socket(self) -> None:
        if self.handed:
            # Gossip holds a duplicate: closing ours alone would not end the connection.
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.sock = None

    def stopping(self) -> None:
        if self.pipe is not None:
            self.pipe.close()
        if self.sock is not None:
            self._close_socket()
            self.watching = []
            # No goodbye here: the sibling it would go to may be what is being
            # restarted, and Thespian holds an exit until its sends are delivered.
            # Membership learns from the worker supervisor's replacement instead.


class ListenerHost(Protocol):
    """What hosts a ``Listener``: node_sup's own supervisor (supervisors/supervisor.py)."""

    node_id: str

    def workers_up(self, name: str) -> bool:
        """Is the worker supervisor ``name`` running?"""

    def to_workers(self, name: str, args: dict) -> None:
        """Ask the worker supervisor ``name`` for a connection worker with ``args``."""


# Sockets of this process that a process it forks must not keep: a listening socket
# held by a child would keep the port open (and a restarted listener from binding it)
# after the listener closed it; a connection held by a child would stay open after its
# own worker closed it. Every actor is forked, and Python's close-on-exec does not apply.
_NOT_INHERITED: dict[int, socket.socket] = {}


def _close_not_inherited() -> None:
    for sock in _NOT_INHERITED.values():
        sock.close()  # our copy only: the parent's socket is untouched
    _NOT_INHERITED.clear()


os.register_at_fork(after_in_child=_close_not_inherited)


class Listener:
    """Accepts on the node's ports and asks each port's ``workers`` supervisor for a
    worker per socket: the talk's ``accept_loop``.

    Not an actor: node_sup's process hosts it (supervisors/tree.py says why). The host
    calls ``ready`` with each descriptor of ``watching`` that can be read, and ``close``
    when it stops it; an exception out of either is a crash, and the host restarts it as
    the tree says, as it would a process."""

    def __init__(self, args: dict, host: ListenerHost, role: str = "Listener") -> None:
        # ``ports``: [{"bind": "HOST:PORT", "workers": "<supervisor's child id>"}, ...]
        self.host = host
        self.role = role
        self.ports: dict[int, tuple[socket.socket, str]] = {}
        self.messages = 0  # connections handed to a supervisor, for topology
        try:
            for spec in args["ports"]:
                host_name, port = split_addr(spec["bind"])
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                _NOT_INHERITED[sock.fileno()] = sock
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.ports[sock.fileno()] = (sock, spec["workers"])
                sock.bind((host_name, port))
                sock.listen(128)
                sock.setblocking(False)
        except OSError:
            self.close()
            raise

    @property
    def watching(self) -> list[int]:
        return list(self.ports)

    def ready(self, fd: int) -> None:
        if fd in self.ports:
            self.accept(*self.ports[fd])

    def accept(self, sock: socket.socket, workers_name: str) -> None:
        """Everything waiting on ``sock``, each to a worker of ``workers_name``."""
        while True:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    logger.warning("[{}] {}: out of file descriptors", self.host.node_id, self.role)
                    return
                raise
            _NOT_INHERITED[conn.fileno()] = conn  # the worker is forked while it is open
            try:
                if self.host.workers_up(workers_name):
                    # The worker takes its own duplicate of the socket; ours can go.
                    self.host.to_workers(workers_name, {"fd": DupFd(conn.fileno())})
                    self.messages += 1
            finally:
                _NOT_INHERITED.pop(conn.fileno(), None)
                conn.close()

    def close(self) -> None:
        for fd, (sock, _) in self.ports.items():
            _NOT_INHERITED.pop(fd, None)
            sock.close()
        self.ports = {}
