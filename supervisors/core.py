"""A supervisor's decisions, as OTP's ``supervisor`` makes them, with no I/O.

Like the protocols, this is a state machine: time comes in as ``now``, and every
method returns effects (start, stop, kill a child; set a timer; give up) that the
supervisor actor carries out. That is what lets every OTP rule be tested with a fake
clock, and the actor stay a thin shell around Thespian's quirks.

Rules (OTP's, plus Akka's restart backoff):
- children start one after another in spec order (the next once the previous has
  reported itself started) and stop in reverse order: a polite stop, then a kill
  after the child's ``shutdown`` seconds (``brutal_kill``: at once; ``infinity``:
  never, for supervisors);
- ``permanent`` children always restart, ``transient`` ones only after an abnormal
  exit, ``temporary`` ones never (and leave the supervisor);
- ``one_for_one`` restarts the child that died; ``one_for_all`` stops the others and
  restarts all; ``rest_for_one`` stops and restarts those started after it;
  ``simple_one_for_one`` holds many children of one template, started on demand;
- more than ``intensity`` restarts within ``period`` seconds: the supervisor stops its
  children and gives up (``Escalate``), so that its own supervisor decides;
- with ``backoff_min`` > 0, a child that keeps dying waits backoff_min, then twice
  that, ... up to ``backoff_max`` before each restart; a run of at least ``period``
  resets its backoff;
- Thespian may report one exit several times: an exit of a handle that is not a
  child's current one is ignored.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
RESTARTS = ("permanent", "transient", "temporary")


@dataclass(frozen=True)
class ChildSpec:
    id: str
    start: str  # dotted path of the actor class
    args: Mapping = field(default_factory=dict)
    restart: str = "permanent"
    shutdown: float | str = 5.0  # seconds, "brutal_kill" or "infinity"
    type: str = "worker"  # or "supervisor"

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a child spec needs an id")
        if self.restart not in RESTARTS:
            raise ValueError(f"{self.id}: restart must be one of {RESTARTS}, not {self.restart!r}")
        if self.type not in ("worker", "supervisor"):
            raise ValueError(f"{self.id}: type must be worker or supervisor")
        if isinstance(self.shutdown, str):
            if self.shutdown not in ("brutal_kill", "infinity"):
                raise ValueError(f"{self.id}: shutdown must be seconds, brutal_kill or infinity")
        elif self.shutdown < 0:
            raise ValueError(f"{self.id}: shutdown cannot be negative")


@dataclass(frozen=True)
class SupFlags:
    strategy: str = "one_for_one"
    intensity: int = 3
    period: float = 5.0
    backoff_min: float = 0.0
    backoff_max: float = 30.0
    start_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {self.strategy!r}")
        if self.intensity < 0 or self.period <= 0:
            raise ValueError("intensity must be >= 0 and period > 0")
        if self.backoff_min < 0 or self.backoff_max < self.backoff_min:
            raise ValueError("backoff needs 0 <= backoff_min <= backoff_max")
        if self.start_timeout <= 0:
            raise ValueError("start_timeout must be positive")


# --- effects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartChild:
    id: str
    spec: ChildSpec
    args: Mapping


@dataclass(frozen=True)
class StopChild:
    id: str
    handle: str


@dataclass(frozen=True)
class KillChild:
    id: str
    handle: str


@dataclass(frozen=True)
class SetTimer:
    delay: float
    timer: Any


@dataclass(frozen=True)
class Escalate:
    reason: str


@dataclass(frozen=True)
class Stopped:
    pass


@dataclass(frozen=True)
class Log:
    level: str
    text: str


# --- timers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShutdownTimeout:
    id: str
    handle: str


@dataclass(frozen=True)
class RestartDue:
    id: str
    generation: int


@dataclass(frozen=True)
class StartTimeout:
    id: str
    generation: int


@dataclass
class _Child:
    spec: ChildSpec
    args: Mapping
    state: str = "stopped"  # starting | running | stopping | restarting | stopped
    handle: str | None = None
    generation: int = 0  # bumps on every start: stale timers carry an old one
    restarts: int = 0
    started_at: float | None = None
    backoff_level: int = 0
    restart_after_stop: bool = False


class Supervisor:
    def __init__(self, flags: SupFlags, children: Sequence[ChildSpec]) -> None:
        self.flags = flags
        ids = [c.id for c in children]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate child ids in {ids}")
        if flags.strategy == "simple_one_for_one":
            if len(children) != 1:
                raise ValueError("simple_one_for_one needs exactly one template child spec")
            self.template: ChildSpec | None = children[0]
            self.children: dict[str, _Child] = {}
        else:
            self.template = None
            self.children = {c.id: _Child(c, dict(c.args)) for c in children}
        self.restart_times: list[float] = []
        self.mode = "init"  # init | running | recovering | escalating | shutting_down | dead
        self.escalation = ""
        self._ids = itertools.count(1)

    # -- helpers --------------------------------------------------------------------------

    def _order(self) -> list[_Child]:
        return list(self.children.values())

    def _start(self, now: float, child: _Child, out: list) -> None:
        child.generation += 1
        child.state = "starting"
        child.handle = None
        out.append(StartChild(child.spec.id, child.spec, child.args))
        out.append(
            SetTimer(self.flags.start_timeout, StartTimeout(child.spec.id, child.generation))
        )

    def _stop(self, child: _Child, out: list) -> None:
        """Polite stop, then a kill after the spec's shutdown time."""
        if child.state == "restarting":
            child.state = "stopped"
            return
        if child.state not in ("running", "starting") or child.handle is None:
            if child.state == "starting":
                child.state = "stopped"
            return
        child.state = "stopping"
        shutdown = child.spec.shutdown
        if shutdown == "brutal_kill":
            out.append(KillChild(child.spec.id, child.handle))
            return
        out.append(StopChild(child.spec.id, child.handle))
        if shutdown != "infinity":
            out.append(SetTimer(float(shutdown), ShutdownTimeout(child.spec.id, child.handle)))

    def _next_to_start(self, now: float, out: list) -> None:
        """Start the first child that should run and is not, in order; one at a time."""
        for child in self._order():
            if child.state == "starting":
                return
            if child.state == "stopped" and child.restart_after_stop:
                child.restart_after_stop = False
                delay = self._backoff(now, child)
                if delay > 0:
                    child.state = "restarting"
                    out.append(SetTimer(delay, RestartDue(child.spec.id, child.generation)))
                    return
                self._start(now, child, out)
                return
            if child.state == "restarting":
                return

    def _backoff(self, now: float, child: _Child) -> float:
        f = self.flags
        if f.backoff_min <= 0:
            return 0.0
        ran = now - child.started_at if child.started_at is not None else 0.0
        if ran >= f.period:
            child.backoff_level = 0
        delay = min(f.backoff_max, f.backoff_min * (2**child.backoff_level))
        child.backoff_level += 1
        return delay

    def _all_stopped(self, children: list[_Child]) -> bool:
        return all(c.state in ("stopped", "restarting") for c in children)

    def _count_restart(self, now: float) -> bool:
        """Record one restart; False when that is one too many for intensity/period."""
        horizon = now - self.flags.period
        self.restart_times = [t for t in self.restart_times if t > horizon]
        self.restart_times.append(now)
        return len(self.restart_times) <= self.flags.intensity

    def _give_up(self, now: float, reason: str, out: list) -> None:
        self.mode = "escalating"
        self.escalation = reason
        out.append(Log("error", f"giving up: {reason}"))
        for child in reversed(self._order()):
            child.restart_after_stop = False
            self._stop(child, out)
        self._maybe_finished(out)

    def _maybe_finished(self, out: list) -> None:
        if self.mode in ("escalating", "shutting_down") and self._all_stopped(self._order()):
            out.append(Escalate(self.escalation) if self.mode == "escalating" else Stopped())
            self.mode = "dead"

    # -- the API --------------------------------------------------------------------------

    def init(self, now: float) -> list:
        out: list = []
        self.mode = "running"
        for child in self._order():
            child.restart_after_stop = True
        self._next_to_start(now, out)
        return out

    def add_child(self, now: float, spec: ChildSpec) -> list:
        if self.template is not None:
            raise ValueError("simple_one_for_one children come from start_child")
        if spec.id in self.children:
            raise ValueError(f"child {spec.id!r} already exists")
        self.children[spec.id] = _Child(spec, dict(spec.args), restart_after_stop=True)
        out: list = []
        if self.mode == "running":
            self._next_to_start(now, out)
        return out

    def start_child(self, now: float, args: Mapping | None = None, id: str | None = None) -> list:
        if self.template is None:
            raise ValueError("start_child is for simple_one_for_one; use add_child")
        if self.mode not in ("running", "init"):
            return []
        cid = id or f"{self.template.id}-{next(self._ids)}"
        child = _Child(self.template, dict(args or {}))
        self.children[cid] = child
        out: list = []
        # Dynamic children start at once, side by side: no ordering among them.
        child.generation += 1
        child.state = "starting"
        out.append(StartChild(cid, self.template, child.args))
        out.append(SetTimer(self.flags.start_timeout, StartTimeout(cid, child.generation)))
        return out

    def spawned(self, id: str, handle: str) -> None:
        """The host created the child's actor: an exit of ``handle`` before ``started``
        is then a failed start, not an unknown notice."""
        child = self.children.get(id)
        if child is not None and child.state == "starting":
            child.handle = handle

    def started(self, now: float, id: str, handle: str) -> list:
        child = self.children.get(id)
        out: list = []
        if child is None or child.state != "starting":
            if child is None or child.state in ("stopping", "stopped"):
                # Started after we gave up on it: stop it again.
                out.append(KillChild(id, handle))
            return out
        child.state = "running"
        child.handle = handle
        child.started_at = now
        if self.template is None and self.mode == "running":
            self._next_to_start(now, out)
        return out

    def exited(self, now: float, handle: str, normal: bool = False) -> list:
        out: list = []
        found = next(
            ((cid, c) for cid, c in self.children.items() if c.handle == handle), (None, None)
        )
        cid, child = found
        if child is None:
            return out  # a duplicate notice, or a child we no longer track
        was = child.state
        child.state = "stopped"
        child.handle = None
        if self.mode in ("escalating", "shutting_down", "dead"):
            self._maybe_finished(out)
            return out
        if was == "starting":
            self._crashed(now, cid, child, False, "crashed while starting", out)
            return out
        if was == "stopping":
            # Stopped by us, as part of a strategy: restart if the strategy said so.
            if child.spec.restart == "temporary" and not child.restart_after_stop:
                self._forget(cid)
            self._recover(now, out)
            return out
        self._crashed(now, cid, child, normal, "exited normally" if normal else "crashed", out)
        return out

    def _crashed(
        self, now: float, cid: str, child: _Child, normal: bool, how: str, out: list
    ) -> None:
        restart = child.spec.restart
        wants = restart == "permanent" or (restart == "transient" and not normal)
        out.append(Log("warning" if not normal else "info", f"{cid} {how}"))
        if not wants:
            if restart == "temporary" or self.template is not None:
                self._forget(cid)
            return
        if not self._count_restart(now):
            self._give_up(
                now,
                f"more than {self.flags.intensity} restarts in {self.flags.period} s ({cid})",
                out,
            )
            return
        child.restarts += 1
        strategy = self.flags.strategy
        if strategy in ("one_for_one", "simple_one_for_one"):
            affected = [child]
        elif strategy == "one_for_all":
            affected = self._order()
        else:
            order = self._order()
            affected = order[order.index(child) :]
        for other in affected:
            # Temporary siblings stopped by the strategy are not restarted (OTP).
            other.restart_after_stop = other is child or other.spec.restart != "temporary"
        for other in reversed(affected):
            if other is not child:
                self._stop(other, out)
        if self.template is not None:
            child.restart_after_stop = False
            delay = self._backoff(now, child)
            if delay > 0:
                child.state = "restarting"
                out.append(SetTimer(delay, RestartDue(cid, child.generation)))
            else:
                child.generation += 1
                child.state = "starting"
                out.append(StartChild(cid, child.spec, child.args))
                out.append(SetTimer(self.flags.start_timeout, StartTimeout(cid, child.generation)))
            return
        self._recover(now, out)

    def _recover(self, now: float, out: list) -> None:
        """Once nobody is still stopping, start again what should run, in order."""
        if any(c.state == "stopping" for c in self._order()):
            return
        for cid in [
            cid
            for cid, c in self.children.items()
            if c.state == "stopped" and not c.restart_after_stop and c.spec.restart == "temporary"
        ]:
            self._forget(cid)
        self._next_to_start(now, out)

    def _forget(self, cid: str) -> None:
        self.children.pop(cid, None)

    def timer(self, now: float, timer: Any) -> list:
        out: list = []
        kind = type(timer)
        child = self.children.get(timer.id) if hasattr(timer, "id") else None
        if child is None:
            return out
        if kind is ShutdownTimeout:
            if child.state == "stopping" and child.handle == timer.handle:
                out.append(KillChild(timer.id, timer.handle))
        elif kind is RestartDue:
            if child.state == "restarting" and child.generation == timer.generation:
                if self.template is not None:
                    child.generation += 1
                    child.state = "starting"
                    out.append(StartChild(timer.id, child.spec, child.args))
                    out.append(
                        SetTimer(self.flags.start_timeout, StartTimeout(timer.id, child.generation))
                    )
                else:
                    self._start(now, child, out)
        elif kind is StartTimeout:
            if child.state == "starting" and child.generation == timer.generation:
                child.state = "stopped"
                if self.mode in ("escalating", "shutting_down"):
                    self._maybe_finished(out)
                    return out
                self._crashed(now, timer.id, child, False, "did not start in time", out)
        return out

    def terminate_child(self, now: float, id: str) -> list:
        child = self.children.get(id)
        out: list = []
        if child is not None:
            child.restart_after_stop = False
            if child.spec.restart == "temporary" or self.template is not None:
                child.restart_after_stop = False
            self._stop(child, out)
            if child.state == "stopped" and self.template is not None:
                self._forget(id)
        return out

    def delete_child(self, id: str) -> None:
        child = self.children.get(id)
        if child is not None and child.state in ("stopped",):
            self._forget(id)

    def shutdown(self, now: float) -> list:
        out: list = []
        if self.mode == "dead":
            return [Stopped()]
        self.mode = "shutting_down"
        for child in reversed(self._order()):
            child.restart_after_stop = False
            self._stop(child, out)
        self._maybe_finished(out)
        return out

    def which_children(self) -> list[dict]:
        return [
            {
                "id": cid,
                "handle": c.handle,
                "restart": c.spec.restart,
                "type": c.spec.type,
                "state": c.state,
                "restarts": c.restarts,
                "started_at": c.started_at,
            }
            for cid, c in self.children.items()
        ]

    def counts(self) -> dict:
        rows = self.children.values()
        return {
            "specs": len(self.children),
            "active": sum(1 for c in rows if c.state == "running"),
            "supervisors": sum(1 for c in rows if c.spec.type == "supervisor"),
            "workers": sum(1 for c in rows if c.spec.type == "worker"),
        }
