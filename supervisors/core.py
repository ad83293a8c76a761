"""The supervisor's logic as a sans-IO state machine with Erlang/OTP semantics.

No Thespian, no clock, no randomness here: time comes in as ``now`` arguments and every
method returns a list of effects (frozen dataclasses) that the host actor
(``supervisors.supervisor``) turns into actor operations, as ``protocols/`` does.

OTP rules kept (DESIGN.md section 4):
- strategies ``one_for_one``, ``one_for_all``, ``rest_for_one``, ``simple_one_for_one``;
- restart types ``permanent`` (always), ``transient`` (unless it exited normally),
  ``temporary`` (never; its spec is dropped);
- more than ``intensity`` restarts within ``period`` seconds: stop every child, then
  ``Escalate`` so that our own supervisor decides;
- children start one after another in spec order (the next only once the previous one
  reported ``started``) and stop one after another in reverse order: a polite stop, then a
  kill after the child's ``shutdown`` seconds (or at once with ``"brutal_kill"``, never
  with ``"infinity"``);
- in a group restart (``one_for_all``, ``rest_for_one``) the siblings are stopped first,
  temporary siblings are dropped, and the group starts again in order once all are gone.

What Thespian adds (DESIGN.md section 3): exit notices carry no reason and may come several
times, so a child is known by the opaque ``handle`` it reported when it started, and only
the current handle's first exit counts; the host tells us whether the child announced a
normal exit. A child that never reports ``started`` within ``start_timeout``, or whose
actor (made known with ``spawned``) exits before it does, counts as crashed; a child that
reports ``started`` when we no longer expect it is killed, so no stray actor is left
behind. Timers are never cancelled: each carries what it was set for,
and a timer that no longer matches the child's state is ignored.

Beyond OTP, as Akka's ``restartWithBackoff``: with ``backoff_min > 0`` the n-th consecutive
restart of a child waits ``min(backoff_max, backoff_min * 2**(n-1))``; a run of at least
``period`` seconds starts the count again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
RESTART_TYPES = ("permanent", "transient", "temporary")
CHILD_TYPES = ("worker", "supervisor")

# States a child can be in (which_children shows "waiting" as "starting"/"restarting").
_ALIVE = ("starting", "running", "stopping")  # an actor may exist for it


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildSpec:
    """How to start, restart and stop one child (OTP's child_spec)."""

    id: str  # unique within the supervisor, e.g. "membership"
    start: str  # dotted path of the actor class, e.g. "actors.membership.Membership"
    args: Mapping = field(default_factory=dict)  # plain data handed to the child on start
    restart: str = "permanent"  # "permanent" | "transient" | "temporary"
    shutdown: float | str = 5.0  # s after a polite stop, then kill; "brutal_kill"; "infinity"
    type: str = "worker"  # "worker" | "supervisor"

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"child id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.start, str) or "." not in self.start.strip("."):
            raise ValueError(
                f"child {self.id!r}: start must be a dotted path such as "
                f"'actors.overlay.Membership', got {self.start!r}"
            )
        if not isinstance(self.args, Mapping):
            raise ValueError(f"child {self.id!r}: args must be a mapping, got {self.args!r}")
        if self.restart not in RESTART_TYPES:
            raise ValueError(
                f"child {self.id!r}: unknown restart type {self.restart!r} "
                f"(expected one of {', '.join(RESTART_TYPES)})"
            )
        if self.shutdown not in ("brutal_kill", "infinity") and not (
            _is_number(self.shutdown) and 0 < self.shutdown < math.inf
        ):
            raise ValueError(
                f"child {self.id!r}: shutdown must be a positive number of seconds, "
                f"'brutal_kill' or 'infinity', got {self.shutdown!r}"
            )
        if self.type not in CHILD_TYPES:
            raise ValueError(
                f"child {self.id!r}: unknown type {self.type!r} (expected 'worker' or 'supervisor')"
            )


@dataclass(frozen=True)
class SupFlags:
    """The supervisor's own settings (OTP's sup_flags, plus Akka-style backoff)."""

    strategy: str = "one_for_one"
    intensity: int = 3  # more than `intensity` restarts within `period` s -> give up
    period: float = 5.0
    backoff_min: float = 0.0  # 0 = restart at once; else exponential backoff per child
    backoff_max: float = 30.0
    start_timeout: float = 10.0  # not started by then counts as crashed (inf: never)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {self.strategy!r} (expected one of {', '.join(STRATEGIES)})"
            )
        if not isinstance(self.intensity, int) or isinstance(self.intensity, bool):
            raise ValueError(f"intensity must be an integer, got {self.intensity!r}")
        if self.intensity < 0:
            raise ValueError(f"intensity must not be negative, got {self.intensity}")
        if not (_is_number(self.period) and 0 < self.period < math.inf):
            raise ValueError(f"period must be a positive number of seconds, got {self.period!r}")
        if not (_is_number(self.backoff_min) and 0 <= self.backoff_min < math.inf):
            raise ValueError(f"backoff_min must be a number >= 0, got {self.backoff_min!r}")
        if not (_is_number(self.backoff_max) and self.backoff_max < math.inf):
            raise ValueError(f"backoff_max must be a finite number, got {self.backoff_max!r}")
        if self.backoff_max < self.backoff_min:
            raise ValueError(
                f"backoff_max ({self.backoff_max}) must not be below backoff_min "
                f"({self.backoff_min})"
            )
        if not (_is_number(self.start_timeout) and self.start_timeout > 0):
            raise ValueError(
                f"start_timeout must be a positive number of seconds, got {self.start_timeout!r}"
            )


# --- effects: what the core asks the host to do ---------------------------------------------


@dataclass(frozen=True, slots=True)
class StartChild:
    """Create the child's actor with ``args`` (the spec's args, plus a dynamic child's own);
    the host calls ``started(now, id, handle)`` once it runs."""

    id: str
    spec: ChildSpec
    args: Mapping


@dataclass(frozen=True, slots=True)
class StopChild:
    """Ask the child to stop (Thespian's ActorExitRequest); the host reports ``exited``."""

    id: str
    handle: str


@dataclass(frozen=True, slots=True)
class KillChild:
    """Kill the child at once (SIGKILL); the host reports ``exited`` as usual."""

    id: str
    handle: str


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call ``timer(now, timer)`` after ``delay`` seconds. Never cancelled: the core ignores
    timers that no longer match, which keeps hosts simple."""

    delay: float
    timer: Any


@dataclass(frozen=True, slots=True)
class Escalate:
    """Restart intensity exceeded and every child is gone: exit abnormally, so that our own
    supervisor decides. The core does nothing more afterwards."""

    reason: str


@dataclass(frozen=True, slots=True)
class Stopped:
    """A requested shutdown completed: every child is gone; the host may exit normally."""


@dataclass(frozen=True, slots=True)
class Log:
    """Something worth a log line (a restart, a kill, giving up)."""

    level: str  # "info" | "warning" | "error"
    text: str


# --- timers (plain picklable data: the host may carry them through Thespian) -----------------


@dataclass(frozen=True, slots=True)
class StartTimeout:
    """The child's start attempt number ``gen`` should have reported ``started`` by now."""

    id: str
    gen: int


@dataclass(frozen=True, slots=True)
class ShutdownTimeout:
    """The child running as ``handle`` was asked to stop and had its ``shutdown`` seconds."""

    id: str
    handle: str


@dataclass(frozen=True, slots=True)
class RestartDue:
    """The backoff before the child's restart (attempt number ``gen``) is over."""

    id: str
    gen: int


# --- the state machine ------------------------------------------------------------------------


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    args: Mapping  # what StartChild hands over
    seq: int  # position in start order (dynamic and added children come last)
    state: str = "waiting"  # waiting | starting | running | stopping | restarting | stopped
    handle: str | None = None
    started_at: float | None = None
    restarts: int = 0
    runs: int = 0  # how many times it reported started
    gen: int = 0  # bumped by every start attempt and backoff: older timers are stale
    not_before: float = 0.0  # backoff: do not start before this time
    quick: int = 0  # consecutive restarts since the last run that lasted `period`
    fate: str | None = None  # once gone: "restart" (with its group), "stop", "remove"

    @property
    def id(self) -> str:
        return self.spec.id


class Supervisor:
    """One supervisor's children and rules. Every public method returns the effects the
    host must carry out, in order."""

    def __init__(self, flags: SupFlags, children: Sequence[ChildSpec]) -> None:
        if not isinstance(flags, SupFlags):
            raise TypeError(f"flags must be a SupFlags, got {type(flags).__name__}")
        specs = list(children)
        for spec in specs:
            if not isinstance(spec, ChildSpec):
                raise TypeError(f"children must be ChildSpecs, got {type(spec).__name__}")
        seen: set[str] = set()
        for spec in specs:
            if spec.id in seen:
                raise ValueError(f"duplicate child id {spec.id!r}")
            seen.add(spec.id)
        self.flags = flags
        self.simple = flags.strategy == "simple_one_for_one"
        self.template: ChildSpec | None = None
        self._children: dict[str, _Child] = {}  # in start order
        self._seq = 0
        self._dynamic = 0  # counter for generated dynamic ids
        if self.simple:
            if len(specs) != 1:
                raise ValueError(
                    f"simple_one_for_one needs exactly one template child spec, got {len(specs)}"
                )
            self.template = specs[0]
        else:
            for spec in specs:
                self._add(spec, dict(spec.args))
        self._by_handle: dict[str, str] = {}  # current handle -> child id
        # handles of actors created but not yet reported started -> (child id, start gen)
        self._spawned: dict[str, tuple[str, int]] = {}
        self._restart_times: list[float] = []  # for intensity/period
        self._mode = "new"  # new | running | shutting_down | escalating | dead
        self._final: Escalate | Stopped | None = None  # what to emit once all are gone
        self._start_queue: list[str] = []  # started one after another, in order
        self._pending: str | None = None  # the queued child being started right now
        self._group: set[str] = set()  # restart together once all of them are gone
        self._group_stops: set[str] = set()  # siblings stopped for it: wait until gone
        self._stop_queue: list[str] = []  # stopped one after another, reverse order
        self._stopping: str | None = None  # the child being stopped from the stop queue

    # -- public API ------------------------------------------------------------------------

    def init(self, now: float) -> list:
        """Start the static children, one after another (nothing for simple_one_for_one)."""
        if self._mode != "new":
            return []
        self._mode = "running"
        out: list = []
        self._start_queue = list(self._children)
        self._reconcile(now, out)
        return out

    def add_child(self, now: float, spec: ChildSpec) -> list:
        """Append a static child (after every other child in start order) and start it."""
        if self.simple:
            raise ValueError("simple_one_for_one: use start_child(now, args)")
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"spec must be a ChildSpec, got {type(spec).__name__}")
        if spec.id in self._children:
            raise ValueError(f"duplicate child id {spec.id!r}")
        if self._mode not in ("new", "running"):
            return [Log("warning", f"not adding {spec.id!r}: the supervisor is stopping")]
        self._add(spec, dict(spec.args))
        if self._mode == "new":  # init will start it with the others
            return []
        out: list = []
        self._start_queue.append(spec.id)
        self._reconcile(now, out)
        return out

    def start_child(self, now: float, args: Mapping | None = None, id: str | None = None) -> list:
        """simple_one_for_one: start a new child from the template with ``args``, under
        ``id`` or a generated one such as ``"worker-7"``. Dynamic children start at once,
        in parallel with each other."""
        if not self.simple or self.template is None:
            raise ValueError("start_child is for simple_one_for_one; use add_child(now, spec)")
        if id is not None and id in self._children:
            raise ValueError(f"duplicate child id {id!r}")
        if self._mode != "running":
            return [Log("warning", "not starting a child: the supervisor is not running")]
        if id is None:
            while True:
                self._dynamic += 1
                id = f"{self.template.id}-{self._dynamic}"
                if id not in self._children:
                    break
        spec = ChildSpec(
            id,
            self.template.start,
            self.template.args,
            self.template.restart,
            self.template.shutdown,
            self.template.type,
        )
        child = self._add(spec, {**self.template.args, **(args or {})})
        out: list = []
        self._start(child, out)
        return out

    def spawned(self, id: str, handle: str) -> None:
        """The host created the actor of child ``id``'s current start attempt. If
        ``handle`` then exits before reporting started, the start failed: a crash, known
        at once rather than at the start timeout."""
        child = self._children.get(id)
        if child is not None and child.state in _ALIVE and child.handle is None:
            self._spawned[handle] = (id, child.gen)

    def _failed_start(self, now: float, id: str, gen: int, why: str, out: list) -> None:
        child = self._children.get(id)
        if child is None or child.gen != gen or child.handle is not None:
            return
        if child.state not in _ALIVE:
            return
        for handle, (sid, sgen) in list(self._spawned.items()):
            if sid == id and sgen == gen:
                del self._spawned[handle]
                out.append(KillChild(id, handle))  # if it hangs rather than died
        if child.fate is not None or child.state == "stopping":
            self._gone(child)  # we meant to stop it anyway, and it never came up
        else:
            out.append(Log("warning", f"{child.id!r} {why}"))
            self._crashed(now, child, False, 0.0, out)

    def started(self, now: float, id: str, handle: str) -> list:
        """The host reports that child ``id`` runs as ``handle``."""
        known = self._by_handle.get(handle)
        if known is not None:
            if known == id:
                return []  # the same report twice
            return [Log("warning", f"{id!r} reported handle {handle!r}, already {known!r}'s")]
        child = self._children.get(id)
        out: list = []
        if self._mode == "dead" or child is None:
            return [KillChild(id, handle), Log("warning", f"killing unexpected child {id!r}")]
        if child.state == "starting":
            self._attach(now, child, handle)
            child.state = "running"
        elif child.state == "stopping" and child.handle is None:
            # We gave up on it while it was starting; now that it can be reached, stop it.
            self._attach(now, child, handle)
            self._send_stop(child, out)
        else:
            # A late start (after a start timeout, say) of a child we no longer expect.
            out += [KillChild(id, handle), Log("warning", f"killing a stray instance of {id!r}")]
            return out
        self._reconcile(now, out)
        return out

    def exited(self, now: float, handle: str, normal: bool = False) -> list:
        """The child running as ``handle`` exited; ``normal`` if it announced a normal exit.
        Exits of handles that are not current (duplicates, strays) are ignored."""
        id = self._by_handle.pop(handle, None)
        if id is None:
            spawn = self._spawned.pop(handle, None)
            out: list = []
            if spawn is not None:
                self._failed_start(now, spawn[0], spawn[1], "exited before it started", out)
                # Its own exit needs no kill.
                out = [e for e in out if not (type(e) is KillChild and e.handle == handle)]
                self._reconcile(now, out)
            return out
        child = self._children[id]
        ran = now - child.started_at if child.started_at is not None else 0.0
        child.handle = None
        child.started_at = None
        out: list = []
        if child.fate is not None or child.state == "stopping" or self._mode != "running":
            self._gone(child)  # we were stopping it (or about to): not a crash
        else:
            self._crashed(now, child, normal, ran, out)
        self._reconcile(now, out)
        return out

    def timer(self, now: float, timer: Any) -> list:
        """A timer from an earlier ``SetTimer`` is due; stale ones are ignored."""
        if self._mode == "dead" or type(timer) not in (ShutdownTimeout, StartTimeout, RestartDue):
            return []
        child = self._children.get(timer.id)
        if child is None:
            return []
        out: list = []
        kind = type(timer)
        if kind is ShutdownTimeout:
            if child.state == "stopping" and child.handle == timer.handle:
                out.append(KillChild(child.id, timer.handle))
                out.append(Log("warning", f"{child.id!r} did not stop in time: killed"))
        elif kind is StartTimeout:
            self._failed_start(now, child.id, timer.gen, "did not start in time", out)
        elif kind is RestartDue:
            if child.gen == timer.gen and child.state == "restarting" and self._mode == "running":
                self._start(child, out)
        self._reconcile(now, out)
        return out

    def terminate_child(self, now: float, id: str) -> list:
        """Stop one child without restarting it. A dynamic or temporary child is then
        removed; a static one stays as "stopped" (see ``restart_child``, ``delete_child``)."""
        child = self._get(id)
        if self._mode != "running":
            return []
        fate = "remove" if self.simple or child.spec.restart == "temporary" else "stop"
        out: list = []
        self._group.discard(id)
        self._start_queue = [i for i in self._start_queue if i != id]
        if child.state in _ALIVE:
            child.fate = fate
            if child.state != "stopping":
                self._queue_stops([child])
        elif child.state in ("waiting", "restarting"):
            child.gen += 1  # its backoff timer is now stale
            if fate == "remove":
                self._remove(child)
            else:
                child.state = "stopped"
        self._reconcile(now, out)
        return out

    def restart_child(self, now: float, id: str) -> list:
        """Start again a static child that was terminated (OTP restart_child)."""
        child = self._get(id)
        if child.state != "stopped":
            raise ValueError(f"child {id!r} is {child.state}, not stopped")
        if self._mode != "running":
            return []
        child.state = "waiting"
        child.not_before = now
        self._start_queue.append(id)
        self._start_queue.sort(key=lambda i: self._children[i].seq)
        out: list = []
        self._reconcile(now, out)
        return out

    def delete_child(self, id: str) -> list:
        """Forget the spec of a stopped static child (OTP delete_child)."""
        if self.simple:
            raise ValueError("simple_one_for_one: use terminate_child, which removes the child")
        child = self._get(id)
        if child.state != "stopped":
            raise ValueError(f"child {id!r} is {child.state}: terminate it first")
        self._remove(child)
        return []

    def shutdown(self, now: float) -> list:
        """Stop every child in reverse start order, then emit ``Stopped``. Exits from now on
        are never restarted."""
        if self._mode in ("shutting_down", "escalating", "dead"):
            return []
        out: list = [Log("info", "shutting down")]
        self._stop_all(Stopped())
        self._reconcile(now, out)
        return out

    def which_children(self) -> list[dict]:
        """One row per child, in start order, for the topology tool (OTP which_children)."""
        rows = []
        for child in self._children.values():
            state = child.state
            if state == "waiting":
                state = "restarting" if child.runs else "starting"
            rows.append(
                {
                    "id": child.id,
                    "handle": child.handle,
                    "restart": child.spec.restart,
                    "type": child.spec.type,
                    "state": state,
                    "restarts": child.restarts,
                    "started_at": child.started_at,
                }
            )
        return rows

    def counts(self) -> dict[str, int]:
        """OTP count_children: specs, active (an actor is known to be alive), supervisors,
        workers."""
        children = list(self._children.values())
        return {
            "specs": 1 if self.simple else len(children),
            "active": sum(1 for c in children if c.handle is not None),
            "supervisors": sum(1 for c in children if c.spec.type == "supervisor"),
            "workers": sum(1 for c in children if c.spec.type == "worker"),
        }

    @property
    def state(self) -> str:
        """The supervisor's own state: new | running | shutting_down | escalating | dead."""
        return self._mode

    # -- internals -------------------------------------------------------------------------

    def _add(self, spec: ChildSpec, args: Mapping) -> _Child:
        self._seq += 1
        child = _Child(spec, args, self._seq)
        self._children[spec.id] = child
        return child

    def _get(self, id: str) -> _Child:
        child = self._children.get(id)
        if child is None:
            raise KeyError(f"no child {id!r}")
        return child

    def _remove(self, child: _Child) -> None:
        self._children.pop(child.id, None)
        if child.handle is not None:
            self._by_handle.pop(child.handle, None)
        self._forget_spawns(child.id)
        self._group.discard(child.id)
        if child.id in self._start_queue:
            self._start_queue.remove(child.id)

    def _forget_spawns(self, id: str) -> None:
        """Drop the spawn records of child ``id``: it has started, or is gone. The host's
        handle for a spawn (its placeholder address) is not the one the child reports
        itself by, so they are not found by handle: kept, they were one record per
        connection a node ever served (issue 8)."""
        for handle in [h for h, (sid, _) in self._spawned.items() if sid == id]:
            del self._spawned[handle]

    def _attach(self, now: float, child: _Child, handle: str) -> None:
        self._forget_spawns(child.id)
        child.handle = handle
        child.started_at = now
        child.runs += 1
        self._by_handle[handle] = child.id

    def _start(self, child: _Child, out: list) -> None:
        child.gen += 1
        child.state = "starting"
        out.append(StartChild(child.id, child.spec, child.args))
        if self.flags.start_timeout < math.inf:
            out.append(SetTimer(self.flags.start_timeout, StartTimeout(child.id, child.gen)))

    def _launch(self, now: float, child: _Child, out: list) -> None:
        """Start a waiting child, or wait out its backoff first."""
        if child.not_before > now:
            child.gen += 1
            child.state = "restarting"
            out.append(SetTimer(child.not_before - now, RestartDue(child.id, child.gen)))
        else:
            self._start(child, out)

    def _send_stop(self, child: _Child, out: list) -> None:
        assert child.handle is not None
        shutdown = child.spec.shutdown
        if shutdown == "brutal_kill":
            out.append(KillChild(child.id, child.handle))
        else:
            out.append(StopChild(child.id, child.handle))
            if shutdown != "infinity":
                out.append(SetTimer(float(shutdown), ShutdownTimeout(child.id, child.handle)))

    def _queue_stops(self, children: list[_Child]) -> None:
        ids = set(self._stop_queue) | {c.id for c in children}
        known = [i for i in ids if i in self._children]
        self._stop_queue = sorted(known, key=lambda i: self._children[i].seq, reverse=True)

    def _gone(self, child: _Child) -> None:
        """A child we were stopping has no actor any more: apply what we meant for it."""
        fate, child.fate = child.fate or "stop", None
        child.handle = None
        child.started_at = None
        child.gen += 1
        if fate == "restart" and self._mode == "running":
            child.state = "waiting"
        elif fate == "remove" or self.simple:
            self._remove(child)
        else:
            child.state = "stopped"

    def _backoff(self, now: float, child: _Child, ran: float) -> float:
        if ran >= self.flags.period:
            child.quick = 0  # it ran long enough: the backoff starts over
        if self.flags.backoff_min <= 0:
            return 0.0
        delay = self.flags.backoff_min * 2.0 ** min(child.quick, 64)
        child.quick += 1
        return min(self.flags.backoff_max, delay)

    def _count_restart(self, now: float) -> bool:
        """Record a restart; False if that makes more than `intensity` within `period`
        (OTP's add_restart: a restart exactly `period` ago still counts)."""
        cutoff = now - self.flags.period
        self._restart_times = [t for t in self._restart_times if t >= cutoff]
        self._restart_times.append(now)
        return len(self._restart_times) <= self.flags.intensity

    def _crashed(self, now: float, child: _Child, normal: bool, ran: float, out: list) -> None:
        """A child we did not ask to stop is gone: apply its restart type, then the strategy."""
        child.state = "stopped"
        child.gen += 1
        kind = child.spec.restart
        if kind == "temporary" or (kind == "transient" and normal):
            # As OTP's supervisor: a normal exit is no news (a client that hung up; one
            # line each would fill a log under a polling bot), an abnormal one is.
            how, level = ("normally", "debug") if normal else ("abnormally", "info")
            out.append(Log(level, f"{kind} child {child.id!r} exited {how}: not restarted"))
            if kind == "temporary" or self.simple:
                self._remove(child)
            return
        if not self._count_restart(now):
            if self.simple:
                self._remove(child)
            reason = (
                f"child {child.id!r} exited: more than {self.flags.intensity} restarts "
                f"within {self.flags.period} s"
            )
            out.append(Log("error", f"giving up: {reason}"))
            self._stop_all(Escalate(reason))
            return
        child.restarts += 1
        delay = self._backoff(now, child, ran)
        child.state = "waiting"
        child.not_before = now + delay
        how = "normally" if normal else "abnormally"
        after = f" in {delay:g} s" if delay > 0 else ""
        strategy = self.flags.strategy
        if strategy in ("one_for_one", "simple_one_for_one"):
            out.append(Log("warning", f"{child.id!r} exited {how}: restarting it{after}"))
            self._launch(now, child, out)
            return
        # one_for_all / rest_for_one: stop the siblings, restart the group once all are gone.
        siblings = [
            c
            for c in self._children.values()
            if c is not child and (strategy == "one_for_all" or c.seq > child.seq)
        ]
        out.append(
            Log(
                "warning",
                f"{child.id!r} exited {how}: {strategy} restart of "
                f"{[child.id] + [c.id for c in siblings]}{after}",
            )
        )
        self._group.add(child.id)
        to_stop = []
        for c in siblings:
            if c.state in _ALIVE:
                if c.fate is None:
                    # OTP: temporary children stopped because of a sibling are not restarted.
                    c.fate = "remove" if c.spec.restart == "temporary" else "restart"
                if c.fate == "restart":
                    self._group.add(c.id)
                self._group_stops.add(c.id)
                if c.state != "stopping":
                    to_stop.append(c)
            elif c.state in ("waiting", "restarting"):
                c.gen += 1  # drop a pending backoff: it restarts with the group
                c.state = "waiting"
                self._group.add(c.id)
            # "stopped" siblings were stopped on purpose: they stay stopped.
        self._start_queue = [i for i in self._start_queue if i not in self._group]
        self._queue_stops(to_stop)

    def _stop_all(self, final: Escalate | Stopped) -> None:
        """Shutdown or give up: stop every child in reverse order, then emit ``final``."""
        self._mode = "escalating" if isinstance(final, Escalate) else "shutting_down"
        self._final = final
        self._start_queue.clear()
        self._pending = None
        self._group.clear()
        self._group_stops.clear()
        alive = []
        for child in list(self._children.values()):
            if child.state in _ALIVE:
                child.fate = "stop"
                if child.state != "stopping":
                    alive.append(child)
            elif child.state in ("waiting", "restarting"):
                child.gen += 1
                child.state = "stopped"
                if self.simple:
                    self._remove(child)
        self._queue_stops(alive)

    def _reconcile(self, now: float, out: list) -> None:
        """Move the stop queue, the group restart and the start queue as far as they go."""
        # 1. Stops, one at a time: the next child is asked only once the previous is gone.
        current = self._children.get(self._stopping) if self._stopping else None
        if current is None or current.state != "stopping":
            self._stopping = None
            while self._stop_queue:
                child = self._children.get(self._stop_queue.pop(0))
                if child is None or child.state not in _ALIVE:
                    continue  # gone meanwhile
                if child.state != "stopping":
                    child.state = "stopping"
                    if child.handle is not None:
                        self._send_stop(child, out)
                    # else: stop it once it reports started, or forget it at its start timeout
                self._stopping = child.id
                break
        if self._mode in ("shutting_down", "escalating"):
            if self._stopping is None and not any(
                c.state in _ALIVE for c in self._children.values()
            ):
                assert self._final is not None
                out.append(self._final)
                self._mode = "dead"
            return
        if self._mode != "running":
            return
        # 2. A group restart waits until every member is gone, then starts them in order.
        if self._group:
            ids = self._group | self._group_stops
            members = [self._children[i] for i in ids if i in self._children]
            if any(c.state in _ALIVE for c in members):
                return
            self._start_queue += [c.id for c in members if c.id in self._group]
            self._start_queue.sort(key=lambda i: self._children[i].seq)
            self._group.clear()
            self._group_stops.clear()
        # 3. Starts, one at a time: the next child only once the previous one runs.
        if self._pending is not None:
            pending = self._children.get(self._pending)
            if pending is not None and pending.state in ("starting", "restarting"):
                return
            self._pending = None
        while self._start_queue:
            child = self._children.get(self._start_queue.pop(0))
            if child is None or child.state != "waiting":
                continue
            self._launch(now, child, out)
            self._pending = child.id
            return
