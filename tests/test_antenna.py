"""The Antenna as client programs use it: data access, failover, asyncio, bad callbacks."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest

from bench.cluster import (
    find,
    overlay_report,
    running_cluster,
    tree_of,
    views,
    wait_for,
    wait_whole,
)
from satellite import Antenna, AntennaError, Data, NodeUnreachable
from satellite.antenna import _arity, parse_node


def test_data_reads_as_attributes_and_keys_all_the_way_down():
    data = Data({"avg_temp": 21.5, "online_devices": [{"mac_addr": "aa:bb"}], "t": {"x": 1}})
    assert data.avg_temp == data["avg_temp"] == 21.5
    assert data.online_devices[0].mac_addr == data["online_devices"][0]["mac_addr"] == "aa:bb"
    assert data.t.x == 1 and isinstance(data.t, Data)
    with pytest.raises(AttributeError):
        _ = data.missing
    assert dict(data) == {
        "avg_temp": 21.5,
        "online_devices": [{"mac_addr": "aa:bb"}],
        "t": {"x": 1},
    }


def test_callback_arity_comes_from_the_signature():
    assert _arity(lambda p, d: None) == 2
    assert _arity(lambda p: None) == 1
    assert _arity(lambda p, who="x": None) == 1
    assert _arity(lambda *a: None) == 2
    assert _arity(lambda: None) == 0


@pytest.mark.parametrize("bad", ["nope", "host:", ":80", "h:0", "h:99999", "h:x"])
def test_a_bad_node_address_is_a_value_error(bad):
    with pytest.raises(ValueError):
        parse_node(bad)


def test_no_node_answering_is_node_unreachable(tmp_path):
    from bench.cluster import free_port_block

    port = free_port_block(1) + 1000  # nothing listens there
    with pytest.raises(NodeUnreachable):
        Antenna(nodes=[f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"], timeout=1).members()


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("antenna"), 3, "ant") as cluster:
        yield cluster


def client(node) -> str:
    return f"127.0.0.1:{node.client_port}"


def test_a_failing_callback_is_logged_and_the_antenna_goes_on(office):
    got = []

    def broken(payload):
        raise RuntimeError("a bug in the user's script")

    antenna = Antenna(nodes=[client(office.nodes[0])])
    antenna.on("bell")(broken)
    antenna.on("bell")(got.append)
    antenna.start()
    try:
        with office.nodes[1].antenna() as other:
            other.publish("bell", 1)
            other.publish("bell", 2)
        # (Plumtree does not keep one origin's events in order: compare as sets.)
        wait_for(lambda: sorted(got) == [1, 2], 10, "both events despite the failing callback")
    finally:
        antenna.stop()


def test_async_programs_iterate_over_events(office):
    async def first_two() -> list:
        antenna = Antenna(nodes=[client(office.nodes[2])])
        seen = []
        try:
            stream = antenna.events("chime")
            waiter = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0)  # let it subscribe
            wait_for(lambda: antenna._thread is not None, 10, "the antenna to start")
            with office.nodes[0].antenna() as other:
                other.publish("chime", "ding")
                other.publish("chime", "dong")
            seen.append(await asyncio.wait_for(waiter, 10))
            seen.append(await asyncio.wait_for(stream.__anext__(), 10))
            await stream.aclose()
        finally:
            antenna.stop()
        return seen

    seen = asyncio.run(first_two())
    assert sorted((e.name, e.payload, e.origin) for e in seen) == [
        ("chime", "ding", office.nodes[0].name),
        ("chime", "dong", office.nodes[0].name),
    ]


def test_clients_that_publish_and_leave_at_once_are_each_delivered_exactly_once(office):
    # A client's worker sends its events to Gossip through a pipe that Gossip makes;
    # a client gone before the pipe came must lose nothing and send nothing twice.
    first, second, _ = office.nodes
    got: list = []
    listener = Antenna(nodes=[client(second)], timeout=2)
    listener.on("knock")(got.append)
    listener.start()
    try:
        for i in range(30):
            with Antenna(nodes=[client(first)], timeout=2) as once:
                once.publish("knock", i)
        wait_for(lambda: sorted(got) == list(range(30)), 10, "every knock at the listener")
        with Antenna(nodes=[client(first)], timeout=2) as last:
            last.publish("knock", "end")  # anything sent twice arrived before this one
        wait_for(lambda: got[-1:] == ["end"], 10, "the last knock")
        assert sorted(got[:-1]) == list(range(30))
    finally:
        listener.stop()


def test_an_antenna_sees_every_target_change_after_its_nodes_state_restarted(office):
    # A State restart closes the node's client connections (rest_for_one): the Antenna
    # comes back to the same node, whose new State must not reuse the ids it has seen
    # (the Antenna drops an id it has seen). State has no process of its own (it runs in
    # node_sup's): a Gossip killed restarts it, as everything after Gossip.
    node = office.nodes[1]
    seen: list = []
    live: list = []  # probes that came as events (not from a snapshot on reattaching)
    antenna = Antenna(nodes=[client(node)], timeout=2)
    antenna.on("heating")(seen.append)

    @antenna.on("probe")
    def probe(value):
        if antenna.delivery.id != b"t/resync":
            live.append(value)

    antenna.start()
    try:
        with node.antenna() as w:
            for value in ("a", "b", "c"):
                w.set("heating", value)
        wait_for(lambda: seen == ["a", "b", "c"], 10, "the changes before the restart")
        before = {row: find(tree_of(node), row) for row in ("gossip", "state", "listener")}
        os.kill(before["gossip"]["pid"], signal.SIGKILL)

        def restarted() -> bool:
            tree = tree_of(node)
            now = {row: find(tree, row) or {} for row in before}
            return (
                now["gossip"].get("pid") not in (None, before["gossip"]["pid"])
                and all(now[r].get("handle") != before[r]["handle"] for r in ("state", "listener"))
                and all(row.get("state") == "running" for row in now.values())
            )

        wait_for(restarted, 10, "gossip, state and the listener to restart")
        # The Antenna may have attached once more before node_sup closed what came after
        # Gossip: its attachment is the last one once an event reaches it again.
        with node.antenna() as w:
            n = 0
            while not live:
                n += 1
                w.set("probe", n)
                wait_for(lambda n=n: live or antenna.data.targets.get("probe") == n, 10, "a probe")
        with node.antenna() as w:
            for value in ("d", "e", "f"):
                w.set("heating", value)
        wait_for(lambda: seen[3:] == ["d", "e", "f"], 10, "each change after the restart")
    finally:
        antenna.stop()


def where_is_lights(antenna: Antenna, *nodes: Any, fired: list) -> str:
    """For a failure seen once in CI (under load): where the change got to."""
    lines = [
        f"fired {fired}; the Antenna on {antenna.node}, its snapshot's lights "
        f"{(antenna.data or {}).get('targets', {}).get('lights')!r}"
    ]
    for node in nodes:
        try:
            with node.antenna() as a:
                lights = a.state().get("targets", {}).get("lights")
                members = [m["node"] for m in a.members()]
            lines.append(f"{node.name}: lights {lights!r}, members {members}")
        except Exception as exc:  # noqa: BLE001 - what it says is the news
            lines.append(f"{node.name}: {exc!r}")
    return "\n".join(lines)


def test_an_antenna_fails_over_when_its_node_dies_and_misses_no_target_change(office):
    """The last test of the module: it kills node 0."""
    lights: list = []
    doors: list = []
    first, second, writer = office.nodes
    # (the test before restarted most of node 1: its links may still be coming back)
    wait_whole(office.nodes, 15, "a whole overlay")
    # This tests the Antenna, not HyParView's repair of an overlay that loses a cut
    # vertex: the two survivors are linked before node 0 dies. After the test before,
    # the overlay can be a star around node 0 for a while, and killing its centre then
    # left the two apart for longer than this waits (CI, 2026-12-05; HyParView now asks
    # its lost peers at once when left alone: test_hyparview, bench/overlay_repair.py).
    wait_for(
        lambda: writer.peer in views([second])[second.peer],
        30,
        "the survivors-to-be linked to each other",
        explain=lambda: overlay_report(office.nodes),
    )
    antenna = Antenna(nodes=[client(first), client(second)], timeout=2)
    antenna.on("lights")(lights.append)
    antenna.on("door")(doors.append)
    antenna.start()
    try:
        assert antenna.node == first.name
        with writer.antenna() as w:
            w.set("lights", "on")
        wait_for(lambda: lights == ["on"], 10, "the first change")
        first.kill()
        killed = time.monotonic()
        with writer.antenna() as w:
            w.set("lights", "off")  # while the antenna has no node
        wait_for(
            lambda: lights[-1:] == ["off"],
            15,
            "the change made while it was away",
            explain=lambda: where_is_lights(antenna, second, writer, fired=lights),
        )
        back = time.monotonic() - killed
        assert antenna.node == second.name
        assert lights == ["on", "off"]  # exactly once each
        with writer.antenna() as w:
            w.publish("door", "open")
        wait_for(lambda: doors == ["open"], 10, "events again after the failover")
        print(f"back with the missed change {back:.2f} s after the SIGKILL")
    finally:
        antenna.stop()


def test_an_event_delivered_twice_reaches_the_callback_once() -> None:
    # What a node whose Gossip restarted does: its neighbours announce recent ids again.
    import msgpack

    from protocols import link

    antenna = Antenna("127.0.0.1", 1)
    got = []
    antenna.on("door")(got.append)
    first = link.Delivery("door", msgpack.packb("open"), "desk-1", b"\x01" * 16)
    other = link.Delivery("door", msgpack.packb("open"), "desk-1", b"\x02" * 16)
    for frame in (first, first, other, first):
        antenna._dispatch(frame)
    assert got == ["open", "open"]  # two events with the same payload, each once


class Resyncing(Antenna):
    """An Antenna whose ``state()`` answers with ``snapshot`` after the node's events
    ``meanwhile`` were read (they take another path through the node than the answer)."""

    def __init__(self, snapshot: dict, meanwhile: list) -> None:
        super().__init__("127.0.0.1", 1)
        self.snapshot, self.meanwhile = snapshot, meanwhile

    def state(self) -> Data:
        for frame in self.meanwhile:
            self._dispatch(frame)
        return Data(self.snapshot)


def change(value: str, stamp: bytes):
    import msgpack

    from protocols import link

    return link.Delivery("lights", msgpack.packb(value), "writer", stamp)


def reattached(snapshot: dict, meanwhile: list) -> tuple[Resyncing, list]:
    """An Antenna that had lights "on" from its last node, as it attaches to the next."""
    antenna = Resyncing(snapshot, meanwhile)
    fired: list = []
    antenna.on("lights")(fired.append)
    antenna.data = Data({"targets": {"lights": "on"}})
    antenna._fired["lights"] = "on"
    return antenna, fired


def test_a_change_that_overtakes_a_stale_snapshot_fires_once_and_the_stale_value_never():
    # The node announced "off" (its change 8) after the snapshot (up to 7) was taken, and
    # the event came first (what the failover test printed once, 2026-12-05: fired on,
    # off, on).
    antenna, fired = reattached(
        {"targets": {"lights": "on"}, "last_change": "t/b/1a/7"}, [change("off", b"t/b/1a/8")]
    )
    antenna._resync()
    assert fired == ["off"]
    assert antenna.data.targets.lights == "off"


def test_changes_the_snapshot_holds_do_not_fire_again_when_they_come_after_it():
    antenna, fired = reattached({"targets": {"lights": "off"}, "last_change": "t/b/1a/8"}, [])
    antenna._resync()
    assert fired == ["off"]  # from the snapshot
    antenna._dispatch(change("on", b"t/b/1a/7"))  # announced before, come late
    antenna._dispatch(change("off", b"t/b/1a/8"))
    assert fired == ["off"]
    antenna._dispatch(change("on", b"t/b/1a/9"))  # a change after the snapshot
    antenna._dispatch(change("dim", b"t/c/2b/3"))  # another node's numbering
    assert fired == ["off", "on", "dim"]


def test_an_older_data_event_does_not_replace_the_snapshot():
    import msgpack

    from protocols import link

    antenna, _ = reattached({"targets": {"lights": "off"}, "last_change": "t/b/1a/8"}, [])
    antenna._resync()
    older = {"targets": {"lights": "on"}, "last_change": "t/b/1a/6"}
    antenna._dispatch(link.Delivery("data", msgpack.packb(older), "b", b"b/6"))
    assert antenna.data.targets.lights == "off"
    newer = {"targets": {"lights": "dim"}, "last_change": "t/b/1a/10"}
    antenna._dispatch(link.Delivery("data", msgpack.packb(newer), "b", b"b/10"))
    assert antenna.data.targets.lights == "dim"


def test_events_held_for_a_snapshot_that_never_comes_are_still_delivered():
    import msgpack

    from protocols import link

    class Failing(Resyncing):
        def state(self) -> Data:
            super().state()
            raise AntennaError("the node went away")

    antenna = Failing({}, [link.Delivery("door", msgpack.packb("open"), "desk", b"\x01" * 16)])
    got: list = []
    antenna.on("door")(got.append)
    with pytest.raises(AntennaError):
        antenna._resync()
    assert got == ["open"]
