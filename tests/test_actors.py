"""The base actor and the supervisor actor, for real: Thespian processes, SIGKILLs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import psutil

from bench.cluster import ROOT, free_port_block

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
    finally:
        t0 = time.monotonic()
        system.shutdown()
        out["shutdown_s"] = time.monotonic() - t0
    print(json.dumps(out))
    """
)


def run(script: str, stderr: list | None = None) -> dict:
    import json

    port = free_port_block(1) + 20000
    proc = subprocess.run(
        [sys.executable, "-c", script, str(port)], cwd=ROOT, capture_output=True, text=True,
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
    # And the system stops in time, leaving nothing.
    assert out["shutdown_s"] < 5
    assert not psutil.pid_exists(out["admin"]) or psutil.Process(out["admin"]).status() == "zombie"
