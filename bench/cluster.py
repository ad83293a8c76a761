"""Real nodes on 127.0.0.1 for tests and benchmarks: start ``run_node.py`` processes, wait on
conditions with deadlines, and stop everything they started, by process id.

A node's processes are the launcher, Thespian's admin (which detaches itself, so it
is found by its admin port) and everything below the admin. A node may also live in a
network namespace of its own (``netns``), listening on that namespace's address
(``host``): ``satellite chaos`` does that to cut links in the kernel."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from satellite import Antenna

ROOT = Path(__file__).resolve().parent.parent
ADMIN_OFFSET = 20000


def free_port_block(count: int, start: int = 10000) -> int:
    """A base port with ``count`` free peer ports, client ports (+1000) and admin ports
    (+20000). Kept below Linux's ephemeral range (32768 and up), where Thespian's own
    actor sockets would otherwise take an admin port first."""
    base = start + (os.getpid() % 25) * 40
    claimed = ports_of_running_nodes()
    for offset in range(0, 1000 - 40, 40):
        candidate = base + offset
        ports = [candidate + i for i in range(count)]
        ports += [p + 1000 for p in ports] + [p + ADMIN_OFFSET for p in ports]
        if all(_free(p) and p not in claimed for p in ports):
            return candidate
    raise RuntimeError("no free ports")


_NODE_PORTS = re.compile(r"ActorAddr-\(T\|:(\d+)\)|--(?:bind|client|http)\s+\S*?:(\d+)")


def ports_of_running_nodes() -> set[int]:
    """The peer, client and admin ports of every node running on this machine, read from
    their command lines: a node in another network namespace holds its ports where a bind
    here cannot see them, yet an admin port must be unique machine-wide (a node's
    processes are found, and run_node.py stops what is left of one, by it)."""
    ports: set[int] = set()
    for proc in psutil.process_iter(["cmdline"]):
        for match in _NODE_PORTS.finditer(" ".join(proc.info["cmdline"] or [])):
            ports.add(int(match.group(1) or match.group(2)))
    return ports


def ports_free(ports: Iterable[int]) -> bool:
    """Whether every port can be bound on 127.0.0.1 right now."""
    return all(_free(p) for p in ports)


def _free(port: int) -> bool:
    with socket.socket() as s:
        # As the nodes' listeners and Thespian bind: a port whose last connections linger
        # in TIME_WAIT (a node just stopped) is free to them, one still listening is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_for(
    condition: Callable[[], Any],
    timeout: float,
    what: str,
    step: float = 0.1,
    explain: Callable[[], str] | None = None,
) -> Any:
    """``condition()`` once it is true; else, at ``timeout``, an AssertionError with its last
    value and what ``explain()`` says of the state then (for a failure seen once in CI)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as exc:  # noqa: BLE001 - a node that is not up yet
            last = exc
        else:
            if last:
                return last
        time.sleep(step)
    detail = ""
    if explain is not None:
        try:
            detail = "\n" + explain()
        except Exception as exc:  # noqa: BLE001 - the failure is the news, not this
            detail = f"\n(no explanation: {exc!r})"
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what} (last: {last!r}){detail}"
    )


def alive(pids: Iterable[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie has ended: it waits to be reaped)."""
    left = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.add(pid)
        except psutil.Error:
            pass
    return left


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM reached a script that starts nodes: unwind through its
    ``finally`` blocks, which stop them."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_on_signal(signum: int, frame: Any) -> None:
    # Once: a second Ctrl-C (or systemd's, or timeout's, SIGTERM) must not cut the
    # stopping short and leave nodes behind.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Stopped(signum)


def run_script(main: Callable[[], int], name: str) -> None:
    """``sys.exit(main())`` for a script that starts nodes: Ctrl-C (SIGINT) or SIGTERM
    (``timeout``, ``kill``) ends it with one line and status 128 + the signal's number,
    as a shell expects, once its ``finally`` blocks have stopped its nodes."""
    # A shell's background job starts with SIGINT ignored: it stays so.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _stop_on_signal)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    try:
        status = main()
    except KeyboardInterrupt as stopped:
        signum = stopped.signum if isinstance(stopped, Stopped) else signal.SIGINT
        what = "terminated" if signum == signal.SIGTERM else "interrupted"
        print(f"{name}: {what}; the nodes it started are stopped", file=sys.stderr)
        status = 128 + signum
    sys.exit(status)


def sigint_as_from_a_terminal() -> None:
    """``preexec_fn`` for a child that must take Ctrl-C as from a terminal: a shell's
    background job (``.ci/run &``) hands its children SIGINT ignored, and a Python
    started so turns no SIGINT into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _term_with_parent() -> Callable[[], None] | None:
    """For a launcher forked by ``Node.start(detach=True)``: SIGTERM when its starter dies,
    so even a SIGKILLed starter leaves no node behind (the launcher then stops cleanly).
    libc is loaded here, in the parent: between fork and exec only the call is safe."""
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:  # not Linux
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Node:
    def __init__(
        self,
        name: str,
        peer_port: int,
        data_dir: Path,
        join: list[str],
        extra: tuple = (),
        client_port: int | None = None,
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        """``host``: the address its peer and client ports listen on; ``netns``: the
        network namespace it runs in (``ip netns exec``: root only), None for ours."""
        self.extra = list(extra)  # more run_node.py flags
        self.name = name
        self.host = host
        self.netns = netns
        self.peer_port = peer_port
        self.client_port = peer_port + 1000 if client_port is None else client_port
        self.admin_port = peer_port + ADMIN_OFFSET
        self.peer = f"{host}:{peer_port}"
        self._netns_inode: int | None = None  # of the namespace it runs in, once known
        self.data_dir = data_dir
        self.join = join
        self.proc: subprocess.Popen | None = None
        self.log = data_dir.parent / f"{name}.log"
        # A node with --key-file: our antennas hold the same keys.
        self.keyring: list[bytes] = []
        if "--key-file" in self.extra:
            from protocols.secure import parse_keyring

            path = self.extra[self.extra.index("--key-file") + 1]
            self.keyring = parse_keyring(Path(path).read_text())

    def start(self, detach: bool = False) -> Node:
        """Start the launcher, its output appended to ``self.log``. ``detach``: in a session
        of its own, so a terminal's Ctrl-C reaches only whoever started it (who then stops
        the nodes in order), and SIGTERMed if that starter dies."""
        cmd = [
            sys.executable,
            str(ROOT / "run_node.py"),
            "--node-id",
            self.name,
            "--bind",
            self.peer,
            "--client",
            f"{self.host}:{self.client_port}",
            "--data-dir",
            str(self.data_dir),
        ]
        for seed in self.join:
            cmd += ["--join", seed]
        cmd += self.extra
        if self.netns is not None:
            # `ip netns exec` execs the command itself: the launcher keeps this pid.
            cmd = ["ip", "netns", "exec", self.netns] + cmd
            self._netns_inode = self._netns_inode or _inode(f"/run/netns/{self.netns}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=detach,
                preexec_fn=_term_with_parent() if detach else None,
            )
        return self

    def antenna(self) -> Antenna:
        return Antenna(self.host, self.client_port, timeout=5.0, key=self.keyring)

    def wait_up(self, timeout: float = 20.0) -> None:
        def up() -> bool:
            with self.antenna() as a:
                return bool(a.members())

        wait_for(up, timeout, f"{self.name} to answer on its client port", step=0.2)

    def pids(self) -> set[int]:
        """Every process of this node still alive: launcher, admin and all below, and
        actors with its name that lost their node (adopted by init: Thespian leaves
        orphans when a parent is SIGKILLed). An actor with its name below some other
        node's process is not ours: another office running beside, with the same names."""
        found: set[int] = set()
        roots = []
        if self.proc is not None:
            roots.append(self.proc.pid)
        marker = f":{self.admin_port})"
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmdline = " ".join(p.info["cmdline"] or [])
            if marker in cmdline and "MultiProcAdmin" in cmdline and self._in_our_netns(p.pid):
                roots.append(p.info["pid"])
            elif cmdline.startswith(f"satellite[{self.name}] ") and _orphaned(p):
                roots.append(p.info["pid"])  # and what is below it
        for pid in roots:
            try:
                found.add(pid)
                found.update(c.pid for c in psutil.Process(pid).children(recursive=True))
            except psutil.Error:
                pass
        return alive(found)

    def _in_our_netns(self, pid: int) -> bool:
        """Whether process ``pid`` runs in this node's network namespace: an admin port
        is only unique within one, and another namespace's node may use the same."""
        if self.netns is None:
            mine = _inode("/proc/self/ns/net")
        else:
            # Remembered from the start: the namespace's name may be gone before its processes.
            self._netns_inode = self._netns_inode or _inode(f"/run/netns/{self.netns}")
            mine = self._netns_inode
        theirs = _inode(f"/proc/{pid}/ns/net")
        return mine is None or theirs is None or mine == theirs  # unreadable: as before

    def stop(self, timeout: float = 5.0) -> None:
        stop_nodes([self], timeout)

    def kill(self) -> None:
        """SIGKILL every process of the node, by pid, until none is left."""

        def none_left() -> bool:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return not self.pids()

        wait_for(none_left, 5, f"every process of {self.name} to die", step=0.05)
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


def _orphaned(proc: psutil.Process) -> bool:
    """Whether a node's actor has no node's process above it any more (a launcher is
    no actor: its parent is whoever started it)."""
    try:
        if " ".join(proc.cmdline()).rstrip().endswith("] run_node"):
            return False
        parent = proc.parent()
        cmdline = " ".join(parent.cmdline()) if parent is not None else ""
    except psutil.Error:  # the parent is gone this instant: adopted next
        return True
    return not (
        cmdline.startswith("satellite[") or "MultiProcAdmin" in cmdline or "run_node" in cmdline
    )


def _inode(path: str) -> int | None:
    """A namespace file's inode (names the namespace), None when it cannot be read."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def stop_nodes(nodes: Iterable[Node], timeout: float = 5.0) -> dict[str, int | None]:
    """Stop nodes together: SIGTERM to every launcher still running, one shared wait of
    ``timeout`` seconds for all of them, then SIGKILL whatever of any node is left, by pid.

    Returns each node's launcher exit status as it stopped by itself: None when it had to
    be killed (or was never started)."""
    nodes = list(nodes)
    for node in nodes:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    status: dict[str, int | None] = {}
    for node in nodes:
        code = None
        if node.proc is not None:
            try:
                code = node.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        status[node.name] = code
    for node in nodes:
        node.kill()
    return status


class Cluster:
    def __init__(
        self,
        tmp: Path,
        count: int,
        prefix: str = "n",
        extra: Callable[[int], tuple] | None = None,
        host: Callable[[int], str] | None = None,
        netns: Callable[[int], str | None] | None = None,
    ) -> None:
        """``count`` nodes joining through the first; ``extra(i)``: more flags for node i;
        ``host(i)`` and ``netns(i)``: its address and network namespace (default 127.0.0.1
        in ours)."""
        # Node ids name processes (satellite[<id>]): distinct prefixes keep clusters apart.
        self.base = free_port_block(count)
        self.nodes: list[Node] = []
        seed = f"{host(0) if host else '127.0.0.1'}:{self.base}"
        for i in range(count):
            join = [] if i == 0 else [seed]
            name = f"{prefix}{i}"
            flags = extra(i) if extra else ()
            where = {"host": host(i) if host else "127.0.0.1", "netns": netns(i) if netns else None}
            self.nodes.append(Node(name, self.base + i, tmp / name, join, flags, **where))

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_up()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def leftovers(self) -> set[int]:
        left: set[int] = set()
        for node in self.nodes:
            left |= node.pids()
        return left


@contextmanager
def running_cluster(tmp: Path, count: int, prefix: str, whole: bool = True) -> Iterator[Cluster]:
    """A started cluster (with ``whole``: its overlay already whole and symmetric), stopped
    afterwards, and checked to leave no process behind."""
    cluster = Cluster(tmp, count, prefix=prefix)
    try:
        cluster.start()
        if whole:
            wait_whole(cluster.nodes, 10, "a whole overlay")
        yield cluster
    finally:
        cluster.stop()
        assert not cluster.leftovers(), "processes left behind"


# --- reading a node through its client port ---------------------------------------------------


def hyparview_of(nodes: list[Node]) -> dict[str, dict]:
    """Each node's HyParView state (peer, views, lost peers), by its peer address."""
    out = {}
    for node in nodes:
        with node.antenna() as antenna:
            out[node.peer] = antenna.topology()["hyparview"]
    return out


def views(nodes: list[Node]) -> dict[str, list[str]]:
    return {peer: hv["active_view"] for peer, hv in hyparview_of(nodes).items()}


def connected(views: dict[str, Iterable[str]]) -> bool:
    """Whether every node reaches every other over active links taken either way (links
    to nodes not in ``views`` are ignored)."""
    links: dict[str, set[str]] = {p: set() for p in views}
    for p, qs in views.items():
        for q in qs:
            if q in links:
                links[p].add(q)
                links[q].add(p)
    if not links:
        return True
    start = next(iter(links))
    seen, todo = {start}, [start]
    while todo:
        for q in links[todo.pop()] - seen:
            seen.add(q)
            todo.append(q)
    return len(seen) == len(links)


def whole_and_symmetric(nodes: list[Node]) -> bool:
    v = views(nodes)
    if any(q not in v for qs in v.values() for q in qs):
        return False  # a link to a node that is not among the living
    if not all(p in v[q] for p, qs in v.items() for q in qs):
        return False
    return connected(v)


def overlay_report(nodes: list[Node], log_lines: int = 15) -> str:
    """Each node's active and passive view and the end of its log: what a test that
    waited in vain for a whole overlay prints."""
    out = []
    for node in nodes:
        try:
            with node.antenna() as antenna:
                hv = antenna.topology()["hyparview"]
            views = (
                f"active {hv['active_view']} passive {hv['passive_view']} "
                f"failed {hv.get('failed')}"
            )
        except Exception as exc:  # noqa: BLE001 - a node that is down says so
            views = f"unreadable ({exc!r})"
        out.append(f"{node.name} {node.peer}: {views}")
        try:
            tail = node.log.read_text(errors="replace").splitlines()[-log_lines:]
        except OSError:
            tail = []
        out += [f"    {line}" for line in tail]
    return "\n".join(out)


def wait_whole(nodes: list[Node], timeout: float, what: str, step: float = 0.1) -> None:
    """Wait until the overlay of ``nodes`` is whole and symmetric; on timeout the error
    carries every node's views and the end of its log."""
    wait_for(
        lambda: whole_and_symmetric(nodes), timeout, what, step, lambda: overlay_report(nodes)
    )


def find(tree: dict, child_id: str) -> dict | None:
    if tree.get("id") == child_id:
        return tree
    for child in tree.get("children", []):
        found = find(child, child_id)
        if found is not None:
            return found
    return None


def tree_of(node: Node) -> dict:
    with node.antenna() as antenna:
        return antenna.topology()["tree"]
