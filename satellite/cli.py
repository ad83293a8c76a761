"""The ``satellite`` command: the office from a shell, in the style of HashiCorp Serf's CLI.

    satellite members                      who is in the office
    satellite event door '{"who": "x"}'    broadcast an event
    satellite set lights on                set an office target
    satellite state                        targets, readings, devices, members
    satellite watch [NAME ...]             print events as they arrive
    satellite keygen                       a new cluster key

Every command that talks to a node takes ``--node HOST:PORT`` (default ``$SATELLITE_NODE``,
else 127.0.0.1:8000), ``--format text|json`` and ``--timeout SECONDS``.

Adding a command is one function decorated with ``@command(...)``: it gets the parsed
arguments and a connected ``Antenna`` (or ``None`` with ``needs_node=False``) and returns
the exit status. Failures end as one ``satellite: ...`` line on stderr: status 2 for a
usage error, 1 for a node that cannot be reached or refuses.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from loguru import logger

from protocols.secure import KEY_BYTES, format_key
from satellite.antenna import Antenna, AntennaError, NodeUnreachable

DEFAULT_NODE = "127.0.0.1:8000"
ENV_NODE = "SATELLITE_NODE"
ENV_KEY_FILE = "SATELLITE_KEY_FILE"
PROG = "satellite"


# --- output helpers ---------------------------------------------------------------------------


def to_plain(value: Any) -> Any:
    """A JSON-ready copy: any Mapping (the snapshot may be a dict subclass with attribute
    access) becomes a dict, any sequence or set a list, bytes hex."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    # default=str: never fail on a type a node may add later; show it rather than crash.
    if indent is None:
        return json.dumps(to_plain(value), separators=(",", ":"), default=str)
    return json.dumps(to_plain(value), indent=indent, default=str)


def parse_value(text: str | None) -> Any:
    """A command-line value: JSON if it parses (``42``, ``21.5``, ``"x"``, ``{"a": 1}``),
    otherwise the plain string, so ``satellite set lights on`` needs no quoting."""
    if text is None:
        return None

    def no_constants(name: str) -> NoReturn:
        raise ValueError(name)  # NaN and Infinity are not JSON: keep them as strings

    try:
        return json.loads(text, parse_constant=no_constants)
    except ValueError:
        return text


def show(value: Any) -> str:
    """A value for a human: strings as they are, everything else as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return dumps(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], indent: str = "") -> str:
    """Columns aligned with two spaces between them, as ``serf members`` prints them."""
    cells = [list(headers)] + [[show(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)] + [row[-1]]
        lines.append((indent + "  ".join(padded)).rstrip())
    return "\n".join(lines)


def age(at_ms: Any, now_ms: float | None = None) -> str:
    """``at`` (unix ms) as "3s ago", "5m ago", "2h ago" or "4d ago"."""
    if not isinstance(at_ms, int | float) or isinstance(at_ms, bool):
        return "-"
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    seconds = max(0, int((now_ms - at_ms) // 1000))  # a node's clock ahead of ours: "0s ago"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def out(line: str = "") -> None:
    print(line, flush=True)  # flushed: `satellite watch | grep ...` sees lines as they come


# --- commands -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    summary: str  # one line, in `satellite --help`
    description: str  # a paragraph, in `satellite NAME --help`
    examples: str
    run: Callable[[argparse.Namespace, Antenna | None], int]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    needs_node: bool = True


COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    summary: str,
    description: str,
    examples: str,
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    needs_node: bool = True,
) -> Callable[[Callable[[argparse.Namespace, Antenna | None], int]], Callable]:
    """Register a subcommand (``satellite topology`` and ``satellite chaos`` go here too)."""

    def register(run: Callable[[argparse.Namespace, Antenna | None], int]) -> Callable:
        COMMANDS[name] = Command(name, summary, description, examples, run, arguments, needs_node)
        return run

    return register


def _members_table(members: Any, indent: str = "") -> str:
    if isinstance(members, Mapping):  # an overlay view rather than a list: show it as is
        return "\n".join(f"{indent}{k}: {show(v)}" for k, v in members.items())
    rows = [
        (m.get("node"), m.get("addr"), m.get("status"))
        for m in members or []
        if isinstance(m, Mapping)
    ]
    return table(("NODE", "ADDRESS", "STATUS"), rows, indent=indent)


@command(
    "members",
    "List the nodes this node knows, and their status",
    "List the members of the office as the node sees them: itself (self), the peers it\n"
    "holds a link to (alive) and those it knows of but has no link to (known).",
    "  satellite members\n  satellite members --node 192.168.1.21:8000 --format json",
)
def members_command(args: argparse.Namespace, antenna: Antenna | None) -> int:
    assert antenna is not None
    members = antenna.members()
    if args.format == "json":
        out(dumps({"members": members}, indent=2))
    else:
        out(_members_table(members))
    return 0


def _event_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the event's name")
    parser.add_argument(
        "payload",
        metavar="PAYLOAD",
        nargs="?",
        help="JSON (42, '\"x\"', '{\"a\": 1}') or else a plain string; none if left out",
    )


@command(
    "event",
    "Broadcast a custom event to every node",
    "Broadcast an event through the whole office: every client subscribed to NAME, on\n"
    "every node, gets PAYLOAD. PAYLOAD is read as JSON if it is JSON, else as a string.",
    '  satellite event door \'{"who": "courier"}\'\n  satellite event deploy v1.2',
    arguments=_event_arguments,
)
def event_command(args: argparse.Namespace, antenna: Antenna | None) -> int:
    assert antenna is not None
    antenna.publish(args.name, parse_value(args.payload))
    if args.format == "json":
        out(dumps({"event": args.name, "ok": True}, indent=2))
    else:
        out(f"Event '{args.name}' dispatched")
    return 0


def _set_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the target's name, e.g. lights")
    parser.add_argument(
        "value", metavar="VALUE", help="JSON (21.5, true, '{\"a\": 1}') or else a plain string"
    )


@command(
    "set",
    "Set an office target (lights, temperature, ...)",
    "Set an office target. Returns once the value is durable on the node; it then\n"
    "reaches every node, and every client subscribed to NAME gets it as an event.\n"
    "VALUE is read as JSON if it is JSON (21.5 is a number), else as a string (on).",
    "  satellite set lights on\n  satellite set temperature 21.5",
    arguments=_set_arguments,
)
def set_command(args: argparse.Namespace, antenna: Antenna | None) -> int:
    assert antenna is not None
    value = parse_value(args.value)
    stamp = antenna.set(args.name, value)
    if args.format == "json":
        out(dumps({"target": args.name, "value": value, "ok": True, "stamp": stamp}, indent=2))
    else:
        out(f"Target '{args.name}' set to {dumps(value)}")
    return 0


def _state_text(state: Mapping) -> str:
    now = time.time() * 1000
    targets = state.get("targets") or {}
    readings = state.get("readings") or {}
    devices = state.get("online_devices") or []
    avg = state.get("avg_temp")

    parts = ["Targets:"]
    if targets:
        parts.append(table(("NAME", "VALUE"), sorted(targets.items()), indent="  "))
    else:
        parts.append("  (none)")

    parts += ["", "Readings:"]
    rows = []
    for node, r in sorted(readings.items()):
        r = r if isinstance(r, Mapping) else {}
        rows.append(
            (
                node,
                r.get("temperature"),
                r.get("humidity"),
                r.get("pressure"),
                age(r.get("at"), now),
            )
        )
    if rows:
        headers = ("NODE", "TEMPERATURE (C)", "HUMIDITY (%)", "PRESSURE (hPa)", "AGE")
        parts.append(table(headers, rows, indent="  "))
    else:
        parts.append("  (none)")

    parts += ["", "Online devices:"]
    rows = [
        (
            d.get("mac_addr"),
            d.get("ip_addr"),
            d.get("device"),
            d.get("seen_by"),
            age(d.get("at"), now),
        )
        for d in devices
        if isinstance(d, Mapping)
    ]
    if rows:
        headers = ("MAC ADDRESS", "IP ADDRESS", "INTERFACE", "SEEN BY", "AGE")
        parts.append(table(headers, rows, indent="  "))
    else:
        parts.append("  (none)")

    shown = f"{avg} C" if isinstance(avg, int | float) else "none (no fresh reading)"
    parts += ["", f"Average temperature: {shown}", "", "Members:"]
    parts.append(_members_table(state.get("members"), indent="  ") or "  (none)")
    return "\n".join(parts)


@command(
    "state",
    "Show the office state: targets, readings, devices, members",
    "Show the office state as the node has it: the targets, each node's latest sensor\n"
    "reading, the devices seen on the network in the last 5 minutes, the average of the\n"
    "fresh temperatures, and the members.",
    "  satellite state\n  satellite state --format json | jq .targets",
)
def state_command(args: argparse.Namespace, antenna: Antenna | None) -> int:
    assert antenna is not None
    state = antenna.state()
    if args.format == "json":
        out(dumps(state, indent=2))
    else:
        out(_state_text(state if isinstance(state, Mapping) else {}))
    return 0


class _StopWatching(BaseException):
    """Raised inside a callback or a signal handler to leave ``Antenna.watch()``: a
    BaseException, because the Antenna logs and swallows a callback's Exceptions."""


def _watch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names", metavar="NAME", nargs="*", help="events to watch (default: all of them)"
    )


def _printer(antenna: Antenna, as_json: bool) -> Callable[[Any], None]:
    # The event being dispatched (its real name under "*", and the node it came from).
    def printed(payload: Any) -> None:
        delivery = antenna.delivery
        event = delivery.name if delivery is not None else "?"
        origin = delivery.origin if delivery is not None else None
        try:
            if as_json:
                out(dumps({"event": event, "payload": payload, "origin": origin}))
            else:
                stamp = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
                out(f"{stamp} {event} {dumps(payload)}")
        except BrokenPipeError:
            _silence_stdout()  # `satellite watch | head -1`: the reader is gone
            raise _StopWatching from None

    return printed


@command(
    "watch",
    "Print events as they arrive, until Ctrl-C",
    "Subscribe to events on the node and print one line per event as it arrives:\n"
    "text is 'TIME NAME PAYLOAD' (the payload as JSON), json one object per line\n"
    '({"event": ..., "payload": ..., "origin": ...}). When the node goes away, it\n'
    "reconnects (and prints the targets that changed meanwhile). Ctrl-C stops it.",
    "  satellite watch\n  satellite watch lights door --format json",
    arguments=_watch_arguments,
)
def watch_command(args: argparse.Namespace, antenna: Antenna | None) -> int:
    assert antenna is not None
    names = list(dict.fromkeys(args.names)) or ["*"]
    if "*" in names:
        names = ["*"]  # the Antenna calls "*" callbacks for every event: avoid doubles
    for name in names:
        antenna.on(name)(_printer(antenna, args.format == "json"))

    def stop(signum: int, frame: Any) -> None:
        raise _StopWatching

    # The Antenna reconnects by itself when the node goes; say so, one line each time
    # (a callable format: loguru appends no traceback then).
    logger.add(sys.stderr, level="WARNING", format=lambda record: PROG + ": {message}\n")

    signal.signal(signal.SIGTERM, stop)  # `kill` and systemd end it as quietly as Ctrl-C
    try:
        antenna.watch()  # dispatches, reconnecting when the node goes, until stopped
    except (KeyboardInterrupt, _StopWatching):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        antenna.close()
    return 0


@command(
    "keygen",
    "Generate a new cluster key",
    "Print a new random 32-byte key, base64-encoded, for the cluster\n"
    "(run_node.py --key-file FILE). Needs no node.",
    "  satellite keygen > office.key",
    needs_node=False,
)
def keygen_command(args: argparse.Namespace, antenna: Antenna | None) -> int:
    key = format_key(secrets.token_bytes(KEY_BYTES))
    out(dumps({"key": key}, indent=2) if args.format == "json" else key)
    return 0


def _topology_arguments(parser: argparse.ArgumentParser) -> None:
    from satellite import topology  # collecting and drawing live in their own module

    topology.add_arguments(parser)


@command(
    "topology",
    "Show supervision trees and overlay links (--cluster: all nodes)",
    "Show the node's supervision tree (each actor's role, strategy or restart type, pid,\n"
    "restarts, uptime, PSS memory, messages handled), its HyParView active and passive\n"
    "views and its Plumtree eager and lazy peers; with --cluster, of every node reachable\n"
    "from it (one that does not answer in time is listed as unreachable). --format also\n"
    "takes dot (Graphviz) and mermaid; --output FILE.svg|.png|.pdf draws with Graphviz.",
    "  satellite topology\n"
    "  satellite topology --cluster --format json\n"
    "  satellite topology --cluster --output office.svg",
    arguments=_topology_arguments,
)
def topology_command(args: argparse.Namespace, antenna: Antenna | None) -> int:
    from satellite import topology

    return topology.run(args, antenna)


def _chaos_arguments(parser: argparse.ArgumentParser) -> None:
    from satellite import chaos  # the harness lives in its own module

    chaos.add_arguments(parser)


@command(
    "chaos",
    "Crash-injection drill: kill actors and nodes, cut the office, then check",
    "Start N nodes on 127.0.0.1 (each in a network namespace of its own when run as root\n"
    "with ip and tc, see --net; or --attach to a running office), run a workload of\n"
    "events and target writes, and meanwhile SIGKILL actors (--kill-actors RATE) and\n"
    "whole nodes (--kill-nodes RATE, restarted 1-5 s later), cut the office in two\n"
    "(--partition) and drop or delay peer messages (--loss, --delay), on a schedule\n"
    "drawn from --seed. Then heal and check: every acknowledged event delivered by\n"
    "every node that stayed up, one state everywhere, every acknowledged target write\n"
    "kept or superseded, no process left behind. Exit 0 when all hold, else 1.",
    "  satellite chaos --nodes 8 --duration 120 --kill-actors 0.2 --kill-nodes 0.02 --seed 1\n"
    "  satellite chaos --partition --loss 0.05 --report chaos.json\n"
    "  satellite chaos --attach 127.0.0.1:8000 --kill-actors 0.1 --duration 60",
    arguments=_chaos_arguments,
    needs_node=False,
)
def chaos_command(args: argparse.Namespace, antenna: Antenna | None) -> int:
    from satellite import chaos

    return chaos.run(args, antenna)


# --- argument parsing -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, as every failure of the command is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: {message} (see '{self.prog} --help')\n")


def node_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as {DEFAULT_NODE}, got {text!r}")
    return host, int(port)


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def common_options() -> argparse.ArgumentParser:
    """The options every subcommand takes, so `satellite members --node X` works."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--node",
        metavar="HOST:PORT",
        type=node_address,
        default=os.environ.get(ENV_NODE) or DEFAULT_NODE,
        help=f"a node's client address (default: ${ENV_NODE}, else {DEFAULT_NODE})",
    )
    common.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    common.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive,
        default=5.0,
        help="how long to wait for the node (default: 5)",
    )
    common.add_argument(
        "--key-file",
        metavar="FILE",
        default=os.environ.get(ENV_KEY_FILE),
        help=f"the office's cluster key file, as the node's --key-file (default: ${ENV_KEY_FILE})",
    )
    return common


def read_keyring(path: str | None) -> list[bytes]:
    """The keys of a key file (``run_node.py --key-file`` format); [] without one."""
    if not path:
        return []
    from protocols.secure import parse_keyring

    try:
        return parse_keyring(open(path).read())
    except OSError as exc:
        raise UsageError(f"--key-file: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"--key-file: {path}: {exc}") from None


class UsageError(Exception):
    """A mistake in the command line: one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    summaries = "\n".join(f"  {c.name:<10} {c.summary}" for c in COMMANDS.values())
    parser = _Parser(
        prog=PROG,
        usage=f"{PROG} [-h] COMMAND [ARGS ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Talk to a Satellite office from the shell, through any node's client port.",
        epilog=(
            f"commands:\n{summaries}\n\n"
            "examples:\n"
            "  satellite members\n"
            "  satellite set lights on --node 127.0.0.1:8001\n"
            "  satellite watch --format json\n\n"
            f"Every command takes --node HOST:PORT (default ${ENV_NODE}, else {DEFAULT_NODE}),\n"
            "--format text|json and --timeout SECONDS. 'satellite COMMAND --help' says more.\n"
            "Exit status: 0 ok, 1 the node could not be reached or refused, 2 usage error."
        ),
    )
    # The commands are listed in the epilog, with no "COMMAND" line above them.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS)
    common = common_options()
    for c in COMMANDS.values():
        p = sub.add_parser(
            c.name,
            prog=f"{PROG} {c.name}",  # not the top-level usage line, which add_parser would use
            parents=[common],
            help=c.summary,
            description=c.description,
            epilog=f"examples:\n{c.examples}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if c.arguments is not None:
            c.arguments(p)
        p.set_defaults(command=c.name)
    return parser


# --- running ------------------------------------------------------------------------------------


def fail(message: str, status: int = 1) -> int:
    # One line, whatever the error carried (a node's error text may span lines).
    print(f"{PROG}: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    # The command owns stderr: no library log lines between the user and our one error line.
    logger.remove()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("missing COMMAND: one of " + ", ".join(COMMANDS))
    cmd = COMMANDS[args.command]
    antenna = None
    try:
        if cmd.needs_node:
            host, port = args.node
            keys = read_keyring(args.key_file)
            antenna = Antenna(host, port, timeout=args.timeout, client="satellite-cli", key=keys)
            try:
                antenna.connect()
            except NodeUnreachable as exc:
                return fail(f"{exc} (is a node running there? see --node and ${ENV_NODE})")
        return cmd.run(args, antenna)
    except UsageError as exc:
        return fail(str(exc), 2)
    except AntennaError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`satellite state | head`): nothing left to tell anyone.
        _silence_stdout()
        return 0
    except Exception as exc:  # noqa: BLE001 - never a traceback at the user
        return fail(f"unexpected error: {type(exc).__name__}: {exc}")
    finally:
        if antenna is not None:
            antenna.close()


def _silence_stdout() -> None:
    # Python flushes stdout at exit and would report the broken pipe again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
