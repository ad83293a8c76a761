"""The live dashboard (issue 5): the app against a fake antenna, then real nodes and a
real browser (headless Debian Chromium through Playwright)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

import run_node
from actors.base import CRASH_STATUS
from bench.cluster import ROOT, Cluster, wait_for
from satellite.antenna import AntennaError, Data, NodeUnreachable
from satellite.dashboard import metrics as prom
from satellite.dashboard.app import Hub, build_app, overlay
from satellite.dashboard.history import History
from supervisors.tree import node_tree

CHROMIUM = "/usr/bin/chromium"
NOW = int(time.time() * 1000)


def snapshot(temp: float = 21.0, at: int = NOW, lights: str = "off") -> Data:
    """An office of two nodes linked to each other (eagerly), one device online."""
    return Data(
        {
            "targets": {"lights": lights, "temperature": 21.5},
            "readings": {
                "a": {"temperature": temp, "humidity": 40.0, "at": at},
                "b": {"temperature": 19.5, "at": at - 2000},
            },
            "online_devices": [
                {"mac_addr": "aa:bb:cc:dd:ee:ff", "ip_addr": "10.0.0.7", "seen_by": "a", "at": at}
            ],
            "avg_temp": (temp + 19.5) / 2,
            "members": [
                {"node": "a", "addr": "127.0.0.1:7401", "status": "self"},
                {"node": "b", "addr": "127.0.0.1:7402", "status": "alive"},
            ],
            "nodes": {
                "a": {
                    "peer": "127.0.0.1:7401",
                    "client": "127.0.0.1:8001",
                    "http": "127.0.0.1:9001",
                    "active_view": ["127.0.0.1:7402"],
                    "eager_peers": ["127.0.0.1:7402"],
                    "at": at,
                },
                "b": {
                    "peer": "127.0.0.1:7402",
                    "client": "127.0.0.1:8002",
                    "http": None,
                    "active_view": ["127.0.0.1:7401"],
                    "eager_peers": [],
                    "at": at,
                },
            },
        }
    )


class FakeAntenna:
    """What the app needs of an Antenna: state, set, members, metrics."""

    def __init__(self) -> None:
        self.data = snapshot()
        self.down: str | None = None  # when set, every call fails as an unreachable node
        self.sets: list[tuple[str, Any]] = []

    def _check(self) -> None:
        if self.down:
            raise NodeUnreachable(self.down)

    def state(self) -> Data:
        self._check()
        return self.data

    def members(self) -> list:
        self._check()
        return self.data["members"]

    def set(self, name: str, value: Any) -> None:
        self._check()
        if name == "refused":
            raise AntennaError("the node refused it")
        self.sets.append((name, value))
        self.data["targets"][name] = value

    def metrics(self) -> dict:
        self._check()
        return {
            "node": "a",
            "counters": {"plumtree_broadcasts": 12, "state_merges": 3, "sensor_readings": 40},
            "gauges": {"hyparview_active_view_size": 1, "plumtree_eager_peers": 1.0},
            "restarts": {"membership": 0, "sensor": 2},
        }


def run(
    scenario: Callable[[TestClient, FakeAntenna, Hub], Awaitable[Any]], publish: bool = True
) -> Any:
    antenna, hub = FakeAntenna(), Hub()
    hub.node = "a"
    if publish:
        hub.publish(antenna.data)

    async def main() -> Any:
        async with TestClient(TestServer(build_app(antenna, hub))) as client:
            return await scenario(client, antenna, hub)

    return asyncio.run(main())


# --- the app, against a fake antenna -------------------------------------------------------


def test_the_page_is_painted_by_the_server() -> None:
    async def scenario(client: TestClient, antenna: FakeAntenna, hub: Hub) -> str:
        reply = await client.get("/")
        assert reply.status == 200
        return await reply.text()

    html = run(scenario, publish=False)  # nothing published yet: the page asks the node
    for text in ("a", "b", "21.0", "aa:bb:cc:dd:ee:ff", "10.0.0.7", "Lights: off", "self"):
        assert text in html
    assert 'class="eager"' in html  # the a-b link, eager on a's side
    assert "/static/dashboard.js" in html
    data = html.split('<script id="snapshot" type="application/json">')[1].split("</script>")[0]
    assert json.loads(data)["targets"]["lights"] == "off"


def test_static_files_are_served() -> None:
    async def scenario(client: TestClient, antenna: FakeAntenna, hub: Hub) -> None:
        for path in ("/static/dashboard.js", "/static/dashboard.css"):
            reply = await client.get(path)
            assert reply.status == 200, path

    run(scenario)


def test_api_state_is_the_snapshot_with_history_and_overlay() -> None:
    async def scenario(client: TestClient, antenna: FakeAntenna, hub: Hub) -> dict:
        antenna.data = snapshot(temp=22.0, at=NOW + 1000)
        reply = await client.get("/api/state")
        assert reply.status == 200
        return await reply.json()

    state = run(scenario)
    assert state["node"] == "a"
    assert state["readings"]["a"]["temperature"] == 22.0  # fresh from the node
    assert state["history"]["a"] == [[NOW, 21.0], [NOW + 1000, 22.0]]
    assert [m["node"] for m in state["members"]] == ["a", "b"]
    assert state["overlay"]["links"][0]["eager"] is True


def test_api_state_answers_503_when_the_node_does_not() -> None:
    async def scenario(client: TestClient, antenna: FakeAntenna, hub: Hub) -> None:
        antenna.down = "node 127.0.0.1:8001 unreachable"
        reply = await client.get("/api/state")
        assert reply.status == 503
        assert "unreachable" in (await reply.json())["error"]

    run(scenario)


def test_post_target_sets_it_and_refuses_bad_bodies() -> None:
    async def scenario(client: TestClient, antenna: FakeAntenna, hub: Hub) -> None:
        reply = await client.post("/api/targets/lights", json={"value": "on"})
        assert reply.status == 200
        assert await reply.json() == {"name": "lights", "value": "on"}
        assert antenna.sets == [("lights", "on")]
        as_json = {"Content-Type": "application/json"}
        for body in (b"not json", b"[1, 2]", b'{"val": 3}', b"\xff"):
            reply = await client.post("/api/targets/lights", data=body, headers=as_json)
            assert reply.status == 400, body
            assert "error" in await reply.json()
        # What a form or a no-cors fetch from another site can send: refused.
        as_text = {"Content-Type": "text/plain"}
        reply = await client.post("/api/targets/lights", data=b'{"value": "on"}', headers=as_text)
        assert reply.status == 400
        reply = await client.post("/api/targets/refused", json={"value": 1})
        assert reply.status == 400
        antenna.down = "gone"
        reply = await client.post("/api/targets/lights", json={"value": "off"})
        assert reply.status == 503
        assert antenna.sets == [("lights", "on")]

    run(scenario)


def test_healthz_is_ok_only_when_attached_and_answered() -> None:
    async def scenario(client: TestClient, antenna: FakeAntenna, hub: Hub) -> None:
        reply = await client.get("/healthz")
        assert (reply.status, await reply.text()) == (200, "ok\n")
        antenna.down = "node 127.0.0.1:8001 closed the connection"
        reply = await client.get("/healthz")
        assert reply.status == 503
        assert "closed the connection" in await reply.text()
        antenna.down, hub.down = None, "connecting to the node's client port"
        reply = await client.get("/healthz")
        assert (reply.status, await reply.text()) == (503, "connecting to the node's client port\n")
        for path in ("/api/state", "/metrics"):  # not attached: the antenna is not asked
            assert (await client.get(path)).status == 503
        reply = await client.post("/api/targets/lights", json={"value": "on"})
        assert reply.status == 503 and antenna.sets == []

    run(scenario)


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_parse_with_prometheus_names_and_types() -> None:
    async def scenario(client: TestClient, antenna: FakeAntenna, hub: Hub) -> tuple:
        reply = await client.get("/metrics")
        return reply.status, reply.headers["Content-Type"], await reply.text()

    status, content_type, text = run(scenario)
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    found = families(text)
    # prometheus_client names a counter family without its _total suffix.
    assert found["satellite_plumtree_broadcasts"].type == "counter"
    assert found["satellite_plumtree_broadcasts"].samples[0].name.endswith("_total")
    assert found["satellite_sensor_readings"].samples[0].value == 40
    assert found["satellite_hyparview_active_view_size"].type == "gauge"
    members = {s.labels["status"]: s.value for s in found["satellite_members"].samples}
    assert members == {"self": 1, "alive": 1, "known": 0}
    restarts = found["satellite_supervisor_restarts"]
    assert restarts.type == "counter"
    assert {s.labels["role"]: s.value for s in restarts.samples} == {"membership": 0, "sensor": 2}
    assert "# HELP satellite_plumtree_broadcasts_total " in text


def test_metrics_render_makes_any_name_valid() -> None:
    text = prom.render(
        {
            "counters": {"weird-Name.x": 1, "already_total": 2, "bad": "n/a"},
            "gauges": {"ratio": float("nan"), "big": float("inf")},
            "restarts": {'with "quote"': 1, "peer_worker-1": 0, "peer_worker-12": 1},
        },
        [{"node": "z", "status": "known"}],
    )
    found = families(text)
    assert "satellite_weird_name_x" in found
    assert "satellite_already" in found  # no _total_total
    assert "satellite_bad" not in found  # not a number: left out
    assert found["satellite_big"].samples[0].value == float("inf")
    restarts = {s.labels["role"]: s.value for s in found["satellite_supervisor_restarts"].samples}
    assert restarts == {'with "quote"': 1, "peer_worker": 1}  # one series per kind of child


def test_events_stream_a_snapshot_when_the_antenna_brings_one() -> None:
    async def scenario(client: TestClient, antenna: FakeAntenna, hub: Hub) -> dict:
        reply = await client.get("/events")
        assert reply.headers["Content-Type"] == "text/event-stream"

        async def next_data() -> dict:
            while True:
                line = await asyncio.wait_for(reply.content.readline(), 5)
                if line.startswith(b"data: "):
                    return json.loads(line[len(b"data: ") :])

        first = await next_data()  # what the hub had when the browser came
        assert first["readings"]["a"]["temperature"] == 21.0
        # The antenna calls back from its own thread.
        thread = threading.Thread(target=hub.publish, args=(snapshot(23.5, NOW + 500, "on"),))
        thread.start()
        second = await next_data()
        thread.join()
        reply.close()
        return second

    second = run(scenario)
    assert second["readings"]["a"]["temperature"] == 23.5
    assert second["targets"]["lights"] == "on"
    assert second["history"]["a"] == [[NOW, 21.0], [NOW + 500, 23.5]]


# --- the pure helpers ------------------------------------------------------------------------


def test_history_dedupes_by_at_and_keeps_the_last_hour() -> None:
    history = History(window_ms=60_000, points=6)
    history.add({"a": {"temperature": 20.0, "at": 1_000}}, now_ms=1_000)
    history.add({"a": {"temperature": 20.0, "at": 1_000}}, now_ms=2_000)  # repeated
    history.add({"a": {"temperature": 21.0, "at": 3_000}, "b": {"at": 3_000}}, now_ms=3_000)
    assert history.series(3_000) == {"a": [[1_000, 20.0], [3_000, 21.0]]}
    history.add({"a": {"temperature": 22.0, "at": 62_000}}, now_ms=62_000)
    assert history.series(62_000) == {"a": [[3_000, 21.0], [62_000, 22.0]]}
    for at in range(62_000, 122_000, 1_000):  # a fast sensor: thinned to one per bucket
        history.add({"a": {"temperature": 20.0, "at": at}}, now_ms=at)
    assert len(history.series(121_000)["a"]) <= 7


def test_overlay_maps_peer_addresses_to_nodes_and_marks_eager_links() -> None:
    data = snapshot()
    data["nodes"]["c"] = {"peer": "127.0.0.1:7403", "active_view": ["127.0.0.1:7401", "x:1"]}
    data["nodes"]["a"]["active_view"].append("127.0.0.1:7403")
    picture = overlay(data["nodes"], data["members"])
    assert [(n["id"], n["status"]) for n in picture["nodes"]] == [
        ("a", "self"),
        ("b", "alive"),
        ("c", "absent"),
    ]
    links = {(link["a"], link["b"]): link["eager"] for link in picture["links"]}
    assert links == {("a", "b"): True, ("a", "c"): False}  # the unknown peer x:1 is left out
    assert picture["nodes"][0]["x"] == 100.0 and picture["nodes"][0]["y"] == 38.0  # the top


# --- configuration ---------------------------------------------------------------------------


LOCAL = ["--bind", "127.0.0.1:7400"]  # protected mode: no key, so loopback only


def test_http_flag_and_config_setting(tmp_path) -> None:
    assert run_node.load_config([*LOCAL, "--node-id", "x"])["http"] is None
    assert run_node.load_config([*LOCAL, "--http", "9100"])["http"] == "127.0.0.1:9100"
    config = run_node.load_config([*LOCAL, "--http", "0.0.0.0:9100", "--insecure"])
    assert config["http"] == "0.0.0.0:9100"
    with pytest.raises(run_node.ConfigError, match="--http: refusing"):
        run_node.load_config([*LOCAL, "--http", "0.0.0.0:9100"])
    toml = tmp_path / "node.toml"
    toml.write_text('http = "127.0.0.1:9200"\nbind = "127.0.0.1:7400"\n')
    assert run_node.load_config(["--config", str(toml)])["http"] == "127.0.0.1:9200"
    for bad in ("127.0.0.1:nope", "127.0.0.1:70000", "127.0.0.1:8000"):  # 8000: the client port
        with pytest.raises(run_node.ConfigError, match="--http"):
            run_node.load_config([*LOCAL, "--http", bad])


def test_the_dashboard_is_the_last_child_and_only_with_http() -> None:
    config = run_node.load_config([*LOCAL, "--node-id", "x", "--http", "9100"])
    config["incarnation"] = 1
    children = node_tree(config)["args"]["children"]
    assert children[-1]["id"] == "dashboard"
    assert children[-1]["args"]["http"] == "127.0.0.1:9100"
    assert children[-1]["args"]["client"] == config["client"]
    config["http"] = None
    assert "dashboard" not in [c["id"] for c in node_tree(config)["args"]["children"]]


# --- the actor's threads, without a node ------------------------------------------------------


def test_without_a_node_the_dashboard_serves_and_says_why_it_is_not_healthy() -> None:
    from actors.dashboard import Dashboard

    http, client = free_port(), free_port()  # nothing listens on the client port
    dashboard = Dashboard()
    dashboard.init({"http": f"127.0.0.1:{http}", "client": f"127.0.0.1:{client}"})
    try:

        def unhealthy_with_a_reason() -> tuple[int, str] | None:
            status, text = get(f"http://127.0.0.1:{http}/healthz")
            return (status, text) if "not attached" in text else None

        status, text = wait_for(unhealthy_with_a_reason, 10, "the antenna's first failed try")
        assert status == 503 and f"127.0.0.1:{client}" in text
        assert get(f"http://127.0.0.1:{http}/")[0] == 200  # a page that says so, not a 500
    finally:
        dashboard.stopping()
    assert not dashboard.server.is_alive()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=2)


def test_a_taken_port_is_one_log_line_and_an_exit_for_the_supervisor() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        http = f"127.0.0.1:{taken.getsockname()[1]}"
        code = (
            "from actors.dashboard import Dashboard\n"
            f"Dashboard().init({{'http': '{http}', 'client': '127.0.0.1:1'}})\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
    assert proc.returncode == CRASH_STATUS
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on http://{http}" in lines[0], proc.stderr


# --- real nodes, a real browser ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium): the browser test needs it",
)
def test_three_nodes_in_a_real_browser(tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    cluster = Cluster(tmp_path, 3, prefix="dash")
    http = f"127.0.0.1:{free_port()}"
    for i, node in enumerate(cluster.nodes):
        node.extra = [
            "--sensor",
            f"sim:{20 + i}",
            "--read-interval",
            "0.5",
            "--network-scan",
            "none",
        ]
    cluster.nodes[0].extra += ["--http", http]
    url = f"http://{http}"
    try:
        cluster.start()
        wait_for(lambda: get(f"{url}/healthz") == (200, "ok\n"), 20, "the dashboard to be healthy")
        # Every node's reading, and so every node's entry, has reached the first node.
        wait_for(
            lambda: len(json.loads(get(f"{url}/api/state")[1])["readings"]) == 3,
            15,
            "three nodes' readings on the dashboard",
        )
        status, text = get(f"{url}/metrics")
        assert status == 200
        found = families(text)
        assert found["satellite_members"].type == "gauge"
        assert "satellite_sensor_readings" in found

        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            try:
                page = browser.new_page()
                page.goto(url)
                page.wait_for_function("document.querySelectorAll('#members li').length === 3")
                members = page.locator("#members li").all_inner_texts()
                assert [m.split()[0] for m in members] == ["dash0", "dash1", "dash2"]
                assert "self" in members[0]
                for i in range(3):
                    row = page.locator(f'#readings tr[data-node="dash{i}"] td.temp')
                    assert row.inner_text() == f"{20 + i}.0"

                # A new reading shows without a reload: the row's ``at`` moves on, and a
                # marker set on this very document is still there.
                page.evaluate("window.sameDocument = true")
                row = page.locator('#readings tr[data-node="dash1"]')
                first_at = row.get_attribute("data-at")
                page.wait_for_function(
                    "at => document.querySelector('#readings tr[data-node=\"dash1\"]')"
                    ".dataset.at !== at",
                    arg=first_at,
                    timeout=10_000,
                )
                assert page.evaluate("window.sameDocument") is True
                assert page.locator("#live").inner_text() == "live"
                # Every node's line in the chart; in the overlay, the links of a connected
                # overlay of three (each node writes its entry shortly after its links change).
                page.wait_for_function(
                    "document.querySelectorAll('#chart polyline.series').length === 3"
                    " && document.querySelectorAll('#overlay line').length >= 2",
                    timeout=15_000,
                )

                # The lights control switches the target on every node.
                before = page.locator("#lights").get_attribute("data-value")
                want = "off" if before == "on" else "on"
                page.locator("#lights").click()
                for node in cluster.nodes:

                    def lights(node: Any = node) -> bool:
                        with node.antenna() as antenna:
                            return antenna.state()["targets"].get("lights") == want

                    wait_for(lights, 10, f"lights {want} on {node.name}")
                page.wait_for_function(
                    "want => document.querySelector('#lights').dataset.value === want",
                    arg=want,
                    timeout=10_000,
                )
            finally:
                browser.close()
    finally:
        cluster.stop()
        assert not cluster.leftovers(), "processes left behind"
