"""A client's subscription takes effect before any request it sent after it.

An Antenna that (re)connects subscribes, then asks for the office snapshot. The
Subscribe goes to Gossip through a pipe that Gossip hands over first; the snapshot is
State's answer. A target change that reached State after the snapshot and Gossip
before the Subscribe would reach that client by no path at all, so the worker holds
the later requests until Gossip says the subscription is in effect. These drive the
two actors' handlers directly, without an actor system."""

from __future__ import annotations

import msgpack

from actors.client import MAX_HELD, ClientWorker
from actors.overlay import Gossip, Query, Subscribed
from actors.state import SetTargetRequest
from protocols import link, wire


def worker() -> tuple[ClientWorker, list, list, list]:
    """A greeted ClientWorker whose sends, pipe writes and socket writes are recorded."""
    w = ClientWorker()
    w.context = {"gossip": "gossip", "state": "state", "membership": "membership"}
    w.greeted, w.pending, w.subscribing, w.waiting_requests = True, {}, 0, []
    w.sock, w.node_id = object(), "n1"
    sent: list = []
    piped: list = []
    written: list = []
    w.send = lambda to, msg: sent.append((to, msg))  # type: ignore[method-assign]
    w.to_pipe = piped.append  # type: ignore[method-assign]
    w.write = written.append  # type: ignore[method-assign]
    w.close = lambda reason, bad=False: written.append(("closed", reason))  # type: ignore
    return w, sent, piped, written


def frame(msg: object) -> tuple[object, bytes]:
    return msg, wire.encode(msg)


def test_requests_after_a_subscribe_wait_until_gossip_confirms_it():
    w, sent, piped, _ = worker()
    w.on_frame(*frame(link.Subscribe(("data", "lights"))))
    w.on_frame(*frame(link.Request(1, "state")))
    w.on_frame(*frame(link.SetTarget(2, "lights", msgpack.packb("on"))))
    assert len(piped) == 1 and sent == []  # nothing for State before the subscription
    w.on_actor_message(Subscribed(), "gossip")
    queries = [(to, type(m)) for to, m in sent]
    # In the client's order: the snapshot's parts, then the write.
    assert queries == [("state", Query), ("membership", Query), ("state", SetTargetRequest)]


def test_without_a_pending_subscribe_requests_go_at_once():
    w, sent, _, _ = worker()
    w.on_frame(*frame(link.Request(1, "members")))
    assert [to for to, _ in sent] == ["membership"]


def test_each_subscribe_is_confirmed_before_the_requests_behind_it_go():
    w, sent, _, _ = worker()
    for names in (("a",), ("a", "b")):
        w.on_frame(*frame(link.Subscribe(names)))
    w.on_frame(*frame(link.Request(1, "members")))
    w.on_actor_message(Subscribed(), "gossip")
    assert sent == []
    w.on_actor_message(Subscribed(), "gossip")
    assert [to for to, _ in sent] == ["membership"]


def test_a_client_that_floods_requests_before_its_subscription_is_closed():
    w, sent, _, written = worker()
    w.on_frame(*frame(link.Subscribe(("a",))))
    for req in range(MAX_HELD + 1):
        w.on_frame(*frame(link.Request(req, "members")))
    assert sent == [] and written[-1][0] == "closed"


def test_gossip_confirms_a_subscribe_to_a_worker_still_there_only():
    gossip = Gossip()
    gossip.subscribers = {}
    sent: list = []
    gossip.send = lambda to, msg: sent.append((to, type(msg)))  # type: ignore[method-assign]
    gossip.from_client(0.0, "w1", [link.Subscribe(("a",))])
    gossip.from_client(0.0, "w2", [link.Subscribe(("b",))], ack=False)
    assert sent == [("w1", Subscribed)]
    assert set(gossip.subscribers) == {"w1", "w2"}
