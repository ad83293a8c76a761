"""The demo office: ``python run_node.py demo [--nodes 5]``.

Starts N real nodes on 127.0.0.1, each a ``run_node.py`` process as on a Pi, with a
drifting simulated sensor around its own temperature (``sim~<celsius>``), a made-up
network map (an ARP table file per node, so nodes see some devices in common and some
of their own), readings every 2 s, and the live dashboard on the first node. It waits
until every node answers, the overlay is joined and the dashboard shows every node,
prints "ready", and on Ctrl-C (SIGINT), SIGTERM or SIGHUP stops everything it started,
by pid: each launcher gets SIGTERM, and whatever of a node is still alive after 5 s is
SIGKILLed (``bench.cluster``, the machinery the tests use).

Ports: peer 7401.., client 8000.. (so ``satellite`` needs no ``--node``), Thespian admin
peer + 20000, dashboard 8080; when one of them is taken, other free ones, said so.
``--base-port B`` puts peers at B.., clients at B+1000.. and admins at B+20000.., as
``bench.cluster.free_port_block`` counts them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cluster import ADMIN_OFFSET, Node, free_port_block, ports_free, stop_nodes

DEFAULT_NODES = 5
MAX_NODES = 20
PEER_BASE = 7401
CLIENT_BASE = 8000  # node 1 gets the `satellite` command's default port
CLIENT_OFFSET = 1000  # with --base-port: client port = peer port + this, as in bench.cluster
HTTP_PORT = 8080
READ_INTERVAL = 2.0  # seconds: the dashboard's chart moves while you watch
STOP_TIMEOUT = 5.0  # seconds a launcher gets after SIGTERM before its node is SIGKILLed
LOG_TAIL = 5  # lines of a failed node's log shown

# (name, IP, MAC) of the made-up office network. The MACs are locally administered
# (02:...), so they can be no real vendor's.
DEVICES = (
    ("office-printer", "192.168.1.10", "02:5a:7e:00:00:10"),
    ("meeting-room-tv", "192.168.1.11", "02:5a:7e:00:00:11"),
    ("alice-phone", "192.168.1.21", "02:5a:7e:00:00:21"),
    ("bob-laptop", "192.168.1.22", "02:5a:7e:00:00:22"),
    ("carol-phone", "192.168.1.23", "02:5a:7e:00:00:23"),
    ("dave-laptop", "192.168.1.24", "02:5a:7e:00:00:24"),
    ("erin-tablet", "192.168.1.25", "02:5a:7e:00:00:25"),
    ("frank-phone", "192.168.1.26", "02:5a:7e:00:00:26"),
)
ARP_HEADER = "IP address       HW type     Flags       HW address            Mask     Device\n"


class UsageError(Exception):
    """A bad option: one line, exit status 2."""


class NotYet(Exception):
    """What the office is still waiting for (the message is the reason)."""


class DemoError(Exception):
    """The demo cannot start or run (a port taken, a node that died): a message on stderr
    (with the end of the node's log, if one died), exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse prints usage too: we want one line
        raise UsageError(message)


def parse_args(argv: list[str], prog: str) -> argparse.Namespace:
    p = _Parser(
        prog=prog,
        description="Run a demo office: N nodes on 127.0.0.1 with simulated sensors and "
        "network, and the live dashboard on the first. Ctrl-C stops them all.",
    )
    p.add_argument(
        "--nodes",
        type=int,
        metavar="N",
        default=DEFAULT_NODES,
        help=f"1 to {MAX_NODES} (default 5)",
    )
    p.add_argument(
        "--base-port",
        type=int,
        metavar="PORT",
        help=f"first peer port; client ports from it + {CLIENT_OFFSET}, admin ports from it "
        f"+ {ADMIN_OFFSET} (default: peer ports {PEER_BASE}.., client ports {CLIENT_BASE}..)",
    )
    p.add_argument(
        "--http-port", type=int, metavar="PORT", help=f"the dashboard's port (default {HTTP_PORT})"
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the nodes keep state and logs (default: a fresh temp dir)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp data dir at exit")
    p.add_argument(
        "--prefix", default="desk-", help="node ids are PREFIX1, PREFIX2, ... (default desk-)"
    )
    args = p.parse_args(argv)
    if not 1 <= args.nodes <= MAX_NODES:
        raise UsageError(f"--nodes: {args.nodes} is not between 1 and {MAX_NODES}")
    if args.base_port is not None:
        top = args.base_port + ADMIN_OFFSET + args.nodes - 1
        if args.base_port < 1024 or top > 65535:
            raise UsageError(
                f"--base-port: {args.base_port} must be 1024 or more, and the admin ports "
                f"(base + {ADMIN_OFFSET}) must stay below 65536"
            )
    if args.http_port is not None and not 0 < args.http_port < 65536:
        raise UsageError(f"--http-port: {args.http_port} is out of range")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,60}", args.prefix):
        raise UsageError("--prefix: 1-60 letters, digits, '_', '.' or '-'")
    return args


# --- the office ---------------------------------------------------------------------------------


def base_temperature(i: int) -> float:
    """Node i's daily mean: rooms 1.5 degC apart, within 20.5..25, so the chart's lines
    are told apart."""
    return round(20.5 + (i * 1.5) % 5.0, 1)


def devices_seen(i: int) -> list[tuple[str, str, str]]:
    """What node i sees on the network: the printer (everyone does), two people's devices
    near its desk (each person shared with the next desk), the TV from every other desk."""
    people = DEVICES[2:]
    seen = [DEVICES[0]] + [people[(i + k) % len(people)] for k in (0, 1)]
    if i % 2 == 0:
        seen.append(DEVICES[1])
    return seen


def arp_table(devices: list[tuple[str, str, str]]) -> str:
    """``/proc/net/arp`` text (the kernel's own column layout): complete entries on wlan0."""
    row = "{:<16} 0x{:<10x}0x{:<10x}{:<17}     {:<8} {}\n"
    return ARP_HEADER + "".join(row.format(ip, 1, 2, mac, "*", "wlan0") for _, ip, mac in devices)


def choose_ports(count: int, base: int | None) -> tuple[int, int, str | None]:
    """(first peer port, first client port, a note when the defaults were taken)."""
    if base is not None:
        wanted = _block(base, base + CLIENT_OFFSET, count)
        if not ports_free(wanted):
            raise DemoError(
                f"--base-port {base}: some of ports {_span(base, count)}, "
                f"{_span(base + CLIENT_OFFSET, count)} and "
                f"{_span(base + ADMIN_OFFSET, count)} are taken"
            )
        return base, base + CLIENT_OFFSET, None
    if ports_free(_block(PEER_BASE, CLIENT_BASE, count)):
        return PEER_BASE, CLIENT_BASE, None
    try:
        peer = free_port_block(count)
    except RuntimeError:
        raise DemoError("no block of free ports found: pass --base-port") from None
    note = (
        f"note: ports {_span(PEER_BASE, count)} (peer), {_span(CLIENT_BASE, count)} (client) "
        f"or {_span(PEER_BASE + ADMIN_OFFSET, count)} (admin) are taken (another node or "
        f"demo running?): using peer ports {_span(peer, count)} and client ports "
        f"{_span(peer + CLIENT_OFFSET, count)} instead"
    )
    return peer, peer + CLIENT_OFFSET, note


def choose_http(explicit: int | None, used: set[int]) -> tuple[int, str | None]:
    if explicit is not None:
        if explicit in used:
            raise UsageError(f"--http-port: {explicit} is one of the nodes' ports")
        if not ports_free([explicit]):
            raise DemoError(f"--http-port {explicit} is taken")
        return explicit, None
    for port in range(HTTP_PORT, HTTP_PORT + 100):
        if port not in used and ports_free([port]):
            if port == HTTP_PORT:
                return port, None
            return port, f"note: port {HTTP_PORT} is taken: the dashboard is on {port} instead"
    raise DemoError(f"ports {HTTP_PORT}-{HTTP_PORT + 99} are all taken: pass --http-port")


def _block(peer: int, client: int, count: int) -> list[int]:
    return [p + i for p in (peer, client, peer + ADMIN_OFFSET) for i in range(count)]


def _span(first: int, count: int) -> str:
    return str(first) if count == 1 else f"{first}-{first + count - 1}"


def running_elsewhere(names: list[str]) -> dict[str, int]:
    """Nodes of these names already running on this machine: a node's processes are found
    (and killed) by name too, so two demos with the same names must not run at once."""
    import psutil

    found: dict[str, int] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        for name in names:
            if cmdline.startswith(f"satellite[{name}] "):
                found.setdefault(name, proc.info["pid"])
    return found


def missing(state: dict, names: list[str], since_ms: float) -> str:
    """What an office snapshot (``/api/state`` of the first node) lacks before the office
    counts as joined, "" once it is: every node among the first node's members (what
    `satellite members` shows), a reading and a node entry of every node, both written
    since ``since_ms`` (a reused --data-dir holds last run's), and active links in those
    entries (taken either way) that connect all the nodes."""
    members = {m.get("node") for m in state.get("members") or [] if isinstance(m, dict)}
    unknown = [n for n in names if n not in members]
    if unknown:
        return f"{', '.join(unknown)} among {names[0]}'s members"
    entries = state.get("nodes") or {}
    readings = state.get("readings") or {}
    for what, table in (("a reading", readings), ("an overlay entry", entries)):
        late = [n for n in names if not _fresh(table.get(n), since_ms)]
        if late:
            return f"{what} from {', '.join(late)}"
    by_peer = {entries[name].get("peer"): name for name in names}
    links: dict[str, set[str]] = {name: set() for name in names}
    for name in names:
        for peer in entries[name].get("active_view") or []:
            other = by_peer.get(peer)
            if other is not None:
                links[name].add(other)
                links[other].add(name)
    seen, todo = {names[0]}, [names[0]]
    while todo:
        for other in links[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    apart = [n for n in names if n not in seen]
    return f"links joining {', '.join(apart)} to {names[0]}" if apart else ""


def _fresh(entry: Any, since_ms: float) -> bool:
    return isinstance(entry, dict) and entry.get("at", 0) >= since_ms


def satellite_command() -> str:
    """How to run the `satellite` command from here: on PATH, the venv's script, or -m."""
    script = Path(sys.executable).parent / "satellite"
    if not script.exists():
        return f"{sys.executable} -m satellite.cli"
    if shutil.which("satellite") == str(script):
        return "satellite"
    rel = os.path.relpath(script)
    return str(script) if rel.startswith("..") else rel


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def log_tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "    (no log)"
    return "\n".join(f"    {line}" for line in text) or "    (empty log)"


# --- running it ---------------------------------------------------------------------------------


class Demo:
    def __init__(self, args: argparse.Namespace, out: Callable[[str], None]) -> None:
        self.args = args
        self.out = out
        self.stop = threading.Event()
        self.nodes: list[Node] = []
        self.temp = args.data_dir is None
        self.root = Path(args.data_dir or tempfile.mkdtemp(prefix="satellite-demo-")).resolve()
        self.http = 0

    def plan(self) -> None:
        """Ports, files and the Node objects; nothing is started yet."""
        count = self.args.nodes
        names = [f"{self.args.prefix}{i + 1}" for i in range(count)]
        taken = running_elsewhere(names)
        if taken:
            name, pid = next(iter(taken.items()))
            raise DemoError(
                f"a node named {name} is already running here (pid {pid}; another demo?): "
                "stop it, or pass --prefix"
            )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for i, name in enumerate(names):
                (self.root / f"{name}.arp").write_text(arp_table(devices_seen(i)))
        except OSError as exc:
            raise UsageError(f"--data-dir: cannot write in {self.root}: {exc.strerror}") from None
        peer, client, note = choose_ports(count, self.args.base_port)
        used = set(_block(peer, client, count))
        self.http, http_note = choose_http(self.args.http_port, used)
        for line in (note, http_note):
            if line:
                self.out(line)
        seed = f"127.0.0.1:{peer}"
        for i, name in enumerate(names):
            arp = self.root / f"{name}.arp"
            flags = [
                "--admin-port",
                str(peer + i + ADMIN_OFFSET),
                "--sensor",
                f"sim~{base_temperature(i)}",
                "--read-interval",
                str(READ_INTERVAL),
                "--network-scan",
                f"file:{arp}",
            ]
            if i == 0:
                flags += ["--http", f"127.0.0.1:{self.http}"]
            join = [] if i == 0 else [seed]
            self.nodes.append(
                Node(name, peer + i, self.root / name, join, tuple(flags), client_port=client + i)
            )

    def describe(self) -> None:
        from satellite.cli import table

        where = "removed at exit, unless --keep" if self.temp and not self.args.keep else "kept"
        self.out(f"Satellite demo office: {len(self.nodes)} nodes on 127.0.0.1")
        self.out(f"Data and logs in {self.root} ({where})")
        rows = [
            (
                n.name,
                n.peer,
                f"127.0.0.1:{n.client_port}",
                f"sim~{base_temperature(i)}",
                str(n.log),
            )
            for i, n in enumerate(self.nodes)
        ]
        self.out(table(("NODE", "PEER", "CLIENT", "SENSOR", "LOG"), rows, indent="  "))
        self.out(f"Simulated network (ARP tables {self.root}/<node>.arp):")
        seen_by: dict[tuple[str, str, str], list[str]] = {}
        for i, node in enumerate(self.nodes):
            for device in devices_seen(i):
                seen_by.setdefault(device, []).append(node.name)
        rows = [(d[0], d[1], d[2], " ".join(who)) for d, who in seen_by.items()]
        self.out(table(("DEVICE", "IP", "MAC", "SEEN BY"), rows, indent="  "))

    def check_alive(self) -> None:
        for node in self.nodes:
            code = node.proc.poll() if node.proc is not None else None
            if code is not None:
                raise DemoError(
                    f"{node.name} exited with status {code} while starting; "
                    f"the end of {node.log}:\n{log_tail(node.log)}"
                )

    def poll(
        self, condition: Callable[[], Any], deadline: float, what: str, step: float = 0.2
    ) -> bool:
        """Poll ``condition`` until true (True), a stop signal (False) or the deadline."""
        last = ""
        while not self.stop.is_set():
            self.check_alive()
            try:
                if condition():
                    return True
                last = ""
            except NotYet as exc:
                last = f" (still missing: {exc})"
            except Exception as exc:  # noqa: BLE001 - a node or the dashboard not up yet
                last = f" (last: {type(exc).__name__}: {exc})"
            if time.monotonic() > deadline:
                raise DemoError(
                    f"timed out waiting for {what}{last}; the nodes' logs: {self.root}/<node>.log"
                )
            self.stop.wait(step)
        return False

    def answers(self, node: Node) -> bool:
        with node.antenna() as antenna:
            return bool(antenna.members())

    def office_joined(self, since_ms: float) -> bool:
        """Through the dashboard (one request, where asking every node would fork a client
        worker in each): every node's reading and entry, both fresh, and the overlay links
        in those entries joining all the nodes."""
        url = f"http://127.0.0.1:{self.http}"
        status, body = http_get(f"{url}/healthz")
        if status != 200:
            raise NotYet(f"a healthy dashboard ({status} {body.strip()})")
        status, body = http_get(f"{url}/api/state")
        if status != 200:
            raise NotYet(f"the dashboard's /api/state ({status})")
        lacking = missing(json.loads(body), [n.name for n in self.nodes], since_ms)
        if lacking:
            raise NotYet(lacking)
        return True

    def start(self) -> bool:
        """Start every node and wait until the office is ready; False on a stop signal."""
        began, began_ms = time.monotonic(), time.time() * 1000
        for node in self.nodes:
            node.start(detach=True)
        self.out(f"waiting for {len(self.nodes)} nodes to answer and join the overlay...")
        deadline = began + 30 + 3 * len(self.nodes)
        for node in self.nodes:
            if not self.poll(lambda n=node: self.answers(n), deadline, f"{node.name} to answer"):
                return False
        what = "every node and a joined overlay on the dashboard"
        # Every 0.5 s: on a starved machine our own polling is load too.
        if not self.poll(lambda: self.office_joined(began_ms), deadline, what, step=0.5):
            return False
        sat = satellite_command()
        first = self.nodes[0]
        node_flag = ""  # node 1 on 127.0.0.1:8000: the command's default just works
        if first.client_port != CLIENT_BASE:
            node_flag = f" --node 127.0.0.1:{first.client_port}"
        self.out("")
        self.out(f"  Dashboard:  http://127.0.0.1:{self.http}/")
        self.out("")
        self.out("  Try, in another terminal:")
        tries = (
            ("members", "who is in the office"),
            ("watch", "events as they happen (leave it running)"),
            ("set lights on", "...from a third terminal: watch it arrive"),
        )
        lines = [(f"{sat} {command}{node_flag}", why) for command, why in tries]
        width = max(len(line) for line, _ in lines)
        for line, why in lines:
            self.out(f"    {line:<{width}}   # {why}")
        self.out("")
        self.out(
            f"ready in {time.monotonic() - began:.1f} s: {len(self.nodes)} nodes answer, the "
            "overlay is joined. Ctrl-C stops them all."
        )
        return True

    def watch(self) -> bool:
        """Until a stop signal; say so when a node exits by itself. False if one did."""
        gone: set[str] = set()
        while not self.stop.wait(0.5):
            for node in self.nodes:
                code = node.proc.poll() if node.proc is not None else None
                if code is not None and node.name not in gone:
                    gone.add(node.name)
                    self.out(
                        f"{node.name} exited by itself with status {code}; the end of "
                        f"{node.log}:\n{log_tail(node.log)}"
                    )
        return not gone

    def shutdown(self) -> bool:
        """Stop every node (SIGTERM, 5 s, then SIGKILL), by pid; True if all stopped cleanly."""
        if not self.nodes:
            return True
        self.out(f"stopping {len(self.nodes)} nodes...")
        status = stop_nodes(self.nodes, STOP_TIMEOUT)
        # -SIGTERM: a launcher too young to have its handler yet; it had nothing to stop.
        unclean = {n: code for n, code in status.items() if code not in (0, -signal.SIGTERM)}
        for name, code in unclean.items():
            why = "killed after 5 s" if code is None else f"status {code}"
            self.out(f"{name} did not stop cleanly ({why})")
        return not unclean

    def cleanup(self, failed: bool) -> None:
        # After a failure the logs are what the error message points to: keep them.
        if self.temp and not self.args.keep and not failed:
            shutil.rmtree(self.root, ignore_errors=True)
        elif self.nodes:
            self.out(f"data and logs kept in {self.root}")


def main(argv: list[str] | None = None, prog: str = "run_node.py demo") -> int:
    """Run the demo office until a signal; 0 after a clean stop, 1 on trouble, 2 on bad
    options."""
    argv = sys.argv[1:] if argv is None else argv

    def out(line: str) -> None:
        print(line, flush=True)  # flushed: whoever reads our pipe waits for "ready"

    try:
        args = parse_args(argv, prog)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    demo = Demo(args, out)
    # Signals only set an event: stopping happens here, in order, whatever we were doing.
    previous = {
        sig: signal.signal(sig, lambda *_: demo.stop.set())
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    status = 1
    try:
        demo.plan()
        demo.describe()
        if demo.start():
            status = 0 if demo.watch() else 1
        else:
            status = 0  # stopped before ready, on request
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        status = 2
    except DemoError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        status = 1
    finally:
        try:
            if not demo.shutdown():
                status = status or 1
            demo.cleanup(failed=status == 1 and bool(demo.nodes))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if status == 0:
        out("stopped")
    return status
