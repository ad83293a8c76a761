"""The node's supervision tree, as data (like an OTP application's ``*_sup`` module).

    node_sup              rest_for_one, 5 restarts in 30 s
    ├── membership        permanent   HyParView, and which connection reaches which peer
    ├── gossip            permanent   Plumtree, and who among the clients wants what
    ├── state             permanent   the office state, reloaded from SQLite on every start
    ├── network_scanner   permanent   reads the ARP table (not with --network-scan none)
    ├── sensor            permanent   reads the temperature sensor (not with --sensor none)
    ├── peer_workers      supervisor  simple_one_for_one: one PeerWorker per TCP link (temporary)
    ├── client_workers    supervisor  simple_one_for_one: one ClientWorker per Antenna (temporary)
    ├── listener          permanent   accepts on the peer port and the client port
    └── dashboard         permanent   only with --http: the web page, an Antenna of the client port

    all but gossip and the workers run in node_sup's process.

Why rest_for_one: each child depends on the ones before it and not on those after.
Gossip's eager/lazy sets are derived from Membership's active view, so a Membership
restart (its views are gone) must restart Gossip too; every connection worker sends
to Membership and Gossip by address, so when either restarts, the links go down with
them and HyParView rebuilds them from the passive view and the seeds. The listener
or a worker dying touches nobody before it. One listener serves both ports, after both
worker supervisors it hands sockets to.

Hosted children (``hosted=True``): an actor is a process, 4-6 MiB of a node's 64 MiB
budget (issue 8), and these do not earn one. A supervisor only starts, watches and
stops; a listener only accepts; Membership handles a few messages a second, and a
crash of it restarts everything after it anyway (rest_for_one); the network scanner
and the sensor reader read a file or the I2C bus once an interval; State merges a few
deltas a second and writes them to SQLite (a Pi's SD card: a slow fsync holds node_sup's
loop as long, and nothing in it is timed that finely). What a process of its own would
buy, node_sup living through a hang or a hard crash in that code, is not worth 4-6 MiB
a child. Gossip keeps its process: it is the path every event takes, served by a
thread of its own (actors/iothread.py). To the tree they are children as any other
(started, restarted on a crash, stopped, shown by topology without a pid of their
own); the processes node_sup forks close their copies of the listener's sockets.
Connection workers are temporary: a broken TCP connection is not restarted by the
supervisor, it is a membership event, and HyParView decides whether to dial again.
The two worker supervisors are simple_one_for_one, OTP's pattern for many children of
one kind started on demand.
"""

from __future__ import annotations

from typing import Any


def worker(
    id: str,
    start: str,
    args: dict | None = None,
    restart: str = "permanent",
    role: str = "",
    hosted: bool = False,
) -> dict:
    """``hosted``: served by the parent supervisor's process, not a process of its own:
    an actor class (run by ``actors.base.HostedActor``), or any class taking the args,
    the host and the role (the listener)."""
    role = role or start.rpartition(".")[2]
    worker_args = dict(args or {}, role=role)
    if hosted:
        worker_args["hosted"] = True
    return {
        "id": id,
        "start": start,
        "args": worker_args,
        "restart": restart,
        "shutdown": 2.0,
        "type": "worker",
    }


def supervisor(
    id: str, flags: dict, children: list[dict], args: dict | None = None, hosted: bool = False
) -> dict:
    """``hosted``: run inside the parent supervisor's process, not as an actor of its own
    (simple_one_for_one only; supervisors/supervisor.py says why)."""
    sup_args = {"flags": flags, "children": children, "role": f"Supervisor:{id}", **(args or {})}
    if hosted:
        sup_args["hosted"] = True
    return {
        "id": id,
        "start": "supervisors.supervisor.Supervisor",
        "args": sup_args,
        "restart": "permanent",
        "shutdown": 2.0,  # OTP says infinity; a Thespian exit can stall (see README)
        "type": "supervisor",
    }


def only_if(condition: bool, spec: dict) -> list[dict]:
    """``spec`` as a one-child list when ``condition`` holds, else none (to splice in)."""
    return [spec] if condition else []


def node_tree(config: dict[str, Any]) -> dict:
    """The child spec of ``node_sup`` for one node's config."""
    peer = config["peer"]
    return supervisor(
        "node_sup",
        {"strategy": "rest_for_one", "intensity": 5, "period": 30.0},
        [
            worker(
                "membership",
                "actors.overlay.Membership",
                {
                    "peer": peer,
                    "bind": config["bind"],
                    "incarnation": config["incarnation"],
                    "join": config["join"],
                },
                hosted=True,
            ),
            worker("gossip", "actors.overlay.Gossip", {"peer": peer}),
            worker(
                "state",
                "actors.state.State",
                {
                    "data_dir": config["data_dir"],
                    "read_interval": config["read_interval"],
                    "prune_after": config.get("prune_after", 86400.0),
                    "peer": peer,
                    "client": config["client"],
                    "http": config.get("http"),
                },
                hosted=True,
            ),
            # Only when there is something to read (not with "none").
            *only_if(
                config["network_scan"] != "none",
                worker(
                    "network_scanner",
                    "actors.sensing.NetworkScanner",
                    {"scan": config["network_scan"], "interval": config["read_interval"]},
                    hosted=True,
                ),
            ),
            *only_if(
                config["sensor"] != "none",
                worker(
                    "sensor",
                    "actors.sensing.SensorReader",
                    {"sensor": config["sensor"], "interval": config["read_interval"]},
                    hosted=True,
                ),
            ),
            supervisor(
                "peer_workers",
                {"strategy": "simple_one_for_one", "intensity": 1000, "period": 1.0},
                [worker("peer_worker", "actors.overlay.PeerWorker", restart="temporary")],
                # Gossip too: the pipe it made for a worker that died before taking it.
                {"notify": ["membership", "gossip"], "max_children": config.get("max_peers", 32)},
                hosted=True,
            ),
            supervisor(
                "client_workers",
                {"strategy": "simple_one_for_one", "intensity": 1000, "period": 1.0},
                [worker("client_worker", "actors.client.ClientWorker", restart="temporary")],
                {"notify": "gossip", "max_children": config.get("max_clients", 32)},
                hosted=True,
            ),
            worker(
                "listener",
                "actors.connection.Listener",
                {
                    "ports": [
                        {"bind": config["bind"], "workers": "peer_workers"},
                        {"bind": config["client"], "workers": "client_workers"},
                    ]
                },
                hosted=True,
            ),
            # Last: a client of the listener's client port, like any other Antenna (issue 5).
            *only_if(
                bool(config.get("http")),
                worker(
                    "dashboard",
                    "actors.dashboard.Dashboard",
                    {"http": config["http"], "client": config["client"]},
                ),
            ),
        ],
        {"name": "node_sup", "launcher_pid": config.get("launcher_pid")},
    )
