"""One Antenna connection on the client port.

The client protocol is msgpack frames (``protocols.link``) behind a versioned
handshake: the first frame must be ``ClientHello`` with our version, else the client
gets ``Refused`` with the reason and the connection closes; a frame it cannot parse
gets one log line here and a closed connection, never a hang.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgpack

from actors.connection import Connection
from actors.overlay import Answer, ClientGone, PublishEvent, Query, SubscribeClient
from actors.state import SetTargetRequest
from protocols import link, wire

_tokens = itertools.count(1)
MAX_EVENT = 256 * 1024  # bytes of event data: it travels in one frame to every node


class ClientWorker(Connection):
    keepalive = 30.0  # clients may be idle; TCP tells us when they go

    def init(self, args: dict) -> None:
        self.greeted = False
        self.pending: dict[int, dict] = {}  # token -> {"req", "what", "parts"}
        super().init(args)

    def on_frame(self, msg: Any) -> None:
        kind = type(msg)
        if not self.greeted:
            if kind is not link.ClientHello:
                self.refuse(f"expected client_hello first, got {kind.__name__}")
            elif msg.version != link.PROTOCOL_VERSION:
                self.refuse(f"client protocol version {msg.version} is not {link.PROTOCOL_VERSION}")
            else:
                self.greeted = True
                self.remote = f"{self.remote} ({msg.client})"
                peer = self.context["peer"]
                self.write(wire.encode(link.Welcome(link.PROTOCOL_VERSION, self.node_id, peer)))
            return
        if kind is link.Subscribe:
            self.send(self.context["gossip"], SubscribeClient(msg.names, self.myAddress))
        elif kind is link.Publish:
            if len(msg.data) > MAX_EVENT:
                self.reply(
                    msg.req, False, f"event data of {len(msg.data)} bytes; at most {MAX_EVENT}"
                )
                return
            self.send(self.context["gossip"], PublishEvent(msg.name, msg.data))
            self.reply(msg.req, True, None)
        elif kind is link.SetTarget:
            self.set_target(msg)
        elif kind is link.Request:
            self.request(msg)
        else:
            self.close(f"{kind.__name__} is not a client request", bad=True)

    def set_target(self, msg: link.SetTarget) -> None:
        try:
            value = msgpack.unpackb(msg.data, raw=False)
        except (ValueError, msgpack.ExtraData) as exc:
            self.reply(msg.req, False, f"a value it cannot read: {exc}")
            return
        token = next(_tokens)
        self.pending[token] = {"req": msg.req, "what": "set", "parts": {}, "want": ["state"]}
        self.send(self.context["state"], SetTargetRequest(msg.name, value, (token, "state")))

    def refuse(self, reason: str) -> None:
        self.write(wire.encode(link.Refused(reason)))
        self.closing = True
        self.close(reason, bad=True)

    def request(self, msg: link.Request) -> None:
        targets = {
            "members": ["membership"],
            "topology": ["node_sup", "membership", "gossip"],
            "state": ["state", "membership"],
        }.get(msg.what)
        if targets is None:
            self.reply(msg.req, False, f"unknown request {msg.what!r}")
            return
        token = next(_tokens)
        self.pending[token] = {"req": msg.req, "what": msg.what, "parts": {}, "want": targets}
        for name in targets:
            self.send(self.context[name], Query(msg.what, (token, name)))

    def on_actor_message(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, link.Delivery):
            self.write(wire.encode(msg))
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
                    body = None
                elif entry["what"] == "state":
                    body = {**entry["parts"]["state"], "members": entry["parts"]["membership"]}
                else:
                    body = {
                        "node": self.node_id,
                        "tree": entry["parts"]["node_sup"],
                        "hyparview": entry["parts"]["membership"],
                        "plumtree": entry["parts"]["gossip"],
                    }
                self.reply(entry["req"], True, body)

    def reply(self, req: int, ok: bool, body: Any) -> None:
        data = msgpack.packb(body, use_bin_type=True)
        self.write(wire.encode(link.Reply(req, 1 if ok else 0, data)))

    def closed(self, reason: str) -> None:
        gossip = self.context.get("gossip")
        if gossip is not None:
            self.send(gossip, ClientGone(self.myAddress))
