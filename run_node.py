"""Run one Satellite node: config -> actor system -> supervision tree.

    python run_node.py [--node-id NAME] [--bind HOST:PORT] [--client HOST:PORT]
                       [--join HOST:PORT ...] [--data-dir DIR] [--admin-port N]
                       [--log-level LEVEL] [--log-json] [--config FILE]

``python run_node.py simulate ...`` runs the simulator instead (bench/simulate.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import select
import signal
import socket
import sys
import tomllib
from pathlib import Path
from typing import Any

DEFAULT_PEER_PORT = 7400
DEFAULT_CLIENT_PORT = 8000
DEFAULT_PRUNE_AFTER = 86400.0
ADMIN_OFFSET = 20000  # Thespian admin port = peer port + this, so nodes side by side just work
SETTINGS = (
    "node_id",
    "bind",
    "client",
    "join",
    "data_dir",
    "admin_port",
    "log_level",
    "log_json",
    "sensor",
    "read_interval",
    "network_scan",
    "prune_after",
    "http",
    "key_file",
    "insecure",
    "max_peers",
    "max_clients",
    "max_frame",
    "send_buffer",
)
# Limits that bound what one connection, or a flood of them, can cost (issue 7).
LIMITS = {
    "max_peers": (32, 1, 1024, "peer connections at once"),
    "max_clients": (32, 1, 1024, "client connections at once"),
    "max_frame": (1 << 20, 1024, 16 << 20, "bytes in one frame"),
    "send_buffer": (4 << 20, 64 << 10, 256 << 20, "bytes queued for one slow connection"),
}


class ConfigError(Exception):
    """A user mistake in flags or the config file: one line, exit status 2."""


def parse_addr(text: str, what: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep:
        host, port = default_host, str(text)
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not HOST:PORT") from None
    if not 0 < number < 65536:
        raise ConfigError(f"{what}: port {number} is out of range")
    return host or default_host, number


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_node.py", description="Run one Satellite node.")
    p.add_argument("--node-id", help="name of this node (default: the hostname)")
    p.add_argument("--bind", help=f"peer address HOST:PORT (default 0.0.0.0:{DEFAULT_PEER_PORT})")
    p.add_argument(
        "--client", help=f"client address HOST:PORT (default 127.0.0.1:{DEFAULT_CLIENT_PORT})"
    )
    p.add_argument(
        "--join",
        action="append",
        default=None,
        metavar="HOST:PORT",
        help="a seed node's peer address; repeat for several",
    )
    p.add_argument("--data-dir", help="where the node keeps its state (default ./data/<node-id>)")
    p.add_argument(
        "--admin-port", type=int, help=f"Thespian admin port (default peer port + {ADMIN_OFFSET})"
    )
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    p.add_argument("--log-json", action="store_true", default=None, help="log JSON lines")
    p.add_argument(
        "--sensor",
        help="none, sim, sim:<celsius> (constant), sim~<celsius> (drifting), tmp102@<bus>:<addr>, "
        "mcp9808@<bus>:<addr> or bme280@<bus>:<addr> (default sim)",
    )
    p.add_argument("--read-interval", type=float, help="seconds between readings (default 5)")
    p.add_argument(
        "--network-scan",
        help="none, arp (/proc/net/arp, the default) or file:<path> (same format)",
    )
    p.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve the live dashboard, /metrics and /healthz there (default: off; "
        "host 127.0.0.1 when only a port is given)",
    )
    p.add_argument(
        "--prune-after",
        type=float,
        help="seconds after which a silent node's readings and a device not seen are "
        "dropped from the office state (default 86400, as Serf's reconnect_timeout)",
    )
    p.add_argument(
        "--key-file",
        help="the cluster key(s), base64, one per line, the primary first (make one with "
        "`satellite keygen`): only peers and clients holding a key of it get in",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="listen on a non-loopback address without a cluster key (anyone on the "
        "network can then join, read and switch everything)",
    )
    for name, (default, _low, _high, what) in LIMITS.items():
        p.add_argument(
            f"--{name.replace('_', '-')}", type=int, help=f"at most this many {what} ({default})"
        )
    p.add_argument("--config", help="a TOML file with the same settings (flags win)")
    return p


def load_config(argv: list[str] | None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    settings: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config, "rb") as fh:
                settings = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {args.config}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--config: {args.config} is not valid TOML: {exc}") from None
        settings = {k.replace("-", "_"): v for k, v in settings.items()}
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise ConfigError(f"--config: unknown setting(s) {', '.join(unknown)}")
    for key in SETTINGS:
        value = getattr(args, key)
        if value is not None:
            settings[key] = value

    node_id = str(settings.get("node_id") or socket.gethostname())
    if not node_id or len(node_id) > 64 or any(c.isspace() for c in node_id):
        raise ConfigError(f"node id {node_id!r} must be 1-64 characters without spaces")
    bind_host, bind_port = parse_addr(settings.get("bind", DEFAULT_PEER_PORT), "--bind")
    client_host, client_port = parse_addr(
        settings.get("client", DEFAULT_CLIENT_PORT), "--client", "127.0.0.1"
    )
    join = settings.get("join") or []
    if isinstance(join, str):
        join = [join]
    seeds = []
    for seed in join:
        host, port = parse_addr(seed, "--join", "127.0.0.1")
        seeds.append(f"{host}:{port}")
    admin_port = int(settings.get("admin_port") or bind_port + ADMIN_OFFSET)
    if not 0 < admin_port < 65536:
        raise ConfigError(f"admin port {admin_port} is out of range: pass --admin-port")
    # Our identity in the overlay is the address others dial: never 0.0.0.0.
    advertised = bind_host
    if _is_ip(bind_host) and ipaddress.ip_address(bind_host).is_unspecified:
        advertised = _primary_ip()
    level = str(settings.get("log_level", "INFO")).upper()
    if level not in ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"--log-level: unknown level {level!r}")
    from sensors import parse_scan_spec, parse_sensor_spec

    network_scan = str(settings.get("network_scan", "arp"))
    try:
        parse_scan_spec(network_scan)
    except ValueError as exc:
        raise ConfigError(f"--network-scan: {exc}") from None

    sensor = str(settings.get("sensor", "sim"))
    try:
        parse_sensor_spec(sensor)
    except ValueError as exc:
        raise ConfigError(f"--sensor: {exc}") from None
    try:
        read_interval = float(settings.get("read_interval", 5.0))
    except (TypeError, ValueError):
        raise ConfigError("--read-interval: not a number of seconds") from None
    if not 0.1 <= read_interval <= 3600:
        raise ConfigError(f"--read-interval: {read_interval} s is not between 0.1 and 3600")
    try:
        prune_after = float(settings.get("prune_after", DEFAULT_PRUNE_AFTER))
    except (TypeError, ValueError):
        raise ConfigError("--prune-after: not a number of seconds") from None
    if not 1 <= prune_after <= 365 * 86400:
        raise ConfigError(f"--prune-after: {prune_after} s is not between 1 s and a year")
    http = None
    if settings.get("http"):
        http_host, http_port = parse_addr(settings["http"], "--http", "127.0.0.1")
        http = f"{http_host}:{http_port}"
        taken = {"--bind": (bind_host, bind_port), "--client": (client_host, client_port)}
        for flag, (host, port) in taken.items():
            # One port, and the same host or a wildcard on either side: bind would fail.
            if port == http_port and (host == http_host or "0.0.0.0" in (host, http_host)):
                raise ConfigError(f"--http: {http} is already taken by {flag}")
    keyring: list[bytes] = []
    key_file = settings.get("key_file")
    if key_file:
        from protocols.secure import parse_keyring

        try:
            keyring = parse_keyring(Path(str(key_file)).read_text())
        except OSError as exc:
            raise ConfigError(f"--key-file: cannot read {key_file}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"--key-file: {key_file}: {exc}") from None
    insecure = bool(settings.get("insecure", False))
    if not keyring and not insecure:
        # Protected mode: without a key, only this machine may reach us.
        listening = {"--bind": bind_host, "--client": client_host}
        if http:
            listening["--http"] = http.rpartition(":")[0]
        for flag, host in listening.items():
            if not _is_loopback(host):
                raise ConfigError(
                    f"{flag}: refusing to listen on {host} without a cluster key, where "
                    "anyone on the network could join, read and switch everything; "
                    "pass --key-file FILE (make one with `satellite keygen`), "
                    "or bind to 127.0.0.1, or accept the risk with --insecure"
                )
    limits = {}
    for name, (default, low, high, _what) in LIMITS.items():
        value = settings.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag}: {value!r} is not a whole number in {low}..{high}")
        limits[name] = value
    return {
        **limits,
        "keyring": keyring,
        "insecure": insecure,
        "http": http,
        "prune_after": prune_after,
        "network_scan": network_scan,
        "sensor": sensor,
        "read_interval": read_interval,
        "node_id": node_id,
        "bind": f"{bind_host}:{bind_port}",
        "peer": f"{advertised}:{bind_port}",
        "client": f"{client_host}:{client_port}",
        "join": seeds,
        "data_dir": str(settings.get("data_dir") or Path("data") / node_id),
        "admin_port": admin_port,
        "log_level": level,
        "log_json": bool(settings.get("log_json", False)),
    }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    return _is_ip(host) and ipaddress.ip_address(host).is_loopback


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _primary_ip() -> str:
    """The address others on the LAN reach us at (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill_actor_system(admin_port: int) -> None:
    import psutil

    marker = f"ActorAddr-(T|:{admin_port})"
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "MultiProcAdmin" in cmdline and marker in cmdline:
            try:
                for child in proc.children(recursive=True):
                    child.kill()
                proc.kill()
            except psutil.Error:
                pass


class _StopSignal:
    """SIGTERM or SIGINT, waited for together with the end of a process, without polling.

    The launcher sleeps in one ``select`` on a pipe the signals write to
    (``signal.set_wakeup_fd``) and on a pidfd of node_sup, readable once it has ended
    (issue 8: idle CPU; the 0.5 s poll it replaces woke the launcher twice a second)."""

    def __init__(self) -> None:
        self.signalled = False
        self.read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, *_: Any) -> None:
        self.signalled = True

    def wait_or_exit(self, pid: int) -> bool:
        """True once signalled, False once process ``pid`` has ended."""
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            return self.signalled
        except (AttributeError, OSError):  # no pidfds (not Linux 5.3+): poll
            pidfd = None
        fds = [self.read_fd] if pidfd is None else [self.read_fd, pidfd]
        try:
            while not self.signalled:
                ready, _, _ = select.select(fds, [], [], 0.5 if pidfd is None else None)
                if self.read_fd in ready:
                    os.read(self.read_fd, 512)
                if self.signalled:
                    break
                if pidfd in ready or (pidfd is None and not _alive(pid)):
                    return False
            return True
        finally:
            if pidfd is not None:
                os.close(pidfd)


def next_incarnation(data_dir: str) -> int:
    """One more than last time: a restarted node never reuses its link identity."""
    path = Path(data_dir) / "incarnation"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        last = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        last = 0
    value = last + 1
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(value))
    os.replace(tmp, path)
    return value


def run(config: dict[str, Any]) -> int:
    from loguru import logger
    from thespian.actors import ActorSystem

    from actors.base import Init, Started, lean_actor_system, loopback_only, set_title
    from actors.immortal import immortalize, trim_free_memory
    from protocols import link, wire
    from supervisors.supervisor import Shutdown, Supervisor
    from supervisors.tree import node_tree

    logger.remove()
    logger.add(sys.stderr, level=config["log_level"], serialize=config["log_json"])
    set_title(config["node_id"], "run_node")
    if config["insecure"] and not config["keyring"]:
        logger.warning(
            "[{}] --insecure: no cluster key, and listening beyond this machine: anyone on "
            "the network can join, read and switch everything",
            config["node_id"],
        )
    incarnation = next_incarnation(config["data_dir"])
    config["incarnation"] = incarnation
    config["launcher_pid"] = os.getpid()

    loopback_only()  # before the actor system opens any socket
    lean_actor_system()  # and before it forks anything
    if config["keyring"]:
        warm_up_crypto(config["keyring"])
    # Last before the first fork: what is alive now stays shared by every process of the
    # node (Python 3.12 and later), and what was freed goes back (actors/immortal.py).
    immortalize()
    trim_free_memory()
    try:
        system = ActorSystem(
            "multiprocTCPBase",
            {"Admin Port": config["admin_port"]},
            logDefs={"version": 1, "root": {"level": "CRITICAL", "handlers": []}},
        )
    except Exception as exc:  # Thespian raises several kinds here; all mean the same
        print(
            f"run_node.py: error: cannot start the actor system on admin port "
            f"{config['admin_port']} ({type(exc).__name__}); is another node using it? "
            "Pass --admin-port.",
            file=sys.stderr,
        )
        return 1
    status = 1
    stop = _StopSignal()  # after the actor system: its pipe must not be inherited by actors
    try:
        spec = node_tree(config)
        top = system.createActor(Supervisor)
        hello = wire.encode(
            link.Hello(link.PEER_PROTOCOL_VERSION, config["node_id"], config["peer"], incarnation)
        )
        context = {
            "peer": config["peer"],
            "hello": hello,
            "keyring": config["keyring"],
            "limits": {k: config[k] for k in ("max_frame", "send_buffer")},
        }
        args = dict(spec["args"], child_id="node_sup")
        init = Init(config["node_id"], "Supervisor:node_sup", args, context)
        started = system.ask(top, init, 10)
        if not isinstance(started, Started):
            logger.error("[{}] the supervision tree did not start", config["node_id"])
            return 1
        # Thespian starts its admin through a process that forks it and exits at once,
        # and never waits for it: reaped here, or `ps` shows a <defunct> one beside every
        # node for its lifetime.
        reap_exited_children()
        logger.info(
            "[{}] up: peer {} client {} incarnation {}",
            config["node_id"],
            config["peer"],
            config["client"],
            incarnation,
        )
        # Wait for a signal, or for the tree to give up (node_sup escalates by exiting):
        # then this process exits non-zero and systemd, or whoever started us, decides.
        if not stop.wait_or_exit(started.pid):
            logger.error("[{}] the supervision tree gave up; stopping", config["node_id"])
            status = 1
        else:
            logger.info("[{}] stopping", config["node_id"])
            system.ask(top, Shutdown(), 5)
            status = 0
    finally:
        if status == 0:
            system.shutdown()
        # Whatever Thespian left (its admin and logger outlive a dead tree), by pid.
        _kill_actor_system(config["admin_port"])
    return status


def reap_exited_children() -> None:
    """Collect the exit status of every child of ours that has ended."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:  # no child left at all
        pass


def warm_up_crypto(keyring: list[bytes]) -> None:
    """One key handshake and one sealed record, in memory, before the forks: OpenSSL
    and our binding of it (protocols/aead.py) set themselves up on first use, in every
    process that seals anything (each connection worker, node_sup for Membership's
    datagrams). Done here, those pages are shared by the node's processes (issue 8)."""
    from protocols.secure import Handshake

    ours, theirs = Handshake(keyring, True, bytes(16)), Handshake(keyring, False, bytes(16))
    data, turn = ours.start(), theirs
    while data and not turn.done:  # each side's answer goes to the other
        data, turn = turn.feed(data), (ours if turn is theirs else theirs)
    if ours.channel is not None and theirs.channel is not None:
        theirs.channel.open(ours.channel.seal(b"warm"))


def loguru_without_asyncio() -> None:
    """Let loguru load without asyncio (and ssl), which it imports only for coroutine
    sinks; we have none. Every process of a node inherits the launcher's modules: these
    were about 3 MiB of each node's memory (issue 8). A coroutine sink would still work:
    asyncio is then imported when first needed. Call before anything imports loguru."""
    if "loguru" in sys.modules or "loguru._asyncio_loop" in sys.modules:
        return
    import types

    def get_running_loop() -> Any:
        import asyncio

        return asyncio.get_running_loop()

    shim = types.ModuleType("loguru._asyncio_loop")
    shim.get_running_loop = get_running_loop  # type: ignore[attr-defined]
    shim.get_task_loop = lambda task: task.get_loop()  # type: ignore[attr-defined]
    sys.modules["loguru._asyncio_loop"] = shim


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if sys.version_info < (3, 12):  # noqa: UP036 - run by hand under an older one
        # Issue 8: 3.11 has no immortal objects, and a node takes 82-87 MiB under it
        # against the 64 of the budget (README, Memory).
        print(
            f"run_node.py: error: Python 3.12 or newer is needed, this is "
            f"{sys.version.split()[0]} (README, Running it on Raspberry Pis)",
            file=sys.stderr,
        )
        return 2
    if argv[:1] == ["simulate"]:
        from bench import simulate

        return simulate.main(argv[1:], prog="run_node.py simulate")
    if argv[:1] == ["demo"]:
        from satellite import demo

        return demo.main(argv[1:], prog="run_node.py demo")
    loguru_without_asyncio()
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"run_node.py: error: {exc}", file=sys.stderr)
        return 2
    return run(config)


if __name__ == "__main__":
    sys.exit(main())
