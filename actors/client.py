"""One Antenna connection on the client port.

The client protocol is msgpack frames (``protocols.link``) behind a versioned
handshake: the first frame must be ``ClientHello`` with our version, else the client
gets ``Refused`` with the reason and the connection closes; a frame it cannot parse
gets one log line here and a closed connection, never a hang.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgpack

from actors.connection import Connection, PipeFor
from actors.overlay import (
    Answer,
    ClientGone,
    ControlRequest,
    Deliveries,
    FromClient,
    Query,
    Subscribed,
)
from actors.state import SetTargetRequest
from protocols import link, wire
from protocols.secure import AuthHello

_tokens = itertools.count(1)
MAX_EVENT = 256 * 1024  # bytes of event data: it travels in one frame to every node
MAX_HELD = 1024  # requests held while a Subscribe takes effect (a round trip to Gossip)
RESERVED = frozenset({"data", "*"})  # event names with a meaning of their own
# Which actors answer each request (each answers a Query with its part).
REQUESTS = {
    "members": ("membership",),
    "topology": ("node_sup", "membership", "gossip"),
    "state": ("state", "membership"),
    "metrics": ("node_sup", "membership", "gossip", "state", "sensor", "network_scanner"),
}


class ClientWorker(Connection):
    # A client that only listens sends nothing: we ping it instead of expecting its
    # pings, and a dead one shows as a failed write (or TCP's own timeout).
    keepalive = 30.0
    quiet_ok = True

    def on_idle(self) -> None:
        if self.greeted and time.monotonic() - self.last_tx >= self.keepalive:
            self.write(wire.encode(link.Ping()))

    def init(self, args: dict) -> None:
        self.greeted = False
        self.pending: dict[int, dict] = {}  # token -> {"req", "what", "parts"}
        self.subscribing = 0  # Subscribes Gossip has not yet confirmed
        self.waiting_requests: list[tuple[Any, bytes]] = []  # requests that came after them
        super().init(args)

    def on_frame(self, msg: Any, frame: bytes) -> None:
        kind = type(msg)
        if not self.greeted:
            if kind is AuthHello:
                self.refuse("this node has no cluster key: connect without one")
            elif kind is not link.ClientHello:
                self.refuse(f"expected client_hello first, got {kind.__name__}")
            elif msg.version != link.PROTOCOL_VERSION:
                self.refuse(f"client protocol version {msg.version} is not {link.PROTOCOL_VERSION}")
            else:
                self.greeted = True
                self.remote = f"{self.remote} ({msg.client})"
                peer = self.context["peer"]
                self.write(wire.encode(link.Welcome(link.PROTOCOL_VERSION, self.node_id, peer)))
                # Subscriptions, events and deliveries go through a pipe to Gossip; until
                # it comes, what is for Gossip waits in order (``to_pipe``).
                self.want_pipe()
            return
        if kind is link.Subscribe:
            self.to_pipe(frame)
            self.subscribing += 1  # until Gossip says it is in effect (``Subscribed``)
        elif kind is link.Publish:
            if msg.name in RESERVED:
                self.reply(msg.req, False, f"{msg.name!r} is reserved for the office state")
                return
            if len(msg.data) > MAX_EVENT:
                self.reply(
                    msg.req, False, f"event data of {len(msg.data)} bytes; at most {MAX_EVENT}"
                )
                return
            self.to_pipe(frame)  # as it came, checked above
            self.reply(msg.req, True, None)
        elif self.subscribing and kind in (link.SetTarget, link.Request, link.Control):
            # After the subscription, in order: a snapshot then shows what no event will.
            if len(self.waiting_requests) >= MAX_HELD:
                self.close(f"over {MAX_HELD} requests before its subscription", bad=True)
                return
            self.waiting_requests.append((msg, frame))
        elif kind is link.SetTarget:
            self.set_target(msg)
        elif kind is link.Request:
            self.request(msg)
        elif kind is link.Control:
            self.control(msg)
        else:
            self.close(f"{kind.__name__} is not a client request", bad=True)

    def set_target(self, msg: link.SetTarget) -> None:
        if msg.name in RESERVED:
            self.reply(msg.req, False, f"{msg.name!r} is reserved for the office state")
            return
        self.forward(
            msg.req, "set", "state", msg.data, lambda v, t: SetTargetRequest(msg.name, v, t)
        )

    def control(self, msg: link.Control) -> None:
        to = "gossip" if msg.command == "delivered" else "membership"
        self.forward(
            msg.req, "control", to, msg.args, lambda v, t: ControlRequest(msg.command, v, t)
        )

    def forward(self, req: int, what: str, to: str, data: bytes, make: Any) -> None:
        """Decode a request's msgpack argument and hand it to actor ``to``; its Answer
        becomes our Reply."""
        try:
            value = msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.ExtraData) as exc:
            self.reply(req, False, f"a value it cannot read: {exc}")
            return
        actor = self.context.get(to)
        if actor is None:
            self.reply(req, False, f"the node's {to} is restarting; try again")
            return
        token = next(_tokens)
        self.pending[token] = {"req": req, "what": what, "parts": {}, "want": [to]}
        self.send(actor, make(value, (token, to)))

    def refuse(self, reason: str) -> None:
        self.write(wire.encode(link.Refused(reason)))
        self.closing = True
        self.close(reason, bad=True)

    def key_refused(self, reason: str) -> None:
        # In the clear, since there is no channel: it only says a key is needed.
        self.send_raw(wire.encode(link.Refused(f"this node requires the cluster key ({reason})")))
        self.close(f"key handshake failed: {reason}", bad=True)

    def request(self, msg: link.Request) -> None:
        names = REQUESTS.get(msg.what)
        if names is None:
            self.reply(msg.req, False, f"unknown request {msg.what!r}")
            return
        # A part whose actor is restarting right now is left out of metrics, and makes
        # any other request fail at once rather than hang.
        targets = [name for name in names if self.context.get(name) is not None]
        if len(targets) < len(names) and msg.what != "metrics":
            missing = ", ".join(sorted(set(names) - set(targets)))
            self.reply(msg.req, False, f"the node's {missing} is restarting; try again")
            return
        token = next(_tokens)
        self.pending[token] = {"req": msg.req, "what": msg.what, "parts": {}, "want": targets}
        for name in targets:
            self.send(self.context[name], Query(msg.what, (token, name)))

    def on_actor_message(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Deliveries):
            self.write(msg.frames)
        elif isinstance(msg, PipeFor):
            self.pipe_for(msg.handle)  # closed already: what waited went as FromClient
        elif isinstance(msg, Subscribed):
            self.subscribing -= 1
            if not self.subscribing and self.sock is not None:
                held, self.waiting_requests = self.waiting_requests, []
                for request, frame in held:
                    self.on_frame(request, frame)
        elif isinstance(msg, Answer):
            token, name = msg.token
            entry = self.pending.get(token)
            if entry is None:
                return
            entry["parts"][name] = msg.body
            if len(entry["parts"]) == len(entry["want"]):
                del self.pending[token]
                if entry["what"] == "members":
                    body = entry["parts"]["membership"]
                elif entry["what"] == "set":
                    body = entry["parts"]["state"]  # the write's HLC timestamp
                elif entry["what"] == "state":
                    body = {**entry["parts"]["state"], "members": entry["parts"]["membership"]}
                elif entry["what"] == "metrics":
                    body = self.metrics(entry["parts"])
                elif entry["what"] == "control":
                    (body,) = entry["parts"].values()
                    if "error" in body:
                        self.reply(entry["req"], False, body["error"])
                        return
                else:
                    body = {
                        "node": self.node_id,
                        "tree": entry["parts"]["node_sup"],
                        "hyparview": entry["parts"]["membership"],
                        "plumtree": entry["parts"]["gossip"],
                    }
                self.reply(entry["req"], True, body)

    def metrics(self, parts: dict) -> dict:
        """Counters and gauges of every actor that answered, and restarts by role."""
        counters: dict[str, int] = {}
        gauges: dict[str, float] = {}
        for name, part in parts.items():
            if name != "node_sup":
                counters.update(part.get("counters", {}))
                gauges.update(part.get("gauges", {}))
        restarts: dict[str, int] = {}

        def walk(rows: list) -> None:
            for row in rows:
                restarts[row["id"]] = restarts.get(row["id"], 0) + row.get("restarts", 0)
                walk(row.get("children", []))

        tree = parts.get("node_sup")
        if tree is not None:
            walk(tree.get("children", []))
            if tree.get("node_pss") is not None:  # every process of the node (issue 8)
                gauges["node_pss_bytes"] = tree["node_pss"]
        return {"node": self.node_id, "counters": counters, "gauges": gauges, "restarts": restarts}

    def reply(self, req: int, ok: bool, body: Any) -> None:
        data = msgpack.packb(body, use_bin_type=True)
        self.write(wire.encode(link.Reply(req, 1 if ok else 0, data)))

    def closed(self, reason: str) -> None:
        gossip = self.context.get("gossip")
        if gossip is not None:
            unpiped = self.take_pipe_pending()
            if unpiped:
                self.send(gossip, FromClient(unpiped))
            self.send(gossip, ClientGone(self.myAddress))
