"""The CI-sized simulator run: 200 nodes of the real protocol objects, every scenario,
held to the bounds of issue 2 (the full-size figures are in the README)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bench import simulate, stats
from protocols.events import KnownPeers

ROOT = Path(__file__).resolve().parent.parent
N = 200


def sim(scenario: str, *extra: str, seed: int = 1) -> dict:
    argv = ["--nodes", str(N), "--scenario", scenario, "--seed", str(seed), *extra]
    return simulate.run(simulate.parse_args(argv))


@pytest.fixture(scope="module")
def stable() -> dict:
    return sim("stable", "--broadcasts", "40")


def test_stable_delivers_everything_with_a_tree(stable: dict) -> None:
    assert stable["missed"] == 0
    assert stable["reliability"] == 1.0
    assert stable["rmr"] < 0.1
    assert stable["ldh"] <= 12
    assert stable["connected"] and stable["symmetric"]
    assert stable["empty_active_views"] == 0


def test_flood_baseline_pays_what_plumtree_saves(stable: dict) -> None:
    flood = sim("stable", "--broadcasts", "40", "--broadcast", "flood")
    assert flood["missed"] == 0
    # Flooding over views of 5 sends each payload over every link: RMR near 3.
    assert flood["rmr"] > 2.0
    assert stable["rmr"] < flood["rmr"] / 20
    assert flood["control_per_payload"] == 0


def test_multi_sender_delivers_everything() -> None:
    result = sim("multi-sender", "--broadcasts", "40", seed=2)
    assert result["missed"] == 0
    assert result["rmr"] < 0.1
    assert result["connected"] and result["symmetric"]


def test_mass_crash_heals_within_five_rounds() -> None:
    result = sim("mass-crash", "--fail", "0.8", "--broadcasts", "15")
    assert result["live_nodes"] == N - int(N * 0.8)
    # The first broadcast after the crash reaches most survivors: 0.925 with this seed;
    # 0.6 when a NEIGHBOR datagram to a crashed node is left to its timeout (2 s) instead
    # of bouncing (0.65 with the timeout at 500 ms; bench/simulate.py, run_until).
    assert result["reliability_first"] >= 0.8
    assert result["heal_rounds"] is not None and result["heal_rounds"] <= 5
    assert result["missed_after_heal"] == 0
    assert result["connected"] and result["symmetric"]
    assert result["empty_active_views"] == 0


def test_churn_leaves_a_whole_symmetric_overlay() -> None:
    result = sim("churn", "--fail", "0.02", "--broadcasts", "30")
    assert result["during"]["broadcasts"] == 30
    assert result["connected"] and result["symmetric"]
    assert result["empty_active_views"] == 0
    assert result["after"]["missed"] == 0


def test_partition_heals_into_one_overlay() -> None:
    result = sim("partition", "--broadcasts", "30")
    # While cut, the overlay really is in pieces; afterwards it is one again.
    assert result["overlay_during"]["connected"] is False
    assert result["connected"] and result["symmetric"]
    assert result["empty_active_views"] == 0
    assert result["after"]["missed"] == 0


def test_loss_is_repaired_by_the_tree() -> None:
    # GRAFTs repair most losses within milliseconds; when a GRAFT or its answer is lost
    # too, the next anti-entropy round (10 s) does: a round here is longer than that.
    result = sim("stable", "--loss", "0.05", "--broadcasts", "20", "--round", "12")
    assert result["missed"] == 0
    assert result["control_per_payload"] > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_heavy_loss_is_repaired_before_the_payloads_expire(seed: int) -> None:
    # One lost message in five, broadcasts 0.2 s apart: the repairs left to anti-entropy
    # must all happen within payload_ttl (30 s, three rounds), or the event is lost for
    # good. Announcing to one random neighbour a round left 11 to 60 such pairs here.
    argv = ["--nodes", "50", "--loss", "0.2", "--broadcasts", "100", "--round", "0.2"]
    result = simulate.run(simulate.parse_args([*argv, "--quiesce", "40", "--seed", str(seed)]))
    assert result["missed"] > 0  # the rounds are short: repairs are left to do
    assert result["missed_after_quiesce"] == 0


def test_cpu_time_queues_events_on_the_cores_the_office_shares() -> None:
    # One CPU for 30 nodes, 5 ms an event: the 29 deliveries of a broadcast each wait
    # for the one before (on their own cores they overlap, and only latency adds up).
    argv = ["--nodes", "30", "--scenario", "load", "--broadcasts", "5", "--rate", "1"]
    one = simulate.run(simulate.parse_args([*argv, "--cpu", "0.005", "--cores", "1"]))
    own = simulate.run(simulate.parse_args([*argv, "--cpu", "0.005"]))
    free = simulate.run(simulate.parse_args(argv))
    assert one["missed"] == own["missed"] == free["missed"] == 0
    assert one["time_to_all_p50_ms"] >= 29 * 5
    assert free["time_to_all_p50_ms"] < own["time_to_all_p50_ms"] < 29 * 5


def test_payloads_that_crossed_a_prune_no_longer_cut_a_loaded_tree() -> None:
    # 30 nodes on two CPUs at 20 broadcasts a second, near what they can carry: several
    # payloads are on their way at once, and PRUNEs cross them. By the paper's rules the
    # tree is cut again and again and its subtrees get every payload by IHAVE and GRAFT.
    argv = ["--nodes", "30", "--scenario", "load", "--broadcasts", "200", "--seed", "3"]
    argv += ["--cpu", "0.0012", "--cores", "2"]
    paper = simulate.run(simulate.parse_args([*argv, "--paper-prunes"]))
    ours = simulate.run(simulate.parse_args(argv))
    assert paper["grafts_per_broadcast"] > 3 and paper["rmr"] > 0.3  # the loop
    assert ours["grafts_per_broadcast"] < paper["grafts_per_broadcast"] / 10
    assert ours["prunes_per_broadcast"] < paper["prunes_per_broadcast"] / 10
    assert ours["rmr"] < paper["rmr"] / 10
    assert ours["reliability"] > paper["reliability"]


def test_same_seed_same_run_other_seed_other_run() -> None:
    def strip(r: dict) -> dict:
        return {k: v for k, v in r.items() if k != "wall_seconds"}

    a = sim("churn", "--broadcasts", "10", seed=7)
    b = sim("churn", "--broadcasts", "10", seed=7)
    c = sim("churn", "--broadcasts", "10", seed=8)
    assert strip(a) == strip(b)
    assert a["events"] != c["events"]


def test_every_row_of_the_readme_table_is_a_valid_command() -> None:
    from bench import table

    for nodes, scenario, broadcast, extra in table.ROWS + table.BIG:
        argv = ["--nodes", str(nodes), "--scenario", scenario, "--broadcast", broadcast, *extra]
        simulate.parse_args(argv)  # exits 2 on a bad one


def test_command_line_prints_one_json_object() -> None:
    cmd = [sys.executable, "bench/simulate.py", "--nodes", "50", "--scenario", "stable"]
    proc = subprocess.run(
        [*cmd, "--broadcasts", "3", "--json"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("reliability", "missed", "rmr", "ldh", "control_per_payload", "connected"):
        assert key in result


@pytest.mark.parametrize(
    "args",
    [
        ["--nodes", "1"],
        ["--scenario", "meteor"],
        ["--loss", "1.5"],
        ["--nodes", "many"],
        ["--cpu", "-1"],
        ["--rate", "0"],
    ],
)
def test_bad_arguments_exit_2_without_traceback(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "bench/simulate.py", *args], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("simulate.py: error:")


def test_time_to_all_reads_percentiles_as_the_benchmarks_do() -> None:
    times = [i / 1000 for i in range(200, 0, -1)]  # 1..200 ms, unsorted
    got = simulate._time_to_all(times)
    assert got["time_to_all_p50_ms"] == round(1000 * stats.percentile(times, 0.5), 2) == 101
    assert got["time_to_all_p99_ms"] == round(1000 * stats.percentile(times, 0.99), 2) == 198
    assert simulate._time_to_all([]) == {}


def joined_through_node_0(
    seed: int, n: int, rng: random.Random, spacing: float, settle: float, known: bool
) -> tuple[simulate.Simulation, dict]:
    """An office of ``n`` nodes that joined through node 0 (as an office configures one
    seed), ``spacing`` seconds apart at most, then ``settle`` seconds alone; with
    ``known``, each node then has the others from its State (which tells its
    Membership within a minute: actors/state.py). Also each node's others."""
    office = simulate.Simulation(n, seed=seed)
    office.start(0, None)
    for node in range(1, n):
        office.run_until(office.now + spacing * rng.random())
        office.start(node, 0)
    office.run_until(office.now + settle)
    others = {node: tuple(m for m in range(n) if m != node) for node in range(n)}
    if known:
        for node in range(n):
            office.apply(node, office.stacks[node].handle(office.now, KnownPeers(others[node])))
    return office, others


def whole_again(office: simulate.Simulation, limit: float, nobody_alone: bool) -> float | None:
    """Simulated seconds until the overlay is whole and symmetric (and, with
    ``nobody_alone``, no node is without a link); None if not within ``limit``."""
    start = office.now
    while office.now - start < limit:
        office.run_until(office.now + 0.25)
        overlay = office.overlay()
        if overlay["connected"] and overlay["symmetric"]:
            if not (nobody_alone and overlay["empty_active_views"]):
                return office.now - start
    return None


def small_office_heal_time(seed: int, known: bool = True) -> float | None:
    """Simulated seconds until a small office (2-6 nodes, all joined through node 0) is
    one whole, symmetric overlay again after six random faults a few seconds apart: a
    node crashes (never the last two), a crashed one restarts (with the members its
    stored state lists, when ``known``), or a node's connections restart. None if not
    within two minutes."""
    rng = random.Random(seed)
    n = 2 + seed % 5
    office, others = joined_through_node_0(seed, n, rng, 1.0, 20, known)
    for _ in range(6):
        live = office.live()
        down = [m for m in range(n) if m not in live]
        fault = rng.choice(["crash", "restart", "links", "none"])
        if fault == "crash" and len(live) > 2:
            office.crash(rng.choice(live))
        elif fault == "restart" and down:
            node = rng.choice(down)
            office.start(node, 0 if node != 0 else None, known=others[node] if known else ())
        elif fault == "links":
            office.restart_links(rng.choice(live))
        office.run_until(office.now + rng.choice([0.05, 0.3, 1, 3, 12]))
    return whole_again(office, 120, nobody_alone=False)


def test_a_small_office_is_whole_again_within_seconds_of_any_faults() -> None:
    # Of seeds 0-999 (2026-12-05): 23 took over 5 s, 6 over 15 s, one 79 s, when a node
    # left alone asked its lost peers one per reconnect tick (10 s), at random, and a
    # restarted node whose seed was down knew nobody else. Asking the lost peers at once
    # left 7 over 5 s (27.5 s at most); with the members the state lists, none (2.75 s
    # at most). protocols/hyparview.py: _ask_lost_peer, KnownPeers.
    slow = {}
    for seed in range(300):
        took = small_office_heal_time(seed)
        if took is None or took > 5.0:
            slow[seed] = took
    assert not slow, f"seeds that took longer than 5 s (None: never): {slow}"


def restarted_while_the_seed_is_down(seed: int, known: bool = True) -> float | None:
    """A 50-node office (all joined through node 0) loses node 0 and ten others; the ten
    restart 5 s later, their seed still down. Simulated seconds until the overlay is whole
    and symmetric with no node alone (None: not within five minutes)."""
    rng = random.Random(seed)
    n = 50
    office, others = joined_through_node_0(seed, n, rng, 0.2, 30, known)
    office.crash(0)
    down = rng.sample(range(1, n), 10)
    for node in down:
        office.crash(node)
    office.run_until(office.now + 5)
    for node in down:
        office.start(node, 0, known=others[node] if known else ())
    return whole_again(office, 300, nobody_alone=True)


def test_nodes_restarted_while_the_seed_is_down_are_back_at_once_in_a_bigger_office() -> None:
    # Seeds 0-19 (2026-12-05): without the members from the state, 2.25-32.25 s (the
    # others' reconnect ticks found them); with them, at most 0.5 s.
    took = {seed: restarted_while_the_seed_is_down(seed) for seed in range(10)}
    assert all(t is not None and t <= 2.0 for t in took.values()), took
