"""``run_node.py demo``: a real demo office of 3 nodes, driven as a user drives it; and its
pieces (options, ports, the simulated network)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from bench.cluster import ADMIN_OFFSET, Node, alive, free_port_block, wait_for
from satellite import demo
from sensors import parse_arp, parse_sensor_spec

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "demotest-"  # node ids name processes: ours are told apart from any other demo's


def run_demo(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run_node.py"), "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


class Output:
    """The demo's output, line by line, read in a thread so that waits have deadlines."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self.read, args=(proc,), daemon=True).start()

    def read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def text(self) -> str:
        """Everything read so far, and whatever is waiting in the queue."""
        while True:
            try:
                line = self.queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "\n".join(self.lines)

    def until(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.queue.get(timeout=max(0.01, left))
            except queue.Empty:
                line = None
                left = 0
            if line is None or left <= 0:
                shown = "\n".join(self.lines)
                raise AssertionError(f"no line starting {prefix!r} in {timeout} s:\n{shown}")
            self.lines.append(line)
            if line.startswith(prefix):
                return line


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


def test_demo_office_runs_answers_and_stops_cleanly(tmp_path) -> None:
    base = free_port_block(4)  # 3 nodes, and the 4th peer port (free, unused) for HTTP
    http = base + 3
    client = base + 1000
    # The demo's nodes as bench.cluster sees them: found by name and admin port, by pid.
    nodes = [
        Node(f"{PREFIX}{i + 1}", base + i, tmp_path / f"n{i}", [], client_port=client + i)
        for i in range(3)
    ]
    proc = run_demo(
        "--nodes", "3", "--base-port", str(base), "--http-port", str(http), "--prefix", PREFIX
    )
    output = Output(proc)
    data_dir: Path | None = None
    try:
        line = output.until("Data and logs in ", 10)
        data_dir = Path(line.split()[4])
        output.until("ready", 45)  # the demo gives up after 39 s itself
        text = "\n".join(output.lines)
        assert f"http://127.0.0.1:{http}/" in text
        assert f"members --node 127.0.0.1:{client}" in text  # not 8000: the flag is shown
        for node in nodes:
            log = data_dir / f"{node.name}.log"
            assert str(log) in text and log.exists()

        members = subprocess.run(
            [sys.executable, "-m", "satellite.cli", "members", "--node", f"127.0.0.1:{client}"]
            + ["--format", "json"],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=ROOT,
        )
        assert members.returncode == 0, members.stderr
        listed = json.loads(members.stdout)["members"]  # "ready" waited for all three
        assert sorted(m["node"] for m in listed) == [n.name for n in nodes]

        url = f"http://127.0.0.1:{http}/api/state"

        def office() -> dict | None:
            state = get_json(url)
            if len(state["readings"]) == 3 and state["online_devices"]:
                return state
            return None

        state = wait_for(office, 15, "3 nodes' readings and devices on the dashboard")
        assert sorted(state["readings"]) == [n.name for n in nodes]
        assert {d["ip_addr"] for d in state["online_devices"]} <= {d[1] for d in demo.DEVICES}
        # The drifting sensor moves: the chart is no flat line.
        seen: set[float] = set()

        def moved() -> bool:
            seen.add(get_json(url)["readings"][nodes[0].name]["temperature"])
            return len(seen) > 1

        wait_for(moved, 15, "a reading that changes", step=0.5)

        pids = {proc.pid}
        for node in nodes:
            pids |= node.pids()
        assert len(pids) > 3 * 5  # launchers, admins and actors of every node
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert not alive(pids), "processes left behind"
        assert not any(node.pids() for node in nodes)
        assert not data_dir.exists()  # the temp dir goes, without --keep
    except BaseException:
        print(output.text())  # pytest shows it with the failure
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the demo stops its nodes itself...
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for node in nodes:
            node.kill()  # ...and whatever it left, by pid
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.parametrize(
    "args, why",
    [
        (["--nodes", "0"], "--nodes: 0 is not between 1 and 20"),
        (["--nodes", "21"], "not between 1 and 20"),
        (["--nodes", "x"], "invalid int"),
        (["--base-port", "80"], "--base-port"),
        (["--base-port", "46000"], "below 65536"),
        (["--http-port", "70000"], "out of range"),
        (["--frobnicate"], "unrecognized"),
    ],
)
def test_bad_options_one_line_exit_2(args: list[str], why: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_node.py"), "demo", *args],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_node.py demo: error: ")
    assert why in lines[0]


def test_http_port_colliding_with_a_node_is_a_usage_error(capsys) -> None:
    base = free_port_block(2)
    args = ["--nodes", "2", "--base-port", str(base), "--http-port", str(base), "--prefix", PREFIX]
    assert demo.main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "one of the nodes' ports" in err[0]


def test_simulated_office() -> None:
    seen = [{d[0] for d in demo.devices_seen(i)} for i in range(5)]
    assert set.intersection(*seen) == {"office-printer"}  # some devices everyone sees...
    assert all(a != b for a, b in zip(seen, seen[1:], strict=False))  # ...and some not
    for i in range(demo.MAX_NODES):
        table = demo.arp_table(demo.devices_seen(i))
        assert table.startswith("IP address ")
        assert [(e.ip_addr, e.mac_addr) for e in parse_arp(table)] == [
            (ip, mac) for _, ip, mac in demo.devices_seen(i)
        ]
    temps = [demo.base_temperature(i) for i in range(5)]
    assert len(set(temps)) == 5 and all(19 <= t <= 26 for t in temps)
    assert parse_sensor_spec(f"sim~{temps[0]}").base == temps[0]


def test_ports_default_fallback_and_explicit() -> None:
    peer, client, note = demo.choose_ports(3, None)
    if note is None:  # the friendly defaults were free
        assert (peer, client) == (demo.PEER_BASE, demo.CLIENT_BASE)
    else:
        assert client == peer + demo.CLIENT_OFFSET and "instead" in note
    base = free_port_block(2)
    assert demo.choose_ports(2, base) == (base, base + 1000, None)
    with socket.socket() as held:
        # (As free_port_block checks: a port lingering in TIME_WAIT counts as free.)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", base + ADMIN_OFFSET + 1))  # one admin port taken
        held.listen()
        with pytest.raises(demo.DemoError, match="taken"):
            demo.choose_ports(2, base)


def test_satellite_command_is_runnable() -> None:
    command = demo.satellite_command()
    first = command.split()[0]
    assert shutil.which(first) or os.path.exists(first)


def test_missing_until_fresh_entries_and_a_connected_overlay() -> None:
    names = ["a", "b", "c"]

    def entry(i: int, links: list[int], at: int = 100) -> dict:
        return {"peer": f"h:{i}", "active_view": [f"h:{j}" for j in links], "at": at}

    readings = {n: {"temperature": 21.0, "at": 100} for n in names}
    members = [{"node": n, "addr": "h:0", "status": "alive"} for n in names]
    chain = {"a": entry(0, [1]), "b": entry(1, []), "c": entry(2, [1])}  # one-sided links
    assert not demo.missing(
        {"nodes": chain, "readings": readings, "members": members}, names, since_ms=50
    )
    assert demo.missing({"nodes": chain, "readings": readings, "members": members}, names, 150) == (
        "a reading from a, b, c"
    )
    split = {"a": entry(0, [1]), "b": entry(1, [0]), "c": entry(2, [])}
    assert (
        demo.missing({"nodes": split, "readings": readings, "members": members}, names, 50)
        == "links joining c to a"
    )
    stale = dict(chain, c=entry(2, [1], at=10))  # last run's entry, from a reused data dir
    assert demo.missing({"nodes": stale, "readings": readings, "members": members}, names, 50) == (
        "an overlay entry from c"
    )
    assert demo.missing({"nodes": chain, "readings": {}, "members": members}, names, since_ms=50)
    one = {"nodes": {"a": entry(0, [])}, "readings": readings, "members": members[:1]}
    assert not demo.missing(one, ["a"], 50)
    few = {"nodes": chain, "readings": readings, "members": members[:1]}
    assert demo.missing(few, names, 50) == "b, c among a's members"
