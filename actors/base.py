"""What every Satellite actor shares, and the Thespian facts it works around.

DESIGN.md section 3 lists them; here is what each one costs us:

- An exception in ``receiveMessage`` does not crash a Thespian actor: it retries the
  message once and lives on with whatever state it had. ``SatelliteActor`` logs the
  traceback and leaves the process for real (``os._exit``), so its supervisor sees
  ``ChildActorExited`` and restarts it: OTP's "let it crash".
- A killed actor's children are orphaned: every actor process asks the kernel to kill
  it when its parent dies (``PR_SET_PDEATHSIG``).
- The fds watched with ``ThespianWatch`` reset after every ``receiveMessage``: the
  wrapper returns the watch on every code path, timers and errors included.
- Thespian's sockets listen on all interfaces and unpickle whatever arrives:
  ``loopback_only()`` makes every one of them bind to 127.0.0.1 (and bounds how long
  Thespian retries a message to a dead actor, and has every child's death announced:
  ``every_exit_noticed``).
- Every actor is a forked process, about 5 MiB of private memory each, against a budget
  of 64 MiB per node (issue 8): ``lean_actor_system()`` drops Thespian's logger process
  (the admin handles the few stdlib records our logDefs let through), keeps the
  garbage collector off the pages every process inherits (``gc.freeze`` at each fork),
  frees the address each message arrives with as soon as it is dropped (Thespian's made
  it a reference cycle, left to the collector: ``weakly_bound_addresses``), and spares
  each turn of Thespian's loop an epoll set made and closed for one wait.
- A turn of Thespian's loop costs 125-225 us of CPU, and a broadcast crosses about ten
  actor wakes per node: actors on that path (``threaded_io``) have their sockets and
  timers served by a thread of their own (actors/iothread.py).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import selectors
import signal
import sys
import traceback
import weakref
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from loguru import logger
from thespian.actors import (
    Actor,
    ActorExitRequest,
    ThespianWatch,
    WakeupMessage,
    WatchMessage,
)

from actors.iothread import IoThread

PR_SET_PDEATHSIG = 1
CRASH_STATUS = 70  # EX_SOFTWARE: an actor crashed on an unhandled exception


def loopback_only() -> None:
    """Make every Thespian socket (admin, logger, actors) bind to 127.0.0.1 only.

    Thespian binds its "external" addresses to ``''`` (all interfaces). Patched before
    the actor system starts; actor processes are forked and inherit the patch."""
    import thespian.system.transport as transport
    from thespian.system.transport import IPBase

    if getattr(IPBase.IPActorAddress, "_satellite_loopback", False):
        return
    # A send to an actor that just died is retried for 5 minutes by default, and an
    # actor does not finish exiting while one is pending: a supervisor that notified a
    # dead sibling would hang a restart. Between processes of one machine, a message
    # that cannot be delivered in 10 s will not be (2 s lost messages on a loaded Pi).
    transport.DEFAULT_MAX_TRANSMIT_PERIOD = timedelta(seconds=10)
    # Only 20 sends may be under way at once by default; sends to a dead actor hold their
    # slot until they expire, so 20 of them (Gossip pushing to a killed connection
    # worker) stalled every other send of the actor for 10 s. More is not free either:
    # Thespian walks every send under way on each turn of its loop. 128 measured best
    # (10 nodes, 20 events/s: time-to-all p50 41-72 ms at 64-256, 453 ms at 20), and is
    # well inside a Pi's default limit of 1024 descriptors (a slot is a socket).
    from thespian.system.transport import asyncTransportBase

    asyncTransportBase.MAX_PENDING_TRANSMITS = 128
    os.environ["THESPIAN_BASE_IPADDR"] = "127.0.0.1"
    original = IPBase.IPActorAddress.__init__

    def init(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.bindname = ("127.0.0.1", self.sockname[1])

    IPBase.IPActorAddress.__init__ = init
    IPBase.IPActorAddress._satellite_loopback = True
    every_exit_noticed()


def every_exit_noticed() -> None:
    """Make Thespian tell a parent of every child that dies.

    Handling one child's exit notice, Thespian drops from its list every child that is
    dead by then, not only that one; a child that died since the last SIGCHLD check is
    then never announced (its supervisor never restarts it). Measured: node_sup, parent
    of connection workers that come and go, lost the exit of a SIGKILLed Membership in
    about one run in three under load. Here only the child the notice is about is
    dropped; the others wait for the SIGCHLD check, which announces them."""
    from thespian.system.multiprocCommon import MultiProcReplicator

    def child_exited(self: Any, child_address: Any) -> None:
        keep = []
        for info in getattr(self, "_child_procs", []):
            this = child_address in (info.childAddr, getattr(info, "childRealAddr", None))
            if not this or self._checkChildLiveness(info):
                keep.append(info)
        self._child_procs = keep

    MultiProcReplicator._childExited = child_exited


def lean_actor_system() -> None:
    """Patch Thespian, before the actor system starts, to cost a node less memory and CPU.

    Every process of the node (admin, actors) is forked from the caller, so inherits it."""
    import thespian.system.multiprocCommon as mpc
    import thespian.system.transport.TCPTransport as tcp
    from thespian.system.messages.multiproc import LoggerConnected
    from thespian.system.transport import ReceiveEnvelope

    if getattr(mpc, "_satellite_lean", False):
        return
    mpc._satellite_lean = True

    # 1. No logger process. Thespian forks one to handle the stdlib log records of every
    # actor; ours log with loguru to their own stderr, and our logDefs let through only
    # CRITICAL records (the actors' forwarders drop the rest before sending). The admin
    # becomes the logger: it handles those records itself, as the logger process did
    # (no handlers configured, so logging's last resort prints them to stderr).
    def start_no_logger(_transport_class, transport, admin, *_: Any) -> None:
        admin.h_LoggerConnected(ReceiveEnvelope(transport.myAddress, LoggerConnected()))

    def own_records(admin: Any, envelope: Any) -> bool:
        if admin.asLogger != admin.transport.myAddress:
            return forward_record(admin, envelope)
        record = envelope.message
        if record.levelno >= logging.lastResort.level:
            logging.lastResort.handle(record)
        return True

    def cleanup_without_logger(admin: Any, finish_cleanup: Any) -> None:
        if getattr(admin, "asLogger", None) != admin.transport.myAddress:
            return cleanup(admin, finish_cleanup)
        admin.post_cleanup = finish_cleanup
        admin._reset_logging()
        admin._cleanupAdminFinish(None, None)

    forward_record = mpc.MultiProcAdmin.h_LogRecord
    cleanup = mpc.MultiProcAdmin._cleanupAdmin
    mpc._startLogger = start_no_logger
    mpc.MultiProcAdmin.h_LogRecord = own_records
    mpc.MultiProcAdmin._cleanupAdmin = cleanup_without_logger

    # 2. What every connection worker imports when it hands or takes a descriptor
    # (DupFd), imported here once: in each worker it was 0.3-0.5 MiB of private memory
    # (a node with 5 links and 1 client: PSS 114.2 -> 109.3 MiB, bench/node_memory.py).
    import multiprocessing.connection  # noqa: F401
    import multiprocessing.resource_sharer  # noqa: F401

    # 3. The collector leaves inherited objects alone. A full collection writes to every
    # tracked object, so each page a process shares with its parent becomes a private
    # copy: one gc.collect() in a freshly forked actor measured +8.5 MiB of private
    # memory. Frozen objects are never collected; what a process allocates itself is.
    gc.collect()
    gc.freeze()
    os.register_at_fork(after_in_child=gc.freeze)

    # 4. (not memory) Children of actors die with them from the fork on.
    os.register_at_fork(before=_remember_forker, after_in_child=_child_of_actor_dies_with_it)

    # 5. Thespian binds two methods to every address it receives (each message's sender)
    # or makes, bound to the address itself: each is then a reference cycle, about nine
    # objects that only the cycle collector frees, which runs after 2,000 net allocations
    # (Python 3.13): minutes apart in a quiet actor, while the garbage piles up. Bound
    # through a weak reference instead, an address goes when its last user drops it.
    weakly_bound_addresses()

    # 6. Thespian's loop builds a selector for each wait: with epoll that is epoll_create,
    # one epoll_ctl per socket, the wait, and close. poll() is one system call.
    tcp.selectors = SimpleNamespace(
        DefaultSelector=selectors.PollSelector,
        EVENT_READ=selectors.EVENT_READ,
        EVENT_WRITE=selectors.EVENT_WRITE,
    )


class _WeakBound:
    """``method`` called with an object first, which it holds through a weak reference:
    what ``types.MethodType(method, obj)`` does, without a cycle when kept in obj."""

    __slots__ = ("method", "ref")

    def __init__(self, method: Any, obj: Any) -> None:
        self.method = method
        self.ref = weakref.ref(obj)

    def __call__(self, *args: Any) -> Any:
        return self.method(self.ref(), *args)


def weakly_bound_addresses() -> None:
    """Patch Thespian's address manager to bind its helpers to an address weakly.

    ``importAddr`` runs for the sender of every message an actor receives, and
    ``getLocalAddress`` for every child it creates: each stores in the address two
    methods bound to the address itself (its ``eqOverride``, and the ``__getstate__``
    that pickle calls). The same helpers, the same calls, no cycle."""
    from thespian.actors import ActorAddress
    from thespian.system import addressManager as am

    manager = am.ActorAddressManager
    if getattr(manager, "satellite_weak", False):
        return
    manager.satellite_weak = True

    def get_local_address(self: Any, instance_num: int) -> ActorAddress:
        address = ActorAddress(am.ActorLocalAddress(self._thisActorAddr, instance_num, self))
        address.eqOverride = _WeakBound(self.compareAddressEq, address)
        address.__getstate__ = _WeakBound(am._pickle_if_translation, address)
        return address

    def import_addr(self: Any, address: Any) -> None:
        address.eqOverride = _WeakBound(self.compareAddressEq, address)
        address.__getstate__ = _WeakBound(am._pickle_clean, address)
        if address in self._deadAddrs:
            del self._deadAddrs[self._deadAddrs.index(address)]

    def associate_useable_address(self: Any, owner: Any, instance_num: int, address: Any) -> None:
        associate(self, owner, instance_num, address)
        if owner == self._thisActorAddr and instance_num < len(self._managed):
            self.__dict__.setdefault("satellite_slots", {})[str(address)] = instance_num

    associate = manager.associateUseableAddress
    manager.getLocalAddress = get_local_address
    manager.importAddr = import_addr
    manager.associateUseableAddress = associate_useable_address


def forget_child_address(actor: Any, address: Any) -> None:
    """Drop Thespian's record of a child of ``actor`` that has exited.

    Thespian keeps the address of every child an actor ever created, in a list that
    "never shrinks. Ever." (its own comment): indexes into it are the placeholder
    addresses ``createActor`` returns. A node creates a child for every connection it
    serves, so that was a record (about 0.6 KiB) per connection, for the node's life.
    The slot stays, emptied (None, as for a child not yet up): a placeholder of the
    dead child no longer resolves, and nothing of ours keeps one past the Started."""
    manager = getattr(getattr(actor, "_myRef", None), "_addrManager", None)
    slots = getattr(manager, "satellite_slots", None)
    if slots is None:  # not weakly_bound_addresses' manager, or no child yet
        return
    slot = slots.pop(str(address), None)
    if slot is not None:
        manager._managed[slot] = None


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when the process that forked it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: supervisors still stop children on the way out
        pass


_in_actor = False  # this process is one of our actors (from its Init on)
_forker = 0  # the pid that forked this process, as it knew itself


def _remember_forker() -> None:
    global _forker
    _forker = os.getpid()


def _child_of_actor_dies_with_it() -> None:
    """After a fork, in the child: an actor's child dies with it from here on, not only
    from its own Init. A node killed in between left the child behind for good (seen:
    a PeerWorker forked just before its node was SIGKILLed, never told who it was)."""
    if _in_actor:
        die_with_parent()
        if os.getppid() != _forker:  # it died before we asked
            os._exit(0)


def set_title(node_id: str, role: str) -> None:
    try:
        import setproctitle

        setproctitle.setproctitle(f"satellite[{node_id}] {role}")
    except ImportError:
        pass


# --- messages between our actors -----------------------------------------------------------


@dataclass
class Init:
    """The first message to a child: who it is and what it needs.

    ``context`` maps names (``membership``, ``gossip``, ``node_sup`` ...) to actor
    addresses; it is refreshed with ``Context`` whenever a sibling restarts."""

    node_id: str
    role: str
    args: dict = field(default_factory=dict)
    context: dict = field(default_factory=dict)


@dataclass
class Context:
    context: dict


@dataclass
class Started:
    """A child tells its supervisor it is up: the pid is for topology and for kills."""

    child_id: str
    pid: int
    supervisor: str = ""  # which supervisor of its parent's process started it (hosted)


@dataclass
class Stats:
    """A supervisor asks a child how busy it has been (for topology); the child sends
    the same object back with ``messages`` filled in, whatever its own ``handle`` does."""

    token: Any
    messages: int | None = None


@dataclass
class ExitingNormally:
    """Sent to the supervisor just before a deliberate exit (transient children)."""

    child_id: str


@dataclass(frozen=True)
class Hosted:
    """A child that runs inside its supervisor's process, not as a process of its own:
    a worker supervisor, the listener, Membership (issue 8: a process costs 4-6 MiB of a
    node's 64). It is what its siblings find in their context: ``address`` is the host
    process's actor, ``handle`` names this incarnation (a restarted one is a different
    value). A ``send`` to it goes to the host, wrapped in ``ToHosted``."""

    address: Any
    handle: str

    def __str__(self) -> str:  # as an address's: the same for every copy (not an id())
        return f"{self.address}/{self.handle}"


@dataclass
class ToHosted:
    """A message for the hosted child ``handle`` of the process it is sent to."""

    handle: str
    msg: Any


@dataclass
class HostedTimer:
    """A hosted actor's ``wakeupAfter``: the host's timer, routed back to it by ``handle``."""

    handle: str
    payload: Any


class HostedCrash(Exception):
    """A hosted actor crashed (the message: its traceback): its host restarts it."""


class SatelliteActor(Actor):
    """Base of all our actors. Subclasses implement ``init`` and ``handle``."""

    node_id = "?"
    role = "Actor"

    def __init__(self) -> None:
        super().__init__()
        self.child_id: str | None = None
        self.supervisor = None
        self.context: dict = {}
        self.watching: list[int] = []
        self.messages = 0  # handled since start, for topology
        self._io: IoThread | None = None
        self._initialised = False

    # -- what subclasses write ------------------------------------------------------------

    def init(self, args: dict) -> None:
        """Called once with the child spec's args."""

    def handle(self, msg: Any, sender: Any) -> None:
        """Called for every message after Init."""

    def on_context(self) -> None:
        """Called when sibling addresses changed (one of them restarted)."""

    def stopping(self) -> None:
        """Called on an orderly stop: close sockets. (Do not message siblings here: they
        may be what is being restarted, and a pending send holds the exit.)"""

    # -- the wrapper ----------------------------------------------------------------------

    # -- serving sockets from a thread (actors/iothread.py) ---------------------------------

    threaded_io = False  # True: a thread of ours polls ``watching``, not Thespian's loop

    def send(self, target: Any, msg: Any) -> None:
        if type(target) is Hosted:
            target, msg = target.address, ToHosted(target.handle, msg)
        io = self._io
        if io is not None and not io.in_actor_thread():
            io.defer(Actor.send, self, target, msg)
        else:
            super().send(target, msg)

    def wakeupAfter(self, timePeriod: Any, payload: Any = None) -> None:  # noqa: N803
        if self._io is not None:
            self._io.add_timer(timePeriod, payload)  # the I/O thread keeps time
        else:
            super().wakeupAfter(timePeriod, payload)

    def serve_io(self, msg: WatchMessage | WakeupMessage) -> None:
        """In the I/O thread, holding the lock: descriptors are ready, or a timer fired.
        Straight to ``handle``: the thread starts once the actor is initialised."""
        try:
            self.messages += 1
            self.handle(msg, None)
        except Exception:
            self.crash()
        self._io.watch(self.watching)

    def receiveMessage(self, msg: Any, sender: Any) -> ThespianWatch | None:
        io = self._io
        if io is None:
            self._receive(msg, sender)
            if self.threaded_io and self._initialised:
                self._io = IoThread(self, self.crash)
                self._io.watch(self.watching)
                self._io.start()
                return ThespianWatch([self._io.defer_fd])
            # Thespian forgets the watch after every message: give it back on every path.
            return ThespianWatch(list(self.watching)) if self.watching else None
        with io.lock:
            try:
                io.run_deferred()  # what the I/O thread asked for comes before what follows
            except Exception:
                self.crash()
            if not isinstance(msg, WatchMessage):  # Thespian only watches the wake-up fd
                self._receive(msg, sender)
            io.watch(self.watching)
        return ThespianWatch([io.defer_fd])

    def _receive(self, msg: Any, sender: Any) -> None:
        try:
            if isinstance(msg, Init):
                self._on_init(msg, sender)
            elif isinstance(msg, ActorExitRequest):
                self.stopping()
            elif isinstance(msg, Context):
                self.context = dict(msg.context)  # whole: a sibling gone is gone from it
                self.on_context()
            elif isinstance(msg, Stats) and msg.messages is None:  # a question, not an answer
                self.send(sender, Stats(msg.token, self.messages))
            elif self._initialised or isinstance(msg, WakeupMessage):
                self.messages += 1
                self.handle(msg, sender)
        except Exception:
            self.crash()

    def _on_init(self, msg: Init, sender: Any) -> None:
        global _in_actor
        die_with_parent()
        _in_actor = True
        SatelliteActor.node_id = msg.node_id
        self.role = msg.role
        set_title(msg.node_id, msg.role)
        self.child_id = msg.args.get("child_id", msg.role)
        self.supervisor = sender
        self.context = dict(msg.context)
        self.init(msg.args)
        self._initialised = True
        self.send(sender, Started(self.child_id, os.getpid(), msg.args.get("supervisor", "")))

    def crash(self) -> None:
        """Log the traceback and leave the process for real, so the supervisor restarts us."""
        text = traceback.format_exc()
        logger.error("[{}] {} crashed:\n{}", self.node_id, self.role, text)
        sys.stderr.flush()
        os._exit(CRASH_STATUS)

    def exit_normally(self) -> None:
        """Leave deliberately: the supervisor marks the exit normal, then stops us, so
        its notice of our exit can never overtake the news that it was normal."""
        if self.supervisor is not None and self.child_id is not None:
            self.send(self.supervisor, ExitingNormally(self.child_id))
        else:
            self.send(self.myAddress, ActorExitRequest())


# --- an actor run inside its supervisor's process -------------------------------------------


class _InHost:
    """Mixed in before a SatelliteActor subclass: the same actor, run by ``HostedActor``
    inside its host's process. What it sends goes out through the host (as the host's
    sender); its timers are the host's; its address routes back to it; a crash raises
    ``HostedCrash`` instead of ending the process."""

    _host: Any
    _handle: str
    threaded_io = False

    @property
    def myAddress(self) -> Hosted:  # noqa: N802 - Thespian's name
        return Hosted(self._host.myAddress, self._handle)

    def send(self, target: Any, msg: Any) -> None:
        self._host.send(target, msg)

    def wakeupAfter(self, timePeriod: Any, payload: Any = None) -> None:  # noqa: N802, N803
        self._host.wakeupAfter(timePeriod, payload=HostedTimer(self._handle, payload))

    def crash(self) -> None:
        raise HostedCrash(traceback.format_exc())

    def exit_normally(self) -> None:
        raise HostedCrash("it left on its own, which a hosted actor may not")


_hosted_classes: dict[type, type] = {}


class HostedActor:
    """A SatelliteActor subclass served by its supervisor's process (``host``, the
    Supervisor actor) instead of a process of its own. Its host hands it what is
    addressed to it (``receive``), its readable descriptors (``ready``), its context;
    an exception out of any of them is its crash."""

    def __init__(
        self, cls: type, args: dict, host: Any, role: str, handle: str, context: dict
    ) -> None:
        hosted = _hosted_classes.get(cls)
        if hosted is None:
            hosted = _hosted_classes[cls] = type(cls.__name__, (_InHost, cls), {})
        actor = hosted()
        actor._host, actor._handle = host, handle
        actor.role = self.role = role
        actor.child_id = args.get("child_id", role)
        actor.supervisor = host.myAddress
        actor.context = dict(context)
        try:
            actor.init(args)
        except HostedCrash:
            raise
        except Exception as exc:
            raise HostedCrash(traceback.format_exc()) from exc
        actor._initialised = True
        self.actor = actor

    @property
    def watching(self) -> list[int]:
        return list(self.actor.watching)

    @property
    def messages(self) -> int:
        return self.actor.messages

    def receive(self, msg: Any, sender: Any) -> None:
        self.actor._receive(msg, sender)

    def ready(self, fd: int) -> None:
        self.actor._receive(WatchMessage([fd]), None)

    def on_context(self, context: dict) -> None:
        self.actor._receive(Context(context), None)

    def close(self) -> None:
        self.actor._receive(ActorExitRequest(), None)
