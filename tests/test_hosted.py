"""Hosted workers (the listener, Membership): served by their supervisor's process,
supervised as any child. In-process: a stand-in for the Supervisor actor, and real
sockets."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

import pytest
from thespian.actors import WakeupMessage, WatchMessage

from actors.base import Hosted, HostedActor, HostedTimer, SatelliteActor
from actors.connection import _NOT_INHERITED, Listener
from supervisors.supervisor import Sup
from supervisors.tree import worker


class Host:
    """What a ``Sup`` asks of the Supervisor actor that hosts it."""

    node_id = "t"
    myAddress = "host-address"  # noqa: N815 - Thespian's name

    def __init__(self) -> None:
        self.sups: dict[str, Sup] = {}
        self.watching: list[int] = []
        self.sent: list = []
        self.timers: list = []
        self.done = False

    def refresh_watching(self) -> None:
        hosted = [w for sup in self.sups.values() for w in sup.hosted_workers.values()]
        self.watching = [fd for w in hosted for fd in w.watching]

    def send(self, to, msg) -> None:
        self.sent.append((to, msg))

    def wakeupAfter(self, delay, payload=None) -> None:  # noqa: N802 - Thespian's name
        self.timers.append((delay, payload))

    def createActor(self, cls):  # noqa: N802 - Thespian's name
        raise AssertionError("a hosted child must not become an actor")

    def stopped(self) -> None:
        self.done = True


class Flaky:
    """A hosted worker that crashes whenever its descriptor is readable."""

    made: list[Flaky] = []

    def __init__(self, args: dict, host, role: str) -> None:
        self.role = role
        self.r, self.w = os.pipe()
        self.messages = 0
        self.closed = False
        Flaky.made.append(self)

    @property
    def watching(self) -> list[int]:
        return [] if self.closed else [self.r]

    def ready(self, fd: int) -> None:
        raise RuntimeError("boom")

    @staticmethod
    def refuse() -> None:
        raise OSError(98, "Address already in use")

    def close(self) -> None:
        if not self.closed:
            os.close(self.r)
            os.close(self.w)
            self.closed = True


def root(host: Host, children: list[dict], intensity: int = 3, context: dict | None = None) -> Sup:
    args = {
        "flags": {"strategy": "one_for_one", "intensity": intensity, "period": 30.0},
        "children": children,
        "child_id": "sup",
    }
    sup = Sup(host, "", args, dict(context or {}))
    host.sups[""] = sup
    sup.apply(sup.core.init(time.monotonic()))
    return sup


def test_a_hosted_worker_that_crashes_is_closed_and_started_again():
    Flaky.made.clear()
    host = Host()
    sup = root(host, [worker("flaky", "tests.test_hosted.Flaky", hosted=True)])
    first = Flaky.made[-1]
    assert host.watching == [first.r]
    row = sup.rows()[0]
    assert row["state"] == "running" and row["pid"] is None and row["messages"] == 0

    assert sup.serve(first.r)  # its descriptor: it raises
    assert first.closed
    second = Flaky.made[-1]
    assert second is not first and not second.closed
    assert host.watching == [second.r]
    row = sup.rows()[0]
    assert row["state"] == "running" and row["restarts"] == 1
    r, w = os.pipe()
    try:
        assert not sup.serve(r), "a descriptor no hosted worker watches is not ours"
    finally:
        os.close(r)
        os.close(w)
    assert Flaky.made[-1] is second

    # An orderly stop closes it, and the supervisor reports it is done.
    sup.apply(sup.core.shutdown(time.monotonic()))
    assert second.closed and host.watching == [] and host.done


class GaveUp(Exception):
    pass


def test_a_hosted_worker_that_cannot_start_is_retried_then_given_up(monkeypatch):
    def escalate(status: int) -> None:  # the root's way out: os._exit(71)
        raise GaveUp(status)

    monkeypatch.setattr("supervisors.supervisor.os._exit", escalate)
    host = Host()
    attempts = []
    monkeypatch.setattr(Flaky, "__init__", lambda *a: attempts.append(1) or Flaky.refuse())
    with pytest.raises(GaveUp):
        root(host, [worker("deaf", "tests.test_hosted.Flaky", hosted=True)], intensity=2)
    # The first attempt and two restarts, then the root gives up (escalates).
    assert len(attempts) == 3 and host.watching == []


class Pinger(SatelliteActor):
    """An actor as any of ours: answers, keeps a timer, watches a pipe (and crashes when
    it is readable)."""

    def init(self, args: dict) -> None:
        self.r, self.w = os.pipe()
        self.watching = [self.r]
        self.wakeupAfter(timedelta(seconds=5), payload="tick")

    def handle(self, msg, sender) -> None:
        if msg == "ping":
            self.send(sender, ("pong", self.myAddress, sorted(self.context)))
        elif isinstance(msg, WakeupMessage):
            self.send("clock", ("woken", msg.payload))
        elif isinstance(msg, WatchMessage):
            raise RuntimeError("boom")

    def stopping(self) -> None:
        os.close(self.r)
        os.close(self.w)
        self.watching = []


def test_an_actor_hosted_in_its_supervisors_process_is_served_and_restarted_as_a_process():
    host = Host()
    sup = root(host, [worker("pinger", "tests.test_hosted.Pinger", hosted=True)])
    ((handle, hosted),) = sup.hosted_workers.items()
    assert isinstance(hosted, HostedActor) and hosted.role == "Pinger"
    actor = hosted.actor
    assert host.watching == [actor.r]
    # Its timer is the host's, tagged with its handle; back through the host, it is its own.
    ((delay, payload),) = [t for t in host.timers if isinstance(t[1], HostedTimer)]
    assert delay == timedelta(seconds=5) and payload == HostedTimer(handle, "tick")
    assert sup.deliver(handle, WakeupMessage(delay, "tick"), None)
    assert host.sent[-1] == ("clock", ("woken", "tick"))
    # What is sent to it comes with its sender; its own address routes back to it.
    assert sup.deliver(handle, "ping", "asker")
    assert host.sent[-1] == ("asker", ("pong", Hosted(Host.myAddress, handle), ["pinger"]))
    assert hosted.messages == 2
    assert not sup.deliver("nobody", "ping", "asker")

    assert sup.serve(actor.r)  # readable: it raises, which is its crash
    ((again, restarted),) = sup.hosted_workers.items()
    assert again != handle and restarted.actor is not actor
    assert actor.watching == [], "the crashed one was stopped (its pipe closed)"
    assert host.watching == [restarted.actor.r]
    row = sup.rows()[0]
    assert (row["pid"], row["state"], row["restarts"]) == (None, "running", 1)
    assert not sup.deliver(handle, "ping", "asker"), "the old incarnation is gone"

    sup.apply(sup.core.shutdown(time.monotonic()))
    assert restarted.actor.watching == [] and host.done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Workers:
    """A ListenerHost: records the sockets it is asked to hand to workers."""

    node_id = "t"

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.got: list[tuple[str, dict]] = []

    def workers_up(self, name: str) -> bool:
        return self.up

    def to_workers(self, name: str, args: dict) -> None:
        self.got.append((name, args))


# (the descriptor handed on started multiprocessing's sharing thread; the child only checks)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_the_listener_hands_connections_on_and_its_forks_do_not_keep_its_sockets():
    port = free_port()
    workers = Workers()
    listener = Listener({"ports": [{"bind": f"127.0.0.1:{port}", "workers": "w"}]}, workers)
    try:
        (fd,) = listener.watching
        client = socket.create_connection(("127.0.0.1", port))
        deadline = time.monotonic() + 5
        while not workers.got and time.monotonic() < deadline:
            listener.ready(fd)
        assert [name for name, _ in workers.got] == ["w"] and listener.messages == 1
        mine = socket.socket(fileno=workers.got[0][1]["fd"].detach())
        mine.sendall(b"hi")
        assert client.recv(2) == b"hi"
        mine.close()
        client.close()

        pid = os.fork()
        if pid == 0:  # a process node_sup forks: the listening socket is not its own
            try:
                os.fstat(fd)
            except OSError:
                os._exit(0)
            os._exit(1)
        assert os.waitpid(pid, 0)[1] == 0
        os.fstat(fd)  # and ours is still open
    finally:
        listener.close()
    assert listener.watching == [] and not _NOT_INHERITED


def test_a_listener_on_a_port_taken_fails_to_start_and_keeps_nothing_open():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = {"ports": [{"bind": f"127.0.0.1:{free_port()}", "workers": "a"}]}
        spec["ports"].append({"bind": f"127.0.0.1:{port}", "workers": "b"})
        with pytest.raises(OSError):
            Listener(spec, Workers())
    assert not _NOT_INHERITED


def test_state_hosted_in_node_sup_comes_back_from_a_crash_with_what_it_had_written(
    tmp_path, monkeypatch
):
    # State runs in node_sup's process (issue 8): a crash of it is an exception, not a
    # dead process; its supervisor starts a new one, which reloads the office from SQLite.
    from actors.overlay import Answer, PublishDelta, Query
    from actors.state import SetTargetRequest, State

    host = Host()
    args = {"data_dir": str(tmp_path), "read_interval": 5.0, "peer": "127.0.0.1:1"}
    children = [worker("state", "actors.state.State", args, hosted=True)]
    sup = root(host, children, context={"gossip": "gossip-address"})
    ((handle, hosted),) = sup.hosted_workers.items()
    assert sup.deliver(handle, SetTargetRequest("lights", "on", "t1"), "antenna")
    assert any(to == "antenna" and isinstance(m, Answer) for to, m in host.sent)
    assert any(isinstance(m, PublishDelta) for to, m in host.sent if to == "gossip-address")

    def boom(self, msg, sender):
        raise RuntimeError("a bug in State")

    monkeypatch.setattr(State, "set_target", boom)
    assert sup.deliver(handle, SetTargetRequest("lights", "off", "t2"), "antenna")
    ((again, restarted),) = sup.hosted_workers.items()
    assert again != handle and restarted.actor is not hosted.actor
    assert sup.rows()[0]["restarts"] == 1
    monkeypatch.undo()

    host.sent.clear()
    assert sup.deliver(again, Query("state", "t3"), "antenna")
    ((to, answer),) = [(to, m) for to, m in host.sent if isinstance(m, Answer)]
    assert to == "antenna" and answer.body["targets"] == {"lights": "on"}
    sup.apply(sup.core.shutdown(time.monotonic()))
    assert host.done


class Spawner(Host):
    """A host whose process children get placeholder addresses, as Thespian's createActor
    gives: the child reports Started from its own, another."""

    def __init__(self) -> None:
        super().__init__()
        self.created = 0

    def createActor(self, cls):  # noqa: N802 - Thespian's name
        self.created += 1
        return f"placeholder-{self.created}"


def test_a_worker_process_leaves_no_address_behind_once_it_has_come_and_gone():
    from actors.base import Init, Started

    host = Spawner()
    args = {
        "flags": {"strategy": "simple_one_for_one", "intensity": 3, "period": 30.0},
        "children": [worker("w", "tests.crashy.Crashy", restart="temporary")],
        "child_id": "workers",
    }
    sup = Sup(host, "", args, {})
    sup.apply(sup.core.init(time.monotonic()))
    for n in range(1, 51):
        sup.start_worker(time.monotonic(), {})
        assert host.created == n
        child_id = sup.core.which_children()[-1]["id"]
        sup.on_started(time.monotonic(), Started(child_id, 10_000 + n), f"worker-{n}")
        assert sup.addresses == {f"worker-{n}": f"worker-{n}"}  # its own, to reach it
        sup.on_exited(time.monotonic(), f"worker-{n}")
    assert sup.addresses == {} and sup.pids == {} and sup.started_at == {}
    assert sup.core.which_children() == [] and sup.core._spawned == {}

    # Workers are named by nobody: none is in another's context, and one coming up sends
    # nothing to those already running (it was a Context to each, per connection).
    host.sent.clear()
    sup.context = {"gossip": "gossip-address"}
    for n in (1, 2):
        sup.start_worker(time.monotonic(), {})
        child_id = sup.core.which_children()[-1]["id"]
        sup.on_started(time.monotonic(), Started(child_id, 20_000 + n), f"again-{n}")
    assert [type(msg) for _, msg in host.sent] == [Init, Init]
    assert [msg.context for _, msg in host.sent] == [{"gossip": "gossip-address"}] * 2
