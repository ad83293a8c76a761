"""The supervisor actor: Thespian I/O around the pure OTP logic of ``supervisors.core``.

Thespian facts it handles (DESIGN.md section 3): ``ChildActorExited`` carries no
reason and may come several times (the core ignores exits of handles that are not
current); "normal" exits are announced by the child beforehand (``ExitingNormally``);
kills are SIGKILLs of the pid the child reported when it started.
"""

from __future__ import annotations

import importlib
import os
import signal
import time
import traceback
from datetime import timedelta
from typing import Any

import psutil
from loguru import logger
from thespian.actors import ActorExitRequest, ChildActorExited, WakeupMessage, WatchMessage

from actors.base import (
    Context,
    ExitingNormally,
    Hosted,
    HostedActor,
    HostedCrash,
    HostedTimer,
    Init,
    SatelliteActor,
    Started,
    Stats,
    ToHosted,
    forget_child_address,
)
from actors.connection import StartWorker, start_worker
from actors.overlay import Answer, PeerGone, Query, WorkerExited
from supervisors import core

ESCALATE_STATUS = 71


class Shutdown:
    """Ask a supervisor for an orderly stop of its subtree; it answers ``ShutdownDone``."""


class ShutdownDone:
    pass


def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _pss(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid).memory_full_info().pss
    except (psutil.Error, AttributeError):
        return None


class Sup:
    """One supervisor of the tree: the OTP core and the actors it started. Either the
    process's own (the root) or one hosted in that process (a child spec whose args say
    ``hosted``): a supervisor only starts, watches and stops, which does not earn a
    process of its own (about 6 MiB each, issue 8). A hosted supervisor must be
    simple_one_for_one: it has no static children, so it is up as soon as it exists.
    Its parent sees it as any child: started, stopped (it stops its own children first),
    killed (its children are), and exited when it gives up (Escalate).

    A worker spec may be hosted too: an object the host process serves (``watching``,
    ``ready``, ``close``): the listener, or an actor class run by ``HostedActor``
    (Membership), which also gets what is sent to it and its context. An exception out
    of it is its crash: it is closed, and its exit goes to the core like any child's."""

    def __init__(
        self, host: Supervisor, key: str, args: dict, context: dict, parent: Sup | None = None
    ) -> None:
        self.host = host
        self.key = key  # our handle in our parent's core ("" for the root): names our timers
        self.parent = parent
        self.child_id: str = args.get("child_id") or key
        self.role: str = args.get("role") or f"Supervisor:{self.child_id}"
        self.flags = core.SupFlags(**args["flags"])
        self.specs = [core.ChildSpec(**spec) for spec in args["children"]]
        if parent is not None and self.flags.strategy != "simple_one_for_one":
            raise ValueError(f"{self.child_id!r}: only simple_one_for_one can be hosted")
        self.core = core.Supervisor(self.flags, self.specs)
        self.context = context
        self.addresses: dict[str, Any] = {}  # handle -> actor address
        self.pids: dict[str, int] = {}  # handle -> pid
        self.started_at: dict[str, float] = {}
        self.normal: set[str] = set()  # handles that announced a normal exit
        self.hosted: dict[str, Sup] = {}  # handle -> a supervisor child of ours, in-process
        self.hosted_workers: dict[str, Any] = {}  # handle -> a worker child of ours, in-process
        self.spawns = 0  # numbers the handles of our hosted children
        self.gone = False  # a hosted supervisor that stopped: it starts nothing more
        self.refused_logged = -10.0
        # Who hears of a worker's exit (WorkerExited), the first also of a dial refused.
        notify = args.get("notify") or []
        self.notify: list[str] = [notify] if isinstance(notify, str) else list(notify)
        # A worker costs a process: beyond this many, new connections are refused (a
        # thousand connections at once must not become a thousand processes).
        self.max_children = args.get("max_children")

    # -- context for the children ---------------------------------------------------------

    def child_context(self) -> dict:
        ctx = dict(self.context)
        if self.core.simple:
            # Dynamic workers are named by nobody: their addresses in every sibling's
            # context were a Context message to each per connection, and an entry per
            # connection ever served (issue 8).
            return ctx
        for row in self.core.which_children():
            handle = row.get("handle")
            if row.get("state") != "running":
                continue
            if handle in self.hosted or handle in self.hosted_workers:
                ctx[row["id"]] = Hosted(self.host.myAddress, handle)
            elif handle in self.addresses:
                ctx[row["id"]] = self.addresses[handle]
        return ctx

    def broadcast_context(self) -> None:
        ctx = self.child_context()
        for handle, address in self.addresses.items():
            if handle in self.pids:
                self.host.send(address, Context(ctx))
        for sub in self.hosted.values():
            sub.context = ctx
            sub.broadcast_context()
        for handle, worker in list(self.hosted_workers.items()):
            if hasattr(worker, "on_context"):
                self.run_hosted(handle, worker.on_context, ctx)

    # -- what the host routes to us -------------------------------------------------------

    def on_started(self, now: float, msg: Started, sender: Any) -> None:
        handle = str(sender)
        self.addresses[handle] = sender
        self.pids[handle] = msg.pid
        self.started_at[handle] = time.time()
        self.apply(self.core.started(now, msg.child_id, handle))
        if not self.core.simple:  # (a new dynamic worker changes no one's context)
            self.broadcast_context()

    def on_exited(self, now: float, handle: str) -> None:
        normal = handle in self.normal
        self.normal.discard(handle)
        self.pids.pop(handle, None)
        self.started_at.pop(handle, None)
        address = self.addresses.pop(handle, None)
        if address is not None and not self.gone:  # (as a dead supervisor process: silent)
            for name in self.notify:
                if self.context.get(name) is not None:
                    self.host.send(self.context[name], WorkerExited(address))
        if not self.gone:
            self.apply(self.core.exited(now, handle, normal))

    def start_worker(self, now: float, args: dict) -> None:
        if self.gone:
            self.refuse_worker(args, quietly=True)
        elif self.max_children and self.core.counts()["workers"] >= self.max_children:
            self.refuse_worker(args)
        else:
            self.apply(self.core.start_child(now, args))

    def refuse_worker(self, args: dict, quietly: bool = False) -> None:
        first = self.context.get(self.notify[0]) if self.notify else None
        if "connect" in args and first is not None and not quietly:
            # A dial we will not make: for Membership, a peer that could not be reached.
            self.host.send(first, PeerGone(args["connect"], None))
        fd = args.get("fd")
        if fd is not None:
            try:
                os.close(fd.detach())  # the connection we will not serve
            except OSError:
                pass
        now = time.monotonic()
        if not quietly and now - self.refused_logged > 5:  # one line per burst
            self.refused_logged = now
            logger.warning(
                "[{}] {}: {} connections already; refusing more",
                self.host.node_id,
                self.role,
                self.max_children,
            )

    # -- effects --------------------------------------------------------------------------

    def apply(self, effects: list) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is core.StartChild:
                if not effect.spec.args.get("hosted"):
                    self.start(effect)
                elif effect.spec.type == "supervisor":
                    self.start_hosted(effect)
                else:
                    self.start_hosted_worker(effect)
            elif kind in (core.StopChild, core.KillChild) and effect.handle in self.hosted_workers:
                self.hosted_worker_gone(effect.handle, normal=kind is core.StopChild)
            elif kind in (core.StopChild, core.KillChild) and effect.handle in self.hosted:
                # Stopped or killed alike, as a supervisor process told to stop: its
                # workers go at once (one caught half-way through its start would never
                # confirm); only whether the exit counts as normal differs.
                sub = self.hosted[effect.handle]
                sub.kill_all()
                self.hosted_gone(sub, normal=kind is core.StopChild)
            elif kind is core.StopChild:
                address = self.addresses.get(effect.handle)
                if address is not None:
                    self.host.send(address, ActorExitRequest())
            elif kind is core.KillChild:
                kill(self.pids.get(effect.handle))
            elif kind is core.SetTimer:
                self.host.wakeupAfter(
                    timedelta(seconds=max(0.0, effect.delay)),
                    payload=("sup", self.key, effect.timer),
                )
            elif kind is core.Log:
                logger.log(
                    effect.level.upper(), "[{}] {}: {}", self.host.node_id, self.role, effect.text
                )
            elif kind is core.Escalate:
                # Our children are gone; we exit abnormally so that our supervisor decides.
                logger.error("[{}] {} gives up: {}", self.host.node_id, self.role, effect.reason)
                if self.parent is None:
                    os._exit(ESCALATE_STATUS)
                self.parent.hosted_gone(self, normal=False)
            elif kind is core.Stopped:
                if self.parent is None:
                    self.host.stopped()
                else:
                    self.parent.hosted_gone(self, normal=True)

    def start(self, effect: Any) -> None:
        spec = effect.spec
        args = {**dict(spec.args), **dict(effect.args or {}), "child_id": effect.id}
        if self.parent is not None:
            args["supervisor"] = self.key  # comes back in Started: which of us it is
        address = self.host.createActor(_import(spec.start))
        # A placeholder until the child reports Started from its own address, under
        # which it is then known (kept here, it was never dropped: issue 8).
        self.core.spawned(effect.id, str(address))
        role = args.get("role") or spec.start.rpartition(".")[2]
        self.host.send(address, Init(self.host.node_id, role, args, self.child_context()))

    def start_hosted(self, effect: Any) -> None:
        now = time.monotonic()
        self.spawns += 1
        handle = f"{self.key}/{effect.id}#{self.spawns}"  # unique in this process
        args = {**dict(effect.spec.args), **dict(effect.args or {}), "child_id": effect.id}
        sub = Sup(self.host, handle, args, self.child_context(), parent=self)
        self.hosted[handle] = sub
        self.host.sups[handle] = sub
        self.started_at[handle] = time.time()
        self.core.spawned(effect.id, handle)
        sub.apply(sub.core.init(now))
        self.apply(self.core.started(now, effect.id, handle))
        self.broadcast_context()

    def hosted_gone(self, sub: Sup, normal: bool) -> None:
        """A hosted supervisor of ours stopped, gave up, or was killed: to our core, the
        exit of that child. Its actors' exit notices still come to it, and change nothing."""
        if self.hosted.pop(sub.key, None) is None:
            return
        sub.gone = True
        self.host.sups.pop(sub.key, None)
        self.started_at.pop(sub.key, None)
        self.apply(self.core.exited(time.monotonic(), sub.key, normal))
        self.broadcast_context()

    def start_hosted_worker(self, effect: Any) -> None:
        now = time.monotonic()
        self.spawns += 1
        handle = f"{self.key}/{effect.id}#{self.spawns}"
        spec = effect.spec
        args = {**dict(spec.args), **dict(effect.args or {}), "child_id": effect.id}
        role = args.get("role") or spec.start.rpartition(".")[2]
        self.core.spawned(effect.id, handle)
        cls = _import(spec.start)
        try:
            if isinstance(cls, type) and issubclass(cls, SatelliteActor):
                worker = HostedActor(cls, args, self.host, role, handle, self.child_context())
            else:
                worker = cls(args, self, role)
        except OSError as exc:  # a port taken, say: one line, and the core decides
            logger.error("[{}] {} could not start: {}", self.node_id, role, exc)
            self.apply(self.core.exited(now, handle))
            return
        except Exception as exc:
            logger.error("[{}] {} crashed:\n{}", self.node_id, role, crash_text(exc))
            self.apply(self.core.exited(now, handle))
            return
        self.hosted_workers[handle] = worker
        self.started_at[handle] = time.time()
        self.host.refresh_watching()
        self.apply(self.core.started(now, effect.id, handle))
        self.broadcast_context()

    def serve(self, fd: int) -> bool:
        """``fd`` is readable: to the hosted worker watching it, if one of ours is."""
        for handle, worker in list(self.hosted_workers.items()):
            if fd in worker.watching:
                self.run_hosted(handle, worker.ready, fd)
                return True
        return False

    def deliver(self, handle: str, msg: Any, sender: Any) -> bool:
        """A message for our hosted actor ``handle``, if it is ours (and alive)."""
        worker = self.hosted_workers.get(handle)
        if worker is None:
            return False
        if hasattr(worker, "receive"):
            self.run_hosted(handle, worker.receive, msg, sender)
        return True

    def run_hosted(self, handle: str, call: Any, *args: Any) -> None:
        """Call into a hosted worker; whatever it raises is its crash."""
        try:
            call(*args)
        except Exception as exc:
            worker = self.hosted_workers.get(handle)
            role = worker.role if worker is not None else handle
            logger.error("[{}] {} crashed:\n{}", self.node_id, role, crash_text(exc))
            self.hosted_worker_gone(handle, normal=False)
        self.host.refresh_watching()  # what it watches may have changed

    def hosted_worker_gone(self, handle: str, normal: bool) -> None:
        """Stopped, killed or crashed: closed, and to our core the exit of that child."""
        worker = self.hosted_workers.pop(handle, None)
        if worker is None:
            return
        self.started_at.pop(handle, None)
        try:
            worker.close()
        except Exception as exc:  # closing is the end of it either way
            logger.warning("[{}] {} did not close cleanly: {}", self.node_id, worker.role, exc)
        finally:
            self.host.refresh_watching()
            self.apply(self.core.exited(time.monotonic(), handle, normal))
            self.broadcast_context()

    # -- what a hosted worker (the listener) asks of us -----------------------------------

    @property
    def node_id(self) -> str:
        return self.host.node_id

    def workers_up(self, name: str) -> bool:
        return self.child_context().get(name) is not None

    def to_workers(self, name: str, args: dict) -> None:
        workers = self.child_context().get(name)
        sup = self.host.sups.get(workers.handle) if isinstance(workers, Hosted) else None
        if sup is not None and workers.address == self.host.myAddress:
            sup.start_worker(time.monotonic(), args)  # in this process: no message
        elif workers is not None:
            start_worker(self.host, workers, args)

    def kill_all(self) -> None:
        """SIGKILL every actor below us, at once (Thespian would otherwise hold an exit
        until each child confirmed its own); close the hosted workers."""
        for pid in self.pids.values():
            kill(pid)
        for sub in list(self.hosted.values()):
            sub.kill_all()
        for worker in self.hosted_workers.values():
            try:
                worker.close()
            except Exception as exc:
                logger.warning("[{}] {} did not close cleanly: {}", self.node_id, worker.role, exc)
        self.hosted_workers.clear()
        self.host.refresh_watching()

    # -- topology -------------------------------------------------------------------------

    def rows(self) -> list[dict]:
        out = []
        now = time.time()
        for row in self.core.which_children():
            handle = row.get("handle")
            pid = self.pids.get(handle)
            sub = self.hosted.get(handle)
            worker = self.hosted_workers.get(handle)
            out.append(
                {
                    "id": row["id"],
                    "handle": handle,
                    "type": row.get("type", "worker"),
                    "strategy": sub.flags.strategy if sub is not None else None,
                    "restart": row.get("restart"),
                    "state": row.get("state"),
                    "restarts": row.get("restarts", 0),
                    # A hosted child has no process of its own: its parent's row
                    # shows the pid and the memory.
                    "pid": pid,
                    "uptime": round(now - self.started_at[handle], 3)
                    if handle in self.started_at
                    else None,
                    "pss": _pss(pid),
                    # until the child answers; a hosted worker: what it has handled
                    "messages": worker.messages if worker is not None else None,
                    "children": sub.rows() if sub is not None else [],
                }
            )
        return out


def crash_text(exc: BaseException) -> str:
    """A hosted child's crash as its log line shows it: the traceback of what it raised."""
    if isinstance(exc, HostedCrash):
        return str(exc)
    return "".join(traceback.format_exception(exc))


def kill(pid: int | None) -> None:
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Supervisor(SatelliteActor):
    """The supervisor actor: the root ``Sup`` of this process, and any hosted below it."""

    def init(self, args: dict) -> None:
        self.owners: dict[str, Sup] = {}  # actor handle -> the Sup that started it
        self.sups: dict[str, Sup] = {}  # key -> every live Sup of this process
        self.root = Sup(self, "", dict(args, child_id=self.child_id, role=self.role), self.context)
        self.sups[""] = self.root
        self.topology_waits: dict[Any, dict] = {}
        self.queries = 0  # numbers our own topology queries to child supervisors
        # How long a topology answer waits for children that do not answer (hung).
        self.topology_timeout = float(args.get("topology_timeout", 1.0))
        self.shutdown_to: Any = None
        self.launcher_pid = args.get("launcher_pid")
        if args.get("name"):
            self.context[args["name"]] = self.myAddress
        self.launcher_fd: int | None = None
        if self.launcher_pid:
            self.start_launcher_watch()
        self.root.apply(self.root.core.init(time.monotonic()))

    def on_context(self) -> None:
        self.root.broadcast_context()

    # -- messages -------------------------------------------------------------------------

    def handle(self, msg: Any, sender: Any) -> None:
        now = time.monotonic()
        if isinstance(msg, Started):
            # (createActor's address is a placeholder: the child's own is known from here)
            sup = self.sups.get(msg.supervisor)
            if sup is None:
                # Its supervisor stopped while it started: no stray actor is left behind.
                kill(msg.pid)
            else:
                self.owners[str(sender)] = sup
                sup.on_started(now, msg, sender)
        elif isinstance(msg, ChildActorExited):
            handle = str(msg.childAddress)
            sup = self.owners.pop(handle, None)
            if sup is not None:
                sup.on_exited(now, handle)
            else:  # a duplicate notice (Thespian sends some), or a child that never started
                for sup in list(self.sups.values()):
                    sup.apply(sup.core.exited(now, handle))
            forget_child_address(self, msg.childAddress)
            self.topology_gone(handle)
        elif isinstance(msg, ExitingNormally):
            sup = self.owners.get(str(sender))
            if sup is not None:
                sup.normal.add(str(sender))
            self.send(sender, ActorExitRequest())
        elif isinstance(msg, ToHosted):
            # For a hosted child that is gone (restarted since): dropped, as Thespian drops
            # what is sent to a dead actor. (Hosted supervisors get StartWorker instead.)
            any(sup.deliver(msg.handle, msg.msg, sender) for sup in list(self.sups.values()))
        elif isinstance(msg, StartWorker):
            sup = self.sups.get(msg.supervisor or "")
            if sup is None:  # for a hosted supervisor that has stopped since
                self.root.refuse_worker(msg.args, quietly=True)
            else:
                sup.start_worker(now, msg.args)
        elif isinstance(msg, WatchMessage):
            for fd in msg.ready:
                if fd == self.launcher_fd:
                    self.watch_launcher()
                else:
                    any(sup.serve(fd) for sup in list(self.sups.values()))
        elif isinstance(msg, WakeupMessage):
            payload = msg.payload
            if isinstance(payload, HostedTimer):
                msg.payload = payload.payload
                any(sup.deliver(payload.handle, msg, sender) for sup in list(self.sups.values()))
            elif payload == "launcher":
                self.watch_launcher()
            elif isinstance(payload, tuple) and payload[0] == "topology":
                self.finish_topology(payload[1])
            elif isinstance(payload, tuple) and payload[0] == "sup":
                sup = self.sups.get(payload[1])
                if sup is not None:  # else the timer of a hosted supervisor now gone
                    sup.apply(sup.core.timer(now, payload[2]))
        elif isinstance(msg, Query):
            self.topology(msg, sender)
        elif isinstance(msg, Answer):
            self.topology_part(msg)
        elif isinstance(msg, Stats):
            self.stats_part(msg)
        elif isinstance(msg, Shutdown):
            self.shutdown_to = sender
            self.root.apply(self.root.core.shutdown(now))

    def stopped(self) -> None:
        """The root's children have all stopped (Shutdown)."""
        if self.shutdown_to is not None:
            self.send(self.shutdown_to, ShutdownDone())
        self.exit_normally()

    def stopping(self) -> None:
        """Told to stop by our own supervisor (it gives us ``shutdown`` seconds): our
        children go at once. Thespian would otherwise hold our exit until each child
        confirmed its own, and a child caught half-way through its start never does."""
        self.root.kill_all()
        # A child restarted just before the stop has no pid here until its Started
        # arrives, and would hold our exit (and Thespian's admin) for good: every
        # process we forked goes.
        for child in psutil.Process().children():
            kill(child.pid)

    # -- the launcher watch ---------------------------------------------------------------

    def start_launcher_watch(self) -> None:
        """Watch the launcher through a pidfd, readable once it has ended: no timer, so an
        idle node_sup sleeps (issue 8: a 1 s poll was a wakeup a second in every node).
        Without pidfds (not Linux 5.3+) it polls every second."""
        try:
            self.launcher_fd = os.pidfd_open(self.launcher_pid)
        except ProcessLookupError:  # already gone
            self.watch_launcher()
        except (AttributeError, OSError):
            self.wakeupAfter(timedelta(seconds=1), payload="launcher")
        else:
            self.refresh_watching()

    def refresh_watching(self) -> None:
        """What Thespian's loop watches for us: the launcher, and our hosted workers'."""
        fds = [self.launcher_fd] if self.launcher_fd is not None else []
        for sup in self.sups.values():
            for worker in sup.hosted_workers.values():
                fds += worker.watching
        self.watching = fds

    def watch_launcher(self) -> None:
        """If run_node.py was SIGKILLed, take the whole node down: Thespian's admin and
        logger would otherwise live on as orphans and keep the admin port."""
        try:
            os.kill(self.launcher_pid, 0)
            alive = psutil.Process(self.launcher_pid).status() != psutil.STATUS_ZOMBIE
        except (ProcessLookupError, psutil.Error):
            alive = False
        if alive:
            if self.launcher_fd is None:  # polling; a pidfd stays watched
                self.wakeupAfter(timedelta(seconds=1), payload="launcher")
            return
        try:
            admin = psutil.Process(os.getppid())
            for sibling in admin.children():
                if sibling.pid != os.getpid():
                    sibling.kill()
            admin.kill()
        except psutil.Error:
            pass
        os._exit(0)  # our children follow through PR_SET_PDEATHSIG

    # -- topology -------------------------------------------------------------------------

    def topology(self, msg: Query, sender: Any) -> None:
        rows = self.root.rows()
        me = {
            "id": self.child_id,
            "type": "supervisor",
            "strategy": self.root.flags.strategy,
            "pid": os.getpid(),
            "pss": _pss(os.getpid()),
            "messages": self.messages,
            "children": rows,
        }
        self.queries += 1
        key = self.queries
        waiting: dict[Any, dict] = {}
        self.ask_children(key, self.root, rows, waiting)
        if not waiting:
            self.send(sender, Answer(msg.what, msg.token, self.with_node_pss(me)))
            return
        self.topology_waits[key] = {
            "reply_to": sender,
            "token": msg.token,
            "what": msg.what,
            "tree": me,
            "waiting": waiting,
        }
        self.wakeupAfter(timedelta(seconds=self.topology_timeout), payload=("topology", key))

    def ask_children(self, key: int, sup: Sup, rows: list[dict], waiting: dict) -> None:
        """Ask each actor in ``rows`` (``sup``'s) how busy it is, a child supervisor for its
        own tree; a hosted supervisor's rows are here already, their actors are asked."""
        for row in rows:
            handle = row["handle"]
            if handle in sup.hosted:
                self.ask_children(key, sup.hosted[handle], row["children"], waiting)
            elif handle in sup.addresses:
                token = (key, (sup.key, row["id"]))
                waiting[token[1]] = row
                if row["type"] == "supervisor":
                    self.send(sup.addresses[handle], Query("topology", token))
                else:
                    self.send(sup.addresses[handle], Stats(token))

    def topology_part(self, msg: Answer) -> None:
        key, child = msg.token
        entry = self.topology_waits.get(key)
        if entry is None:
            return
        row = entry["waiting"].pop(child, None)
        if row is not None:
            row["strategy"] = msg.body.get("strategy")
            row["messages"] = msg.body.get("messages")
            row["children"] = msg.body.get("children", [])
        if not entry["waiting"]:
            self.finish_topology(key)

    def stats_part(self, msg: Stats) -> None:
        key, child = msg.token
        entry = self.topology_waits.get(key)
        if entry is None:
            return
        row = entry["waiting"].pop(child, None)
        if row is not None:
            row["messages"] = msg.messages
        if not entry["waiting"]:
            self.finish_topology(key)

    def topology_gone(self, handle: str) -> None:
        """A child exited while a topology query waited for it (a connection worker
        closing, say): it will never answer, so the query stops waiting for it."""
        for key, entry in list(self.topology_waits.items()):
            waiting = entry["waiting"]
            for token, row in list(waiting.items()):
                if row["handle"] == handle:
                    del waiting[token]
            if not waiting:
                self.finish_topology(key)

    def finish_topology(self, key: Any) -> None:
        entry = self.topology_waits.pop(key, None)
        if entry is not None:
            tree = self.with_node_pss(entry["tree"])
            self.send(entry["reply_to"], Answer(entry["what"], entry["token"], tree))

    def with_node_pss(self, tree: dict) -> dict:
        """The root's answer also carries ``node_pss``: PSS summed over every process of
        the node, the launcher and Thespian's admin (our parent) with those of the tree,
        issue 8's measure of a node (None when one cannot be read). /metrics shows it."""
        if not self.launcher_pid:
            return tree  # not the root: the node's other processes are not ours to count
        pss: dict[int, int | None] = {}

        def walk(row: dict) -> None:
            if row.get("pid") is not None:
                pss[row["pid"]] = row.get("pss")
            for child in row.get("children") or []:
                walk(child)

        walk(tree)
        for pid in (self.launcher_pid, os.getppid()):
            if pid > 1 and pid not in pss:
                pss[pid] = _pss(pid)
        values = list(pss.values())
        tree["node_pss"] = None if None in values else sum(values)
        return tree
