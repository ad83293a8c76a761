"""The office targets on real nodes: set, events, convergence, durability."""

from __future__ import annotations

import time

import pytest

from actors.state import ANTI_ENTROPY, known_peers
from bench.cluster import (
    Cluster,
    Node,
    free_port_block,
    running_cluster,
    views,
    wait_for,
    wait_whole,
)
from satellite import AntennaError


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("state"), 3, "state") as cluster:
        yield cluster


def targets(node: Node) -> dict:
    with node.antenna() as antenna:
        return antenna.state()["targets"]


def test_set_reaches_every_nodes_clients_exactly_once(office):
    got = {n.name: [] for n in office.nodes}
    antennas = []
    try:
        for node in office.nodes:
            antenna = node.antenna()
            antenna.on("lights")(lambda payload, data, who=node.name: got[who].append(payload))
            antenna.start()
            antennas.append(antenna)
        with office.nodes[0].antenna() as antenna:
            antenna.set("lights", "on")
            assert antenna.state()["targets"]["lights"] == "on"  # durable here on return
        wait_for(lambda: all(v == ["on"] for v in got.values()), 5, "the event everywhere")
        with office.nodes[2].antenna() as antenna:
            antenna.set("lights", "on")  # no change: no event
            antenna.set("lights", "off")
        wait_for(lambda: all(v == ["on", "off"] for v in got.values()), 5, "the second event")
    finally:
        for antenna in antennas:
            antenna.stop()


def test_concurrent_sets_end_with_one_value_everywhere(office):
    for i, node in enumerate(office.nodes):
        with node.antenna() as antenna:
            antenna.set("temperature", 20 + i)
    wait_for(
        lambda: len({targets(n).get("temperature") for n in office.nodes}) == 1,
        5,
        "one temperature everywhere",
    )


def test_a_killed_node_restarts_with_its_state_and_no_peers(tmp_path):
    port = free_port_block(1)
    node = Node("durable", port, tmp_path / "durable", [])
    node.start()
    try:
        node.wait_up()
        with node.antenna() as antenna:
            antenna.set("lights", "on")
            antenna.set("temperature", 21.5)
        node.kill()  # SIGKILL, every process
        node.start()  # same data dir, nobody to join
        node.wait_up()
        assert targets(node) == {"lights": "on", "temperature": 21.5}
    finally:
        node.kill()


def test_nodes_that_wrote_apart_converge_once_they_meet(tmp_path):
    base = free_port_block(2)
    first = Node("apart0", base, tmp_path / "apart0", [])
    second = Node("apart1", base + 1, tmp_path / "apart1", [f"127.0.0.1:{base}"])
    try:
        second.start()  # its seed is not up: it writes alone
        second.wait_up()
        with second.antenna() as antenna:
            antenna.set("blinds", "down")
        first.start()
        first.wait_up()
        with first.antenna() as antenna:
            antenna.set("lights", "on")
        want = {"blinds": "down", "lights": "on"}
        wait_for(lambda: targets(first) == want == targets(second), 20, "both to converge")
    finally:
        first.kill()
        second.kill()


def test_a_pending_node_entry_shows_until_the_new_link_is_written(tmp_path):
    base = free_port_block(2)
    first = Node("entry0", base, tmp_path / "entry0", [])
    second = Node("entry1", base + 1, tmp_path / "entry1", [f"127.0.0.1:{base}"])
    try:
        first.start()
        first.wait_up()
        second.start()
        second.wait_up()
        wait_whole([first, second], 20, "the two nodes linked")
        seen: set[int] = set()

        def written(antenna) -> bool:
            pending = antenna.metrics().gauges["state_node_entry_pending"]
            entry = antenna.state()["nodes"].get("entry1", {})
            linked = entry.get("active_view") == [f"127.0.0.1:{base}"]
            seen.add(pending)
            if pending or (1 not in seen and not linked):
                return False  # pending, or State has not heard of the link yet
            # Nothing pending any more: the entry the office has shows the link.
            assert linked, entry
            return True

        with second.antenna() as antenna:
            # The link came within 10 s of the first write (at start): the rewrite waits.
            wait_for(lambda: written(antenna), 30, "the entry with the link written", step=0.1)
        assert seen == {0, 1}
    finally:
        first.kill()
        second.kill()


def test_five_simulated_sensors_average_out_everywhere(tmp_path):
    cluster = Cluster(
        tmp_path, 5, "sens", lambda i: ("--sensor", f"sim:{20 + i}", "--read-interval", "1")
    )
    nodes = cluster.nodes
    try:
        cluster.start()

        def everywhere() -> bool:
            for node in nodes:
                with node.antenna() as antenna:
                    state = antenna.state()
                if len(state["readings"]) != 5 or state["avg_temp"] != 22.0:
                    return False
            return True

        wait_for(everywhere, 15, "all five readings and avg_temp 22.0 on every node")
        with nodes[3].antenna() as antenna:
            reading = antenna.state()["readings"]["sens3"]
        assert reading["temperature"] == 23.0 and reading["at"] > 0
    finally:
        cluster.kill()


def test_a_bad_sensor_flag_gets_one_line_and_status_2():
    import subprocess
    import sys

    from bench.cluster import ROOT

    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_node.py"), "--sensor", "lava@1:2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "--sensor" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


ARP = """IP address       HW type     Flags       HW address            Mask     Device
10.0.0.7         0x1         0x2         AA:BB:CC:DD:EE:01     *        wlan0
10.0.0.9         0x1         0x0         00:00:00:00:00:00     *        wlan0
"""


def test_a_device_one_node_sees_is_online_on_every_node(tmp_path):
    base = free_port_block(2)
    arp = tmp_path / "arp"
    arp.write_text(ARP)
    seer = Node(
        "net0",
        base,
        tmp_path / "net0",
        [],
        ("--network-scan", f"file:{arp}", "--read-interval", "1"),
    )
    other = Node(
        "net1", base + 1, tmp_path / "net1", [f"127.0.0.1:{base}"], ("--network-scan", "none")
    )
    try:
        for node in (seer, other):
            node.start()
        for node in (seer, other):
            node.wait_up()

        def online(node: Node) -> list:
            with node.antenna() as antenna:
                return antenna.state()["online_devices"]

        wait_for(lambda: len(online(other)) == 1, 15, "the device on the other node")
        (device,) = online(other)
        assert device["mac_addr"] == "aa:bb:cc:dd:ee:01" and device["ip_addr"] == "10.0.0.7"
        assert device["seen_by"] == "net0" and online(seer) == [device]
    finally:
        seer.kill()
        other.kill()


def test_data_events_carry_the_office_snapshot_with_attribute_access(office):
    snapshots: list = []
    seen_by_lights: list = []
    antenna = office.nodes[2].antenna()
    antenna.on("data")(snapshots.append)
    antenna.on("lights")(lambda payload, data: seen_by_lights.append((payload, data.targets)))
    antenna.start()
    try:
        assert antenna.data is not None  # seeded from the node on connect
        with office.nodes[0].antenna() as writer:
            writer.set("lights", "dim")
        wait_for(lambda: seen_by_lights, 5, "the lights event")
        payload, targets = seen_by_lights[0]
        assert payload == "dim" and targets.lights == "dim"  # data is current in the callback
        wait_for(
            lambda: snapshots and snapshots[-1].targets.get("lights") == "dim",
            5,
            "a data event with the new target",
        )
        data = snapshots[-1]
        assert data["targets"] is data.targets
        assert {m.node for m in data.members} == {n.name for n in office.nodes}
        assert set(data.nodes) == {n.name for n in office.nodes}
        assert data.nodes[office.nodes[0].name].peer == office.nodes[0].peer
        state = antenna.state()
        assert state.targets.lights == "dim" and state["targets"]["lights"] == "dim"
        with pytest.raises(AttributeError):
            _ = state.no_such_field
        # Coalesced: a burst of 40 writes is a handful of data events, not 40.
        before = len(snapshots)
        with office.nodes[1].antenna() as writer:
            for i in range(40):
                writer.set("burst", i)
        wait_for(lambda: snapshots[-1].targets.get("burst") == 39, 5, "the burst's last value")
        assert len(snapshots) - before < 20
    finally:
        antenna.stop()


def test_set_returns_its_hlc_stamp_and_reserved_names_are_refused(office):
    with office.nodes[0].antenna() as antenna:
        first = antenna.set("fan", "low")
        second = antenna.set("fan", "high")
        assert first[2] == second[2] == office.nodes[0].name
        assert second > first
        for bad in ("data", "*"):
            with pytest.raises(AntennaError, match="reserved"):
                antenna.set(bad, 1)
            with pytest.raises(AntennaError, match="reserved"):
                antenna.publish(bad, 1)


def test_a_departed_nodes_entries_are_pruned_and_come_back_with_it(tmp_path):
    flags = ("--prune-after", "3", "--read-interval", "0.5", "--network-scan", "none")
    cluster = Cluster(tmp_path, 3, "prune", lambda i: flags)
    nodes = cluster.nodes
    names = {n.name for n in nodes}

    def known(node: Node) -> tuple[set, set]:
        with node.antenna() as antenna:
            state = antenna.state()
        return set(state.readings), set(state.nodes)

    try:
        cluster.start()
        wait_for(lambda: all(known(n) == (names, names) for n in nodes), 15, "every entry")
        gone = nodes[2]
        gone.kill()
        left = names - {gone.name}
        wait_for(
            lambda: all(known(n) == (left, left) for n in nodes[:2]),
            15,
            "the departed node's reading and links pruned on the others",
        )
        gone.start()  # the same data dir: it re-adds itself with fresh dots
        gone.wait_up()
        wait_for(lambda: all(known(n) == (names, names) for n in nodes), 15, "it is back")
    finally:
        cluster.kill()


def test_a_split_office_that_kept_writing_heals_to_one_state_losing_nothing(tmp_path):
    """Two halves of a six-node office, cut apart, both keep writing (the same targets
    and their own); healed, every node has the same targets, and for every target the
    value is that of its acknowledged write with the highest HLC stamp."""
    base = free_port_block(6)
    seed = f"127.0.0.1:{base}"
    quiet = ("--sensor", "none", "--network-scan", "none")
    # Nodes 4 and 5 also know node 3, so that once cut off from the seed, the second
    # half can find itself again even if a node of it had all its links across the cut.
    contacts = [[], [seed], [seed], [seed], [seed, f"127.0.0.1:{base + 3}"]]
    contacts.append(contacts[-1])
    nodes = [
        Node(f"split{i}", base + i, tmp_path / f"split{i}", contacts[i], quiet) for i in range(6)
    ]
    halves = (nodes[:3], nodes[3:])
    acked: dict[str, list] = {}  # target -> [(stamp, value)] of acknowledged writes

    def write(node: Node, name: str, value: object) -> None:
        with node.antenna() as antenna:
            acked.setdefault(name, []).append((antenna.set(name, value), value))

    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_up()
        wait_whole(nodes, 20, "a whole overlay")
        write(nodes[0], "lights", "on")
        wait_for(lambda: all(targets(n) == {"lights": "on"} for n in nodes), 10, "the first write")

        for mine, theirs in (halves, halves[::-1]):
            for node in mine:
                with node.antenna() as antenna:
                    antenna.block(*(n.peer for n in theirs))

        def apart() -> bool:
            v = views(nodes)
            return all(set(v[n.peer]) <= {m.peer for m in half} for half in halves for n in half)

        wait_for(apart, 20, "two halves with no link between them")
        for round_ in range(5):
            for side, half in enumerate(halves):
                for i, node in enumerate(half):
                    write(node, "lights", f"{side}-{i}-{round_}")
                    write(node, f"half{side}", round_)
        write(halves[1][0], "blinds", "down")
        wait_for(lambda: all("half0" in targets(n) for n in halves[0]), 20, "half 0 agrees")
        wait_for(lambda: all("blinds" in targets(n) for n in halves[1]), 20, "half 1 agrees")
        assert all("half0" not in targets(n) for n in halves[1]), "the cut let a write through"
        assert all("blinds" not in targets(n) for n in halves[0]), "the cut let a write through"

        for node in nodes:
            with node.antenna() as antenna:
                antenna.block()  # heal
        healed = time.monotonic()
        want = {name: max(writes)[1] for name, writes in acked.items()}
        wait_for(
            lambda: all(targets(n) == want for n in nodes),
            2 * ANTI_ENTROPY,
            "one state, with the last acknowledged write of every target, everywhere",
        )
        print(f"converged {time.monotonic() - healed:.2f} s after the heal")
    finally:
        for node in nodes:
            node.kill()


def test_the_known_peers_are_the_other_entries_dialable_addresses():
    entries = {
        "me": {"peer": "10.0.0.1:7400"},
        "b": {"peer": "10.0.0.2:7400", "client": "127.0.0.1:8000"},
        "a": {"peer": "10.0.0.3:7400"},
        "c": {"peer": "garbage"},  # a bad value from a peer is never dialled
        "d": {"peer": 7400},
        "e": "not an entry",
        "f": {"client": "127.0.0.1:8000"},
    }
    assert known_peers(entries, "me") == ("10.0.0.2:7400", "10.0.0.3:7400")
    assert known_peers({}, "me") == ()
