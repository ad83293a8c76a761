"""The base actor and the supervisor actor, for real: Thespian processes, SIGKILLs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil

from bench.cluster import ROOT, alive, free_port_block, wait_for

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, time
    import psutil
    from thespian.actors import ActorSystem
    from actors.base import Init, loopback_only
    from actors.overlay import Query
    from supervisors.supervisor import Supervisor
    from supervisors.tree import supervisor, worker

    loopback_only()
    system = ActorSystem("multiprocTCPBase", {"Admin Port": int(sys.argv[1])},
                         logDefs={"version": 1, "root": {"level": "CRITICAL", "handlers": []}})
    out = {}

    def alive(pid):
        try:
            return psutil.Process(pid).status() != "zombie"
        except psutil.Error:
            return False

    try:
        flags = {"strategy": "one_for_one", "intensity": 3, "period": 30.0}
        spec = supervisor("sup", flags, [worker("crashy", "tests.crashy.Crashy")])
        top = system.createActor(Supervisor)
        init = Init("t", "Supervisor:sup", dict(spec["args"], child_id="sup"), {})
        started = system.ask(top, init, 10)

        def running_child(not_pid):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                row = system.ask(top, Query("topology", 1), 5).body["children"][0]
                if row["state"] == "running" and row["pid"] not in (None, not_pid):
                    return row
                time.sleep(0.05)
            raise SystemExit("no running child")

        out["first"] = first = running_child(None)
        os.kill(first["pid"], signal.SIGKILL)
        out["after_kill"] = running_child(first["pid"])
        out["old_alive"] = alive(first["pid"])
        # SIGKILL of the supervisor takes its child with it (PR_SET_PDEATHSIG).
        child_pid = out["after_kill"]["pid"]
        os.kill(started.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        out["orphan"] = alive(child_pid)
    finally:
        system.shutdown()
    print(json.dumps(out))
    """
)

CRASH_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from thespian.actors import ActorSystem
    from actors.base import Init, loopback_only, Started

    loopback_only()
    system = ActorSystem("multiprocTCPBase", {"Admin Port": int(sys.argv[1])},
                         logDefs={"version": 1, "root": {"level": "CRITICAL", "handlers": []}})
    try:
        from tests.crashy import Crashy
        actor = system.createActor(Crashy)
        started = system.ask(actor, Init("t", "Crashy", {"state": 1}, {}), 10)
        before = system.ask(actor, "pid", 5)
        system.tell(actor, "boom")
        # Thespian alone would keep the actor alive; ours must be gone for real.
        after = system.ask(actor, "pid", 2)
        print(json.dumps({"pid": started.pid, "before": list(before), "after": after}))
    finally:
        system.shutdown()
    """
)


LEAN_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import psutil
    from thespian.actors import ActorSystem
    from actors.base import Init, lean_actor_system, loopback_only

    loopback_only()
    lean_actor_system()
    port = int(sys.argv[1])
    system = ActorSystem("multiprocTCPBase", {"Admin Port": port},
                         logDefs={"version": 1, "root": {"level": "CRITICAL", "handlers": []}})
    out = {}
    try:
        from tests.crashy import Crashy
        actor = system.createActor(Crashy)
        started = system.ask(actor, Init("t", "Crashy", {}, {}), 10)
        admin = psutil.Process(started.pid).parent()
        out["admin"] = admin.pid
        out["admin_children"] = [" ".join(c.cmdline()) for c in admin.children()]
        out["frozen"] = system.ask(actor, "frozen", 5)[1]
        out["logged"] = system.ask(actor, ("critical", "lean-token-42"), 5)
        system.ask(actor, ("garbage", "from"), 5)
        for _ in range(50):  # each arrives with its sender's address
            system.ask(actor, "pid", 5)
        out["garbage"] = system.ask(actor, ("garbage", "to"), 5)[1]
    finally:
        t0 = time.monotonic()
        system.shutdown()
        out["shutdown_s"] = time.monotonic() - t0
    print(json.dumps(out))
    """
)


HOSTED_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, time
    import psutil
    from thespian.actors import ActorSystem
    from actors.base import Init, loopback_only
    from actors.connection import Hosted, StartWorker, start_worker
    from actors.overlay import Query
    from supervisors.supervisor import Supervisor
    from supervisors.tree import supervisor, worker

    loopback_only()
    system = ActorSystem("multiprocTCPBase", {"Admin Port": int(sys.argv[1])},
                         logDefs={"version": 1, "root": {"level": "CRITICAL", "handlers": []}})
    out = {}

    def until(what, check):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            t = system.ask(top, Query("topology", 1), 5).body
            rows = {r["id"]: r for r in t["children"]}
            if check(rows):
                return rows
            time.sleep(0.05)
        raise SystemExit(f"timed out: {what}: {t}")

    def running(row):
        return [c for c in row["children"] if c["state"] == "running" and c["pid"]]

    try:
        workers = supervisor(
            "workers",
            {"strategy": "simple_one_for_one", "intensity": 10, "period": 1.0},
            [worker("w", "tests.crashy.Crashy", restart="temporary")],
            {"max_children": 2},
            hosted=True,
        )
        flags = {"strategy": "one_for_all", "intensity": 3, "period": 30.0}
        spec = supervisor("sup", flags, [workers, worker("probe", "tests.crashy.Crashy")])
        top = system.createActor(Supervisor)
        init = Init("t", "Supervisor:sup", dict(spec["args"], child_id="sup"), {})
        out["root"] = root = system.ask(top, init, 10).pid
        rows = until("the probe", lambda r: r["probe"]["pid"])
        out["workers_row"] = {k: rows["workers"][k] for k in ("type", "strategy", "pid", "pss")}
        first = Hosted(top, rows["workers"]["handle"])

        class Asker:  # start_worker sends through whatever has .send
            send = staticmethod(system.tell)

        for _ in range(3):  # the third is over max_children: refused
            start_worker(Asker, first, {})
        # The root handles our messages in order: by this answer, all three were decided.
        out["children_asked"] = len(until("", lambda r: True)["workers"]["children"])
        rows = until("two workers", lambda r: len(running(r["workers"])) == 2)
        pids = [c["pid"] for c in running(rows["workers"])]
        out["parents"] = [psutil.Process(p).ppid() for p in pids]
        out["root_children"] = sorted(c.pid for c in psutil.Process(root).children())
        out["worker_pids"] = pids
        out["probe_pid"] = rows["probe"]["pid"]
        # A temporary worker killed is gone, not restarted.
        os.kill(pids[0], signal.SIGKILL)
        rows = until("one worker", lambda r: len(running(r["workers"])) == 1)
        out["after_kill"] = [c["pid"] for c in running(rows["workers"])]
        # one_for_all: the probe's crash restarts the hosted supervisor too, which stops
        # its worker first; the new one is another incarnation (a new handle).
        os.kill(out["probe_pid"], signal.SIGKILL)
        rows = until(
            "the restart",
            lambda r: r["probe"]["pid"] not in (None, out["probe_pid"])
            and r["workers"]["handle"] != first.handle and r["workers"]["state"] == "running",
        )
        out["probe_restarts"] = rows["probe"]["restarts"]
        out["handles"] = [first.handle, rows["workers"]["handle"]]
        out["left_running"] = [p for p in pids if psutil.pid_exists(p)
                               and psutil.Process(p).status() != "zombie"]
        out["workers_after_restart"] = len(rows["workers"]["children"])
        # A request for the old incarnation is dropped; the new one serves.
        start_worker(Asker, first, {})
        start_worker(Asker, Hosted(top, rows["workers"]["handle"]), {})
        out["final"] = len(until("", lambda r: True)["workers"]["children"])
        until("a worker of the new one", lambda r: len(running(r["workers"])) == 1)
    finally:
        system.shutdown()
    print(json.dumps(out))
    """
)


HUNG_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, time
    import psutil
    from thespian.actors import ActorSystem
    from actors.base import Init, loopback_only
    from actors.overlay import Answer, Query
    from supervisors.supervisor import Supervisor
    from supervisors.tree import supervisor, worker

    loopback_only()
    system = ActorSystem("multiprocTCPBase", {"Admin Port": int(sys.argv[1])},
                         logDefs={"version": 1, "root": {"level": "CRITICAL", "handlers": []}})
    out = {}
    try:
        flags = {"strategy": "one_for_one", "intensity": 3, "period": 30.0}
        spec = supervisor("sup", flags, [worker("hung", "tests.crashy.Crashy", {"hang_on_usr2": 1}),
                                         worker("fine", "tests.crashy.Crashy")])
        top = system.createActor(Supervisor)
        # A hung child is waited for this long: longer than the test waits.
        args = dict(spec["args"], child_id="sup", topology_timeout=600)
        sup_pid = system.ask(top, Init("t", "Supervisor:sup", args, {}), 10).pid
        deadline = time.monotonic() + 10
        while True:
            rows = {r["id"]: r for r in system.ask(top, Query("topology", 1), 5).body["children"]}
            if all(r["pid"] for r in rows.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        pid = rows["hung"]["pid"]
        # A hung child answers nothing: the topology waits for it ...
        os.kill(pid, signal.SIGUSR2)
        system.tell(top, Query("topology", 2))
        out["while_hung"] = system.listen(1) is not None
        # ... until it exits: its exit notice ends the wait (it will never answer),
        # not the timeout.
        os.kill(pid, signal.SIGKILL)
        answer = None
        deadline = time.monotonic() + 20
        while answer is None and time.monotonic() < deadline:
            got = system.listen(1)
            if isinstance(got, Answer) and got.token == 2:
                answer = got
        out["answered"] = answer is not None
        if answer is not None:
            out["messages"] = {r["id"]: r["messages"] for r in answer.body["children"]}
        # Stopped at once, while the killed child restarts: every process goes.
        sup = psutil.Process(sup_pid)
        with open(sys.argv[2], "w") as f:  # (read even if the stop hangs)
            json.dump([sup_pid, sup.ppid()] + [c.pid for c in sup.children()], f)
    finally:
        system.shutdown()
    print(json.dumps(out))
    """
)


def run(script: str, stderr: list | None = None, args: tuple[str, ...] = ()) -> dict:
    import json

    port = free_port_block(1) + 20000
    proc = subprocess.run(
        [sys.executable, "-c", script, str(port), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    if stderr is not None:
        stderr.append(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_an_exception_ends_the_actor_process():
    out = run(CRASH_SCRIPT)
    assert out["before"][0] == "pid" and out["before"][1] == out["pid"]
    assert out["after"] is None  # no answer: the process is gone, not limping on
    try:
        os.kill(out["pid"], 0)
        gone = False
    except ProcessLookupError:
        gone = True
    assert gone


def test_supervisor_restarts_a_killed_child_and_takes_children_down_with_it():
    out = run(SCRIPT)
    assert out["first"]["state"] == "running" and out["first"]["restarts"] == 0
    assert out["after_kill"]["pid"] != out["first"]["pid"]
    assert out["after_kill"]["restarts"] == 1
    assert out["old_alive"] is False
    assert out["orphan"] is False, "a child outlived its SIGKILLed supervisor"


def test_a_lean_actor_system_has_no_logger_process_and_still_logs():
    stderr: list = []
    out = run(LEAN_SCRIPT, stderr)
    # Thespian's logger process is gone: the admin's only child is our actor.
    assert out["admin_children"] and not any(
        c.startswith("logger") for c in out["admin_children"]
    ), out["admin_children"]
    assert len(out["admin_children"]) == 1
    # A CRITICAL stdlib record of an actor still reaches stderr, through the admin.
    assert out["logged"] == "logged"
    assert "lean-token-42" in stderr[0]
    # The actor's collector leaves what it inherited alone (gc.freeze at fork).
    assert out["frozen"] > 1000
    # The 50 messages it received made no reference cycle (Thespian's own binding made
    # several objects of garbage for each).
    assert out["garbage"] < 50, out["garbage"]
    # And the system stops in time, leaving nothing.
    assert out["shutdown_s"] < 5
    assert not psutil.pid_exists(out["admin"]) or psutil.Process(out["admin"]).status() == "zombie"


def test_a_hosted_supervisor_costs_no_process_and_supervises_like_any_other():
    out = run(HOSTED_SCRIPT)
    # It shows in the tree as a supervisor, with no pid or memory of its own ...
    assert out["workers_row"] == {
        "type": "supervisor",
        "strategy": "simple_one_for_one",
        "pid": None,
        "pss": None,
    }
    # ... its workers are children of the root's process, and no process is its own.
    assert out["parents"] == [out["root"], out["root"]]
    assert sorted(out["worker_pids"] + [out["probe_pid"]]) == out["root_children"]
    # max_children held (two of three started); a killed temporary worker is not restarted.
    assert out["children_asked"] == 2
    assert len(out["after_kill"]) == 1 and out["after_kill"][0] == out["worker_pids"][1]
    # A sibling's crash under one_for_all restarted it, its worker stopped on the way.
    assert out["probe_restarts"] == 1 and out["handles"][0] != out["handles"][1]
    assert out["left_running"] == []
    assert out["workers_after_restart"] == 0
    # Only the new incarnation's request was served.
    assert out["final"] == 1


def test_a_child_exiting_ends_a_topology_wait_and_a_stop_while_it_restarts_leaves_nothing(
    tmp_path,
):
    import json

    pids_file = tmp_path / "pids.json"
    try:
        out = run(HUNG_SCRIPT, args=(str(pids_file),))
    finally:
        pids = json.loads(pids_file.read_text()) if pids_file.exists() else []
        try:
            wait_for(lambda: not alive(pids), 10, "no process to outlive the stop")
        finally:
            for pid in alive(pids):  # (so that a failure leaves nothing either)
                os.kill(pid, signal.SIGKILL)
    assert out["while_hung"] is False  # it did wait for the hung child
    assert out["answered"], "the answer waited for the timeout, not the exit"
    # The child that answered is counted; the one that exited has no count.
    assert out["messages"]["hung"] is None
    assert isinstance(out["messages"]["fine"], int)
    # The supervisor, its children (the restarted one among them) and Thespian's admin.
    assert len(pids) >= 3


def test_a_childs_exit_notice_does_not_swallow_another_dead_childs():
    from types import SimpleNamespace

    from thespian.system.multiprocCommon import MultiProcReplicator

    from actors.base import every_exit_noticed

    every_exit_noticed()
    dead = {"a", "b"}  # both died; only a's notice is being handled

    class Parent(MultiProcReplicator):
        @staticmethod
        def _checkChildLiveness(info):  # noqa: N802 - Thespian's
            return info.childAddr not in dead

    parent = Parent()
    parent._child_procs = [SimpleNamespace(childAddr=n) for n in ("a", "b", "c")]
    parent._childExited("a")
    # b stays listed, so the SIGCHLD check still announces it; c is alive.
    assert [i.childAddr for i in parent._child_procs] == ["b", "c"]


def test_addresses_thespian_binds_weakly_compare_pickle_and_free_as_before():
    import gc
    import pickle
    import weakref

    import pytest
    from thespian.actors import ActorAddress
    from thespian.system.addressManager import ActorAddressManager, CannotPickleAddress

    from actors.base import weakly_bound_addresses

    weakly_bound_addresses()
    manager = ActorAddressManager(ActorAddress("admin"), ActorAddress("me"))
    local = manager.createLocalAddress()  # a child's, before its real address is known
    with pytest.raises(CannotPickleAddress):
        pickle.dumps(local)
    real = ActorAddress("child:1")
    manager.associateUseableAddress(ActorAddress("me"), 0, real)
    assert local == real and real == local and local != ActorAddress("child:2")
    sent = pickle.loads(pickle.dumps(local))  # what a message carries: the real one
    assert sent.addressDetails == "child:1" and not hasattr(sent, "eqOverride")
    assert sent == real

    received = ActorAddress("sender:7")
    manager.importAddr(received)  # what happens to every message's sender
    assert received == ActorAddress("sender:7") and received != real
    assert pickle.loads(pickle.dumps(received)).__dict__ == {"_aaddr": "sender:7"}
    gone = weakref.ref(received)
    collecting = gc.isenabled()
    gc.disable()
    try:
        del received
        assert gone() is None, "the address waits for the cycle collector"
    finally:
        if collecting:
            gc.enable()


def test_a_childs_address_is_forgotten_once_it_has_exited():
    from types import SimpleNamespace

    from thespian.actors import ActorAddress
    from thespian.system.addressManager import ActorAddressManager

    from actors.base import forget_child_address, weakly_bound_addresses

    weakly_bound_addresses()
    me = ActorAddress("me")
    manager = ActorAddressManager(ActorAddress("admin"), me)
    actor = SimpleNamespace(_myRef=SimpleNamespace(_addrManager=manager))
    forget_child_address(actor, ActorAddress("child:0"))  # before any child: nothing to do
    placeholders = [manager.createLocalAddress() for _ in range(3)]
    children = [ActorAddress(f"child:{n}") for n in range(3)]
    for n, child in enumerate(children):
        manager.associateUseableAddress(me, n, child)
    assert placeholders[1] == children[1]
    forget_child_address(actor, ActorAddress("child:1"))  # as ChildActorExited carries it
    forget_child_address(actor, ActorAddress("child:1"))  # Thespian sends some twice
    assert manager._managed == [children[0], None, children[2]]
    assert placeholders[1] != children[1]  # a dead child's placeholder resolves no more
    assert placeholders[0] == children[0] and placeholders[2] == children[2]
    assert manager.exportAddr(placeholders[2]) is children[2]


def test_a_context_replaces_the_last_one_whole():
    from actors.base import Context
    from tests.crashy import Crashy

    actor = Crashy()
    actor.context = {"gossip": "g1", "peer_workers-1": "w1"}
    actor._receive(Context({"gossip": "g2", "state": "s1"}), None)
    # A sibling that is gone is gone from it: kept, each connection ever served was one
    # entry more in every long-lived worker (issue 8).
    assert actor.context == {"gossip": "g2", "state": "s1"}
