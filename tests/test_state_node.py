"""The office targets on real nodes: set, events, convergence, durability."""

from __future__ import annotations

import pytest

from bench.cluster import (
    Node,
    free_port_block,
    running_cluster,
    wait_for,
)


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


def test_five_simulated_sensors_average_out_everywhere(tmp_path):
    base = free_port_block(5)
    seed = f"127.0.0.1:{base}"
    nodes = [
        Node(
            f"sens{i}",
            base + i,
            tmp_path / f"sens{i}",
            [] if i == 0 else [seed],
            ("--sensor", f"sim:{20 + i}", "--read-interval", "1"),
        )
        for i in range(5)
    ]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_up()

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
        for node in nodes:
            node.kill()


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
