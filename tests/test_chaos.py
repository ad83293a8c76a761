"""``satellite chaos``: the schedule and the checks on synthetic data, then short real drills."""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.cluster import ROOT, running_cluster, wait_for
from satellite import chaos
from satellite.chaos import (
    Lost,
    NetSupport,
    Publish,
    Write,
    actor_rows,
    check_targets,
    choose_net,
    compare_states,
    expected_at,
    find_lost,
    make_schedule,
    max_down_for,
    restarts_by_role,
)

CHAOS = [sys.executable, "-m", "satellite.cli", "chaos"]

# --- the schedule ------------------------------------------------------------------------------


def test_the_schedule_is_a_function_of_the_seed():
    one = make_schedule(1, 8, 120, kill_actors=0.2, kill_nodes=0.02, partition=True)
    assert one == make_schedule(1, 8, 120, kill_actors=0.2, kill_nodes=0.02, partition=True)
    assert one != make_schedule(2, 8, 120, kill_actors=0.2, kill_nodes=0.02, partition=True)
    assert list(one.faults) == sorted(one.faults, key=lambda f: (f.at, f.kind))
    # Each kind draws from its own stream: adding node kills moves no actor kill.
    alone = make_schedule(1, 8, 120, kill_actors=0.2)
    assert [f for f in one.faults if f.kind == "kill_actor"] == list(alone.faults)
    assert make_schedule(1, 8, 120).faults == ()


def test_actor_kills_come_at_the_rate_asked_on_any_node():
    schedule = make_schedule(7, 10, 10_000, kill_actors=0.2)
    kills = schedule.faults
    assert 1800 <= len(kills) <= 2200  # 0.2/s for 10,000 s, Poisson: ~2000 +- 45
    assert all(0 <= f.at < 10_000 and 0 <= f.pick < 1 for f in kills)
    assert {f.node for f in kills} == set(range(10))
    gaps = [b.at - a.at for a, b in zip(kills, kills[1:], strict=False)]
    assert 4.5 <= sum(gaps) / len(gaps) <= 5.5  # exponential gaps of mean 1/rate


@pytest.mark.parametrize("nodes", [1, 3, 6, 8])
def test_node_kills_never_take_down_more_than_a_third_at_once(nodes):
    limit = max_down_for(nodes)
    assert limit == max(1, -(-nodes // 3))
    schedule = make_schedule(3, nodes, 2000, kill_nodes=0.5)  # far more than could be honoured
    kills = [f for f in schedule.faults if f.kind == "kill_node"]
    assert kills and len(kills) < 0.5 * 2000
    for f in kills:
        assert 1 <= f.duration <= 5 and 0 <= f.node < nodes
        # Down from its kill until its planned restart plus the time a start takes.
        down = [g for g in kills if g.at <= f.at < g.at + g.duration + chaos.RESTART_ALLOWANCE]
        assert len(down) <= limit
        assert len({g.node for g in down}) == len(down)  # never one node twice
    modest = make_schedule(1, 8, 120, kill_nodes=0.02)
    assert 0 < modest.count("kill_node") < 10


def test_partitions_come_every_20_s_or_so_and_split_the_office_in_two_halves():
    schedule = make_schedule(5, 7, 600, partition=True)
    cuts = schedule.faults
    assert 20 <= len(cuts) <= 40
    assert chaos.PARTITION_FIRST[0] <= cuts[0].at <= chaos.PARTITION_FIRST[1]
    for a, b in zip(cuts, cuts[1:], strict=False):
        assert 15 <= b.at - a.at <= 25
    for f in cuts:
        assert 5 <= f.duration <= 10 and f.at + f.duration <= 600
        first, second = f.halves
        assert sorted(first + second) == list(range(7)) and {len(first), len(second)} == {3, 4}
    assert len({f.halves for f in cuts}) > 1
    assert make_schedule(5, 1, 600, partition=True).faults == ()
    assert make_schedule(5, 7, 600).count("partition") == 0


# --- the checks --------------------------------------------------------------------------------


def test_an_event_is_expected_where_the_node_stayed_up_from_its_publication():
    assert expected_at(10.0, [])
    assert expected_at(10.0, [(2.0, 6.0)])  # back before it was published
    assert not expected_at(10.0, [(2.0, 12.0)])  # down at the time
    assert not expected_at(10.0, [(15.0, 20.0)])  # killed afterwards
    assert not expected_at(10.0, [(2.0, None)])  # still down


def test_the_checker_flags_a_lost_event_and_only_that():
    publishes = [
        Publish(1, "a", 1.0, acked=True),
        Publish(2, "b", 2.0, acked=False),  # never acknowledged: nobody owes it
        Publish(3, "a", 5.0, acked=True),
        Publish(4, "c", 9.0, acked=True),
    ]
    delivered = {"a": {1, 3, 4}, "b": {1, 4}, "c": {4}}
    downtimes = {"c": [[2.0, 8.0]]}  # c was killed at 2 s and back at 8 s
    check = find_lost(publishes, delivered, downtimes, ["a", "b", "c"])
    assert check.lost == [Lost(3, "b", "a", 5.0)] and check.with_origin == []
    # 1 at a, b; 3 at a, b; 4 at a, b, c (c came back before it was published)
    assert check.expected == 7


def test_an_event_that_never_left_an_origin_killed_after_acknowledging_it_is_told_apart():
    publishes = [
        Publish(1, "a", 1.0, acked=True),  # left a: b has it, so c owes it too
        Publish(2, "a", 2.0, acked=True),  # never left a, which crashed at 2.5 s
        Publish(3, "b", 3.0, acked=True),  # never left b, which never crashed: lost
    ]
    delivered = {"a": {1, 2}, "b": {1, 3}, "c": set()}
    downtimes = {"a": [[2.5, 6.0]]}
    crashes = {"a": [2.5], "b": [1.0]}  # b crashed before 3 was published: no excuse
    check = find_lost(publishes, delivered, downtimes, ["a", "b", "c"], crashes)
    assert check.lost == [Lost(1, "c", "a", 1.0), Lost(3, "c", "b", 3.0)]
    (gone,) = check.with_origin
    assert gone["id"] == 2 and gone["origin"] == "a" and gone["origin_crash_s"] == 0.5
    assert gone["owed_at"] == 2  # b and c
    strict = find_lost(publishes, delivered, downtimes, ["a", "b", "c"], crashes, strict=True)
    assert {(x.id, x.node) for x in strict.lost} == {(1, "c"), (2, "b"), (2, "c"), (3, "c")}
    assert strict.with_origin == []
    # A crash long after: the origin had its chance to pass it on.
    late = {"a": [2.0 + chaos.ORIGIN_GRACE + 1], "b": [1.0]}
    check = find_lost(publishes, delivered, {}, ["a", "b", "c"], late)
    assert (2, "b") in {(x.id, x.node) for x in check.lost} and check.with_origin == []


def _w(name, value, node, stamp=None):
    return Write(name, value, node, 0.0, stamp)


def test_superseded_target_writes_pass_and_lost_ones_are_flagged():
    writes = [
        _w("lights", "1@a", "a", (1000, 0, "a")),
        _w("lights", "2@b", "b", (1005, 0, "b")),  # the last acknowledged write
        _w("lights", "3@c", "c"),  # its acknowledgement never came
        _w("fan", "4@a", "a", (1001, 0, "a")),
    ]
    assert check_targets(writes, {"lights": "2@b", "fan": "4@a"}) == []
    # A write whose acknowledgement was lost may have won: allowed.
    assert check_targets(writes, {"lights": "3@c", "fan": "4@a"}) == []
    # An older acknowledged write in the end: the newer one was lost.
    (problem,) = check_targets(writes, {"lights": "1@a", "fan": "4@a"})
    assert "lights" in problem and "older acknowledged" in problem and "2@b" in problem
    (problem,) = check_targets(writes, {"lights": "2@b"})
    assert "fan is missing" in problem
    (problem,) = check_targets(writes, {"lights": "2@b", "fan": "something else"})
    assert "none of our writes" in problem
    # Stamps order writes, not their order in the list, nor their values.
    later_first = [_w("x", "b", "b", (2000, 1, "b")), _w("x", "a", "a", (2000, 0, "z"))]
    assert check_targets(later_first, {"x": "b"}) == []
    assert check_targets(later_first, {"x": "a"}) != []


def _state(targets, readings=("a", "b"), devices=("aa:bb",)):
    return {
        "targets": targets,
        "readings": {n: {"temperature": 20 + i, "at": time.time()} for i, n in enumerate(readings)},
        "nodes": {n: {"peer": "x", "at": time.time()} for n in ("a", "b")},
        "online_devices": [{"mac_addr": m, "at": time.time(), "seen_by": "a"} for m in devices],
        "avg_temp": 21.0,
    }


def test_the_checker_flags_a_divergent_state():
    same = {"a": _state({"lights": "on"}), "b": _state({"lights": "on"})}
    same["b"]["readings"]["a"]["temperature"] = 99  # values move; which readings there are must not
    assert compare_states(same) == []
    (diff,) = compare_states({"a": _state({"lights": "on"}), "b": _state({"lights": "off"})})
    assert "target lights differs" in diff and "a: " in diff and "b: " in diff
    (diff,) = compare_states({"a": _state({"lights": "on"}), "b": _state({})})
    assert "(absent)" in diff
    (diff,) = compare_states({"a": _state({}), "b": _state({}, readings=("a",))})
    assert diff.startswith("readings differ")
    (diff,) = compare_states({"a": _state({}), "b": _state({}, devices=())})
    assert diff.startswith("online_devices differ")
    assert compare_states({"a": _state({}), "b": None}) == ["b did not answer"]


def test_actor_rows_and_restarts_by_role_walk_every_row():
    tree = {
        "id": "node_sup",
        "pid": 10,
        "children": [
            {"id": "gossip", "pid": 11, "restarts": 2, "children": []},
            {
                "id": "peer_workers",
                "pid": 12,
                "restarts": 1,
                "children": [
                    {"id": "peer_worker-3", "pid": 13, "restarts": 0, "children": []},
                    {"id": "peer_worker-4", "pid": None, "restarts": 0, "children": []},
                ],
            },
        ],
    }
    rows = actor_rows(tree)
    assert [r["pid"] for r in rows] == [10, 11, 12, 13]
    assert rows[0]["id"] == "node_sup"
    assert restarts_by_role([tree, tree]) == {"gossip": 4, "peer_workers": 2}
    assert chaos.role_of("client_worker-12") == "client_worker"


def test_a_report_says_pass_or_why_not():
    report = chaos.Report("cluster", ["a", "b"], 1, 10.0, {"loss": 0, "delay_ms": 0})
    report.state_identical = True
    assert report.ok and "PASS" in report.text()
    report.failures = ["1 event deliveries lost"]
    data = report.to_dict()
    assert data["ok"] is False and data["reason"] == "1 event deliveries lost"
    assert data["partition_method"] == "block-hook"
    json.dumps(data)


def test_bad_options_get_one_line_and_status_2():
    bad = subprocess.run(
        CHAOS + ["--attach", "127.0.0.1:1", "--kill-nodes", "0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "--kill-nodes" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    for args in (["--nodes", "0"], ["--loss", "2"], ["--nodes", "3", "--attach", "x:1"]):
        bad = subprocess.run(CHAOS + args, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert bad.returncode == 2, args
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


# --- where network faults go: namespaces or hooks ---------------------------------------------


def test_detection_says_in_one_line_why_it_falls_back_to_the_hooks(monkeypatch):
    monkeypatch.setattr(chaos.os, "geteuid", lambda: 1000)
    support = chaos.detect_netns()
    assert not support.namespaces and support.reason == "not root (network namespaces need root)"
    plan = choose_net("auto", False, True, 0.05, 0, detect=chaos.detect_netns)
    assert plan.mode == "hooks" and plan.why == support.reason and "\n" not in plan.why

    monkeypatch.setattr(chaos.os, "geteuid", lambda: 0)
    real_which = chaos.shutil.which
    monkeypatch.setattr(chaos.shutil, "which", lambda t: None if t == "tc" else real_which(t))
    support = chaos.detect_netns()  # gives up before making any namespace
    assert not support.namespaces and support.reason == "`tc` is not on PATH (iproute2)"


def test_the_kernel_gets_the_faults_only_when_it_can_do_all_of_them():
    def probe(**kwargs):
        def detect():
            probed.append(1)
            return NetSupport(**kwargs)

        return detect

    probed: list = []
    # Nothing to probe: attach, --net hooks, or no network fault asked.
    assert choose_net("auto", True, True, 0.1, 0, detect=probe(namespaces=True)).mode == "hooks"
    assert choose_net("hooks", False, True, 0.1, 0, detect=probe(namespaces=True)).mode == "hooks"
    assert choose_net("auto", False, False, 0, 0, detect=probe(namespaces=True)).mode == "hooks"
    assert probed == []
    full = {"namespaces": True, "netem": True, "sock_kill": True}
    plan = choose_net("auto", False, True, 0.1, 20, detect=probe(**full))
    assert (plan.mode, plan.loss_by) == ("netns", "netem")
    # No netem: loss by nftables, but no kernel delay (then every fault goes by the hooks).
    nft = {"namespaces": True, "nft_loss": True, "sock_kill": True, "reason": "no sch_netem"}
    plan = choose_net("auto", False, True, 0.1, 0, detect=probe(**nft))
    assert (plan.mode, plan.loss_by) == ("netns", "nftables")
    plan = choose_net("auto", False, False, 0, 20, detect=probe(**nft))
    assert plan.mode == "hooks" and plan.why == "--delay needs sch_netem: no sch_netem"
    # A kernel that cannot close live sockets cannot cut links: partitions by the hooks.
    plan = choose_net("auto", False, True, 0, 0, detect=probe(namespaces=True, reason="no ss -K"))
    assert plan.mode == "hooks" and "ss -K" in plan.why


def test_net_netns_where_the_machine_does_not_allow_it_is_a_usage_error(monkeypatch, capsys):
    from satellite.cli import build_parser

    monkeypatch.setattr(chaos, "detect_netns", lambda: NetSupport(False, reason="not root"))
    args = build_parser().parse_args(["chaos", "--nodes", "3", "--partition", "--net", "netns"])
    assert chaos.run(args) == 2
    err = capsys.readouterr().err
    assert err.strip() == "satellite: --net netns: not on this machine: not root"
    args = build_parser().parse_args(["chaos", "--attach", "127.0.0.1:1", "--net", "netns"])
    assert chaos.run(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--attach" in line


def ours_in_the_kernel(suffix: str) -> list[str]:
    """This run's namespaces and interfaces still on the machine."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return [line for line in (netns + links).splitlines() if suffix in line]


# --- real drills ---------------------------------------------------------------------------------


def ours(prefix: str) -> list[int]:
    pattern = re.compile(r"satellite\[" + re.escape(prefix) + r"\d+\]")
    return [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if pattern.search(" ".join(p.info["cmdline"] or []))
    ]


def drill(tmp_path: Path, prefix: str, *args: object) -> dict:
    """Run a drill; it must pass, leave nothing behind, and write its JSON report."""
    report = tmp_path / "r.json"
    cmd = CHAOS + ["--prefix", prefix, "--report", str(report)] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "result             PASS" in proc.stdout
    data = json.loads(report.read_text())
    assert data["ok"] and data["lost"] == [] and data["events"]["lost"] == 0
    assert data["state_identical"] and data["leftovers"] == [] and not ours(prefix)
    assert data["events"]["acknowledged"] > 0
    assert data["events"]["delivered"] == data["events"]["expected"] > 0
    assert data["targets"]["acknowledged"] > 0 and data["targets"]["problems"] == []
    return data


def test_a_drill_killing_actors_loses_nothing(tmp_path):
    data = drill(
        tmp_path, "chaosa", "--nodes", 4, "--duration", 20, "--kill-actors", 0.3, "--seed", 1
    )
    assert data["faults"]["kill_actor"] > 0
    assert sum(data["actor_kills_by_role"].values()) == data["faults"]["kill_actor"]
    assert data["converge_s"] is not None


def test_a_drill_killing_nodes_and_cutting_the_office_loses_nothing(tmp_path):
    planned = make_schedule(2, 4, 25, kill_nodes=0.1, partition=True)
    assert planned.count("kill_node") and planned.count("partition")
    data = drill(
        tmp_path,
        "chaosb",
        *("--nodes", 4, "--duration", 25, "--kill-nodes", 0.1, "--partition", "--seed", 2),
        *("--net", "hooks"),  # the fallback (the namespaces have a drill of their own)
    )
    assert data["faults"]["kill_node"] >= 1 and data["faults"]["partition"] >= 1
    assert data["partition_method"] == "block-hook" and data["net_mode"] == "hooks"
    assert any(e["kind"] == "node_up" for e in data["timeline"])


def test_a_drill_with_lossy_slow_links_loses_nothing(tmp_path):
    data = drill(
        tmp_path,
        "chaosc",
        *("--nodes", 4, "--duration", 20, "--loss", 0.1, "--delay", 20, "--seed", 3),
    )
    assert data["options"]["loss"] == 0.1 and data["options"]["delay_ms"] == 20


def test_ctrl_c_stops_every_node_it_started_and_exits_130(tmp_path):
    proc = subprocess.Popen(
        CHAOS + ["--prefix", "chaosd", "--nodes", "3", "--duration", "60", "--kill-actors", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        # Until the fault phase has begun (the seed line), then Ctrl-C.
        for line in proc.stdout:
            if "planned over" in line:
                break
        assert ours("chaosd"), "the drill's nodes are running"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
        assert "interrupted" in proc.stderr.read()
        wait_for(lambda: not ours("chaosd"), 10, "no process of the drill's nodes")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_attached_to_a_running_office_it_kills_actors_and_leaves_it_healed(tmp_path):
    with running_cluster(tmp_path, 3, "chaose") as cluster:
        first = cluster.nodes[0]
        proc = subprocess.run(
            CHAOS
            + ["--attach", f"127.0.0.1:{first.client_port}", "--duration", "15"]
            + ["--kill-actors", "0.3", "--loss", "0.05", "--seed", "4", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        data = json.loads(proc.stdout)
        assert data["mode"] == "attach" and sorted(data["nodes"]) == [
            "chaose0",
            "chaose1",
            "chaose2",
        ]
        assert (
            data["faults"].get("kill_actor", 0) > 0
            and "node_sup" not in data["actor_kills_by_role"]
        )
        assert data["ok"] and data["state_identical"] and data["lost"] == []
        # It left the office whole, and with no fault injected any more.
        for node in cluster.nodes:
            with node.antenna() as antenna:
                antenna.publish("after", 1)

        def delivered_after(node) -> bool:
            with node.antenna() as antenna:
                log = antenna.delivered(0)
                while log["events"] and log["events"][-1][0] < log["last"]:
                    log = antenna.delivered(log["events"][-1][0])  # in pages
                return sum(1 for e in log["events"] if e[1] == "after") == 3

        wait_for(
            lambda: all(delivered_after(n) for n in cluster.nodes),
            20,
            "the three events after the drill everywhere",
        )


def test_a_drill_in_network_namespaces_cuts_and_drops_in_the_kernel_and_loses_nothing(tmp_path):
    plan = choose_net("netns", False, True, 0.05, 0, detect=chaos.detect_netns)
    if plan.mode != "netns":
        pytest.skip(f"no network namespaces here: {plan.why}")
    planned = make_schedule(2, 4, 25, partition=True)
    assert planned.count("partition")
    data = drill(
        tmp_path,
        "chaosf",
        *("--nodes", 4, "--duration", 25, "--partition", "--loss", 0.05, "--seed", 2),
        *("--net", "netns"),
    )
    assert data["partition_method"] == "netns" and data["net_mode"] == "netns"
    assert data["loss_method"] in ("netem", "nftables")
    assert data["faults"]["partition"] >= 1
    # The cut closed live links (the overlay was whole before it).
    cuts = [e for e in data["timeline"] if e["kind"] == "partition"]
    assert cuts and all(e["sockets_closed"] > 0 for e in cuts)
    # Every node listened on its namespace's address.
    subnet = ipaddress.ip_network(data["network"]["subnet"])
    peers = data["network"]["peers"].values()
    assert len(peers) == 4 and all(ipaddress.ip_address(p.split(":")[0]) in subnet for p in peers)
    # Nothing of the run is left in the kernel.
    suffix = data["network"]["suffix"]
    assert data["net_leftovers"] == [] and ours_in_the_kernel(suffix) == []


def test_ctrl_c_in_network_namespaces_removes_them_too(tmp_path):
    plan = choose_net("netns", False, True, 0, 0, detect=chaos.detect_netns)
    if plan.mode != "netns":
        pytest.skip(f"no network namespaces here: {plan.why}")
    proc = subprocess.Popen(
        CHAOS + ["--prefix", "chaosg", "--nodes", "3", "--duration", "60", "--partition"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    suffix = None
    try:
        for line in proc.stdout:
            found = re.search(r"suffix ([0-9a-f]{6})", line)
            suffix = found.group(1) if found else suffix
            if "planned over" in line:
                break
        assert suffix and ours_in_the_kernel(suffix), "the drill's namespaces are there"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
        assert "removed its namespaces" in proc.stderr.read()
        wait_for(lambda: not ours("chaosg"), 10, "no process of the drill's nodes")
        assert ours_in_the_kernel(suffix) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
