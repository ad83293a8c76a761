"""Actors whose sockets a thread serves (actors/iothread.py), for real in Thespian."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from bench.cluster import ROOT, free_port_block

SCRIPT = textwrap.dedent(
    """
    import json, socket, sys, time
    from multiprocessing.reduction import DupFd
    from thespian.actors import ActorSystem
    from actors.base import Init, lean_actor_system, loopback_only

    loopback_only()
    lean_actor_system()
    system = ActorSystem("multiprocTCPBase", {"Admin Port": int(sys.argv[1])},
                         logDefs={"version": 1, "root": {"level": "CRITICAL", "handlers": []}})
    out = {}

    def read_until(sock, words, timeout=10):
        got, deadline = "", time.monotonic() + timeout
        while len(got.split()) < words and time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                got += sock.recv(4096).decode()
            except socket.timeout:
                break
        return got.split()

    try:
        from tests.echo_io import EchoIo
        mine, theirs = socket.socketpair()
        actor = system.createActor(EchoIo)
        system.ask(actor, Init("t", "EchoIo", {"fd": DupFd(theirs.fileno())}, {}), 10)
        theirs.close()
        out["hello"] = system.ask(actor, "hello", 5)
        mine.send(b"one two")
        out["echo"] = read_until(mine, 2)
        mine.send(b"tick")
        out["tick"] = read_until(mine, 2)
        # Sent from the I/O thread: it must still arrive, and in order after "hello".
        mine.send(b"tell:a tell:b")
        out["echo_tell"] = read_until(mine, 2)
        out["told"] = [system.listen(5), system.listen(5)]
        mine.close()
        out["after_close"] = system.ask(actor, "hello", 5)
    finally:
        system.shutdown()
    print(json.dumps(out))
    """
)


def test_an_io_thread_serves_sockets_and_timers_and_leaves_sends_to_the_actor_thread():
    port = free_port_block(1) + 20000
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(port)], cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    actor_thread = out["hello"][1]
    assert actor_thread != "io"
    # What arrives on the socket is read by the I/O thread, in order.
    assert out["echo"] == ["one@io", "two@io"]
    # A timer set there fires there, after the word that set it.
    assert out["tick"] == ["tick@io", "tock@io"]
    # Actor messages it sends go out, in order, through the actor thread.
    assert out["echo_tell"] == ["tell:a@io", "tell:b@io"]
    assert out["told"] == [["told", "a", "io"], ["told", "b", "io"]]
    # A closed socket leaves the actor answering (no busy loop, no crash).
    assert out["after_close"] == ["hello", actor_thread]
