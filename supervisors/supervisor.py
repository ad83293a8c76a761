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
from datetime import timedelta
from typing import Any

import psutil
from loguru import logger
from thespian.actors import ActorExitRequest, ChildActorExited, WakeupMessage, WatchMessage

from actors.base import (
    Context,
    ExitingNormally,
    Init,
    SatelliteActor,
    Started,
    Stats,
)
from actors.connection import StartWorker
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


class Supervisor(SatelliteActor):
    def init(self, args: dict) -> None:
        self.flags = core.SupFlags(**args["flags"])
        self.specs = [core.ChildSpec(**spec) for spec in args["children"]]
        self.core = core.Supervisor(self.flags, self.specs)
        self.addresses: dict[str, Any] = {}  # handle -> actor address
        self.pids: dict[str, int] = {}  # handle -> pid
        self.started_at: dict[str, float] = {}
        self.normal: set[str] = set()  # handles that announced a normal exit
        self.topology_waits: dict[Any, dict] = {}
        self.queries = 0  # numbers our own topology queries to child supervisors
        self.shutdown_to: Any = None
        self.refused_logged = -10.0
        self.launcher_pid = args.get("launcher_pid")
        # Who hears of a worker's exit (WorkerExited), the first also of a dial refused.
        notify = args.get("notify") or []
        self.notify: list[str] = [notify] if isinstance(notify, str) else list(notify)
        # A worker costs a process: beyond this many, new connections are refused (a
        # thousand connections at once must not become a thousand processes).
        self.max_children = args.get("max_children")
        if args.get("name"):
            self.context[args["name"]] = self.myAddress
        self.launcher_fd: int | None = None
        if self.launcher_pid:
            self.start_launcher_watch()
        self.apply(self.core.init(time.monotonic()))

    # -- context for the children ---------------------------------------------------------

    def child_context(self) -> dict:
        ctx = dict(self.context)
        for row in self.core.which_children():
            handle = row.get("handle")
            if handle in self.addresses and row.get("state") == "running":
                ctx[row["id"]] = self.addresses[handle]
        return ctx

    def broadcast_context(self) -> None:
        ctx = Context(self.child_context())
        for handle, address in self.addresses.items():
            if handle in self.pids:
                self.send(address, ctx)

    def on_context(self) -> None:
        self.broadcast_context()

    # -- messages -------------------------------------------------------------------------

    def handle(self, msg: Any, sender: Any) -> None:
        now = time.monotonic()
        if isinstance(msg, Started):
            handle = str(sender)
            self.addresses[handle] = sender
            self.pids[handle] = msg.pid
            self.started_at[handle] = time.time()
            self.apply(self.core.started(now, msg.child_id, handle))
            self.broadcast_context()
        elif isinstance(msg, ChildActorExited):
            handle = str(msg.childAddress)
            normal = handle in self.normal
            self.normal.discard(handle)
            self.pids.pop(handle, None)
            address = self.addresses.pop(handle, None)
            if address is not None:
                for name in self.notify:
                    if self.context.get(name) is not None:
                        self.send(self.context[name], WorkerExited(address))
            self.apply(self.core.exited(now, handle, normal))
        elif isinstance(msg, ExitingNormally):
            self.normal.add(str(sender))
            self.send(sender, ActorExitRequest())
        elif isinstance(msg, StartWorker):
            if self.max_children and self.core.counts()["workers"] >= self.max_children:
                self.refuse_worker(msg.args)
            else:
                self.apply(self.core.start_child(now, msg.args))
        elif isinstance(msg, WatchMessage):
            if self.launcher_fd is not None and self.launcher_fd in msg.ready:
                self.watch_launcher()
        elif isinstance(msg, WakeupMessage):
            if msg.payload == "launcher":
                self.watch_launcher()
            elif isinstance(msg.payload, tuple) and msg.payload[0] == "topology":
                self.finish_topology(msg.payload[1])
            else:
                self.apply(self.core.timer(now, msg.payload))
        elif isinstance(msg, Query):
            self.topology(msg, sender)
        elif isinstance(msg, Answer):
            self.topology_part(msg)
        elif isinstance(msg, Stats):
            self.stats_part(msg)
        elif isinstance(msg, Shutdown):
            self.shutdown_to = sender
            self.apply(self.core.shutdown(now))

    def refuse_worker(self, args: dict) -> None:
        first = self.context.get(self.notify[0]) if self.notify else None
        if "connect" in args and first is not None:
            # A dial we will not make: for Membership, a peer that could not be reached.
            self.send(first, PeerGone(args["connect"], None))
        fd = args.get("fd")
        if fd is not None:
            try:
                os.close(fd.detach())  # the connection we will not serve
            except OSError:
                pass
        now = time.monotonic()
        if now - self.refused_logged > 5:  # one line per burst, not one per connection
            self.refused_logged = now
            logger.warning(
                "[{}] {}: {} connections already; refusing more",
                self.node_id,
                self.role,
                self.max_children,
            )

    def apply(self, effects: list) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is core.StartChild:
                self.start(effect)
            elif kind is core.StopChild:
                address = self.addresses.get(effect.handle)
                if address is not None:
                    self.send(address, ActorExitRequest())
            elif kind is core.KillChild:
                pid = self.pids.get(effect.handle)
                if pid is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            elif kind is core.SetTimer:
                self.wakeupAfter(timedelta(seconds=max(0.0, effect.delay)), payload=effect.timer)
            elif kind is core.Log:
                logger.log(
                    effect.level.upper(), "[{}] {}: {}", self.node_id, self.role, effect.text
                )
            elif kind is core.Escalate:
                # Our children are gone; crash so that our own supervisor decides.
                logger.error("[{}] {} gives up: {}", self.node_id, self.role, effect.reason)
                os._exit(ESCALATE_STATUS)
            elif kind is core.Stopped:
                if self.shutdown_to is not None:
                    self.send(self.shutdown_to, ShutdownDone())
                self.exit_normally()

    def start(self, effect: Any) -> None:
        spec = effect.spec
        args = {**dict(spec.args), **dict(effect.args or {}), "child_id": effect.id}
        address = self.createActor(_import(spec.start))
        self.addresses[str(address)] = address
        self.core.spawned(effect.id, str(address))
        role = args.get("role") or spec.start.rpartition(".")[2]
        self.send(address, Init(self.node_id, role, args, self.child_context()))

    def stopping(self) -> None:
        """Told to stop by our own supervisor (it gives us ``shutdown`` seconds): our
        children go at once. Thespian would otherwise hold our exit until each child
        confirmed its own, and a child caught half-way through its start never does."""
        for pid in self.pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

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
            self.watching.append(self.launcher_fd)

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

    def rows(self) -> list[dict]:
        out = []
        now = time.time()
        for row in self.core.which_children():
            handle = row.get("handle")
            pid = self.pids.get(handle)
            spec_type = row.get("type", "worker")
            out.append(
                {
                    "id": row["id"],
                    "handle": handle,
                    "type": spec_type,
                    "restart": row.get("restart"),
                    "state": row.get("state"),
                    "restarts": row.get("restarts", 0),
                    "pid": pid,
                    "uptime": round(now - self.started_at[handle], 3)
                    if handle in self.started_at
                    else None,
                    "pss": _pss(pid),
                    "children": [],
                }
            )
        return out

    def topology(self, msg: Query, sender: Any) -> None:
        rows = self.rows()
        me = {
            "id": self.child_id,
            "type": "supervisor",
            "strategy": self.flags.strategy,
            "pid": os.getpid(),
            "pss": _pss(os.getpid()),
            "messages": self.messages,
            "children": rows,
        }
        waiting = {}
        self.queries += 1
        key = self.queries
        for row in rows:
            row["messages"] = None  # until the child answers
            if row["handle"] not in self.addresses:
                continue
            waiting[row["id"]] = row
            if row["type"] == "supervisor":
                self.send(self.addresses[row["handle"]], Query("topology", (key, row["id"])))
            else:
                self.send(self.addresses[row["handle"]], Stats((key, row["id"])))
        entry = {
            "reply_to": sender,
            "token": msg.token,
            "what": msg.what,
            "tree": me,
            "waiting": waiting,
        }
        if not waiting:
            self.send(sender, Answer(msg.what, msg.token, me))
            return
        self.topology_waits[key] = entry
        self.wakeupAfter(timedelta(seconds=1), payload=("topology", key))

    def topology_part(self, msg: Answer) -> None:
        key, child_id = msg.token
        entry = self.topology_waits.get(key)
        if entry is None:
            return
        row = entry["waiting"].pop(child_id, None)
        if row is not None:
            row["strategy"] = msg.body.get("strategy")
            row["messages"] = msg.body.get("messages")
            row["children"] = msg.body.get("children", [])
        if not entry["waiting"]:
            self.finish_topology(key)

    def stats_part(self, msg: Stats) -> None:
        key, child_id = msg.token
        entry = self.topology_waits.get(key)
        if entry is None:
            return
        row = entry["waiting"].pop(child_id, None)
        if row is not None:
            row["messages"] = msg.messages
        if not entry["waiting"]:
            self.finish_topology(key)

    def finish_topology(self, key: Any) -> None:
        entry = self.topology_waits.pop(key, None)
        if entry is not None:
            self.send(entry["reply_to"], Answer(entry["what"], entry["token"], entry["tree"]))
