"""The dashboard's aiohttp application, built from any antenna-like object.

    GET  /                     the page: first paint rendered here, then live by /events
    GET  /events               server-sent events: one ``data:`` JSON snapshot per change
    GET  /api/state            the current snapshot as JSON
    POST /api/targets/<name>   ``{"value": ...}``: set a target; answers once it is durable
    GET  /healthz              200 ``ok``, or 503 and the reason
    GET  /metrics              Prometheus text format

The antenna's calls block (a socket round trip to the node): handlers run them in
threads, with a deadline, and not at all while ``Hub.down`` says the antenna is not
attached yet (its own thread is the one that connects). Snapshots come from the
antenna's thread through ``Hub.publish``, which hands them to the server's loop."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from satellite.antenna import AntennaError, NodeUnreachable
from satellite.dashboard import metrics as prom
from satellite.dashboard.history import History

HERE = Path(__file__).resolve().parent
CALL_TIMEOUT = 5.0  # seconds for one request to the node
HEALTH_TIMEOUT = 2.0
KEEPALIVE = 15.0  # seconds between SSE comments: finds closed tabs, keeps proxies open
HUB: web.AppKey[Hub] = web.AppKey("hub")
ANTENNA: web.AppKey[Any] = web.AppKey("antenna")
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("templates")


def now_ms() -> int:
    return int(time.time() * 1000)


def overlay(nodes: Mapping[str, Any], members: list[Mapping[str, Any]]) -> dict:
    """The overlay as a picture: every node on a circle, a line per active link (bold
    when either end has it eager in Plumtree). Positions in a 0..200 square."""
    status = {str(m.get("node")): str(m.get("status", "known")) for m in members or []}
    ids = sorted(set(nodes or {}) | set(status))
    by_peer = {
        str(entry.get("peer")): node
        for node, entry in (nodes or {}).items()
        if isinstance(entry, Mapping)
    }
    places, labels = {}, {}
    for i, node in enumerate(ids):
        angle = 2 * math.pi * i / max(1, len(ids)) - math.pi / 2  # first at the top
        cos, sin = math.cos(angle), math.sin(angle)
        places[node] = (round(100 + 62 * cos, 1), round(100 + 62 * sin, 1))
        labels[node] = (round(100 + 84 * cos, 1), round(103 + 84 * sin, 1))  # outside the ring
    links: dict[tuple[str, str], bool] = {}
    for node, entry in sorted((nodes or {}).items()):
        if not isinstance(entry, Mapping) or node not in places:
            continue
        eager = {by_peer.get(str(p)) for p in entry.get("eager_peers") or []}
        for peer in entry.get("active_view") or []:
            other = by_peer.get(str(peer))
            if other is None or other == node or other not in places:
                continue  # a link to a node that has not written its entry yet
            key = (min(node, other), max(node, other))
            links[key] = links.get(key, False) or other in eager
    return {
        "nodes": [
            {
                "id": n,
                "x": places[n][0],
                "y": places[n][1],
                "lx": labels[n][0],
                "ly": labels[n][1],
                "status": status.get(n, "absent"),
            }
            for n in ids
        ],
        "links": [
            {
                "a": a,
                "b": b,
                "x1": places[a][0],
                "y1": places[a][1],
                "x2": places[b][0],
                "y2": places[b][1],
                "eager": eager,
            }
            for (a, b), eager in sorted(links.items())
        ],
    }


def view(data: Mapping[str, Any] | None, history: dict, node: str | None, now: int) -> dict:
    """What the page shows (and what /api/state and /events send): the node's snapshot,
    plus the temperature history, the overlay picture and the dashboard's clock (the
    browser ticks ages against it, whatever its own clock says)."""
    data = dict(data or {})
    members = list(data.get("members") or [])
    nodes = dict(data.get("nodes") or {})
    return {
        "node": node,
        "now": now,
        "targets": dict(data.get("targets") or {}),
        "readings": dict(sorted((data.get("readings") or {}).items())),
        "avg_temp": data.get("avg_temp"),
        "online_devices": list(data.get("online_devices") or []),
        "members": sorted(members, key=lambda m: str(m.get("node"))),
        "nodes": nodes,
        "history": history,
        "overlay": overlay(nodes, members),
    }


class Hub:
    """The latest snapshot and the temperature history, fed from any thread (the
    antenna's), fanned out to the open /events streams on the server's loop."""

    def __init__(self, history: History | None = None) -> None:
        self.history = history or History()
        self.data: Mapping[str, Any] | None = None
        self.node: str | None = None  # the id of the node the antenna is attached to
        self.down: str | None = None  # why the antenna is not attached; None when it is
        self.loop: asyncio.AbstractEventLoop | None = None
        self.streams: set[asyncio.Queue[str | None]] = set()  # touched on the loop only
        self._lock = threading.Lock()

    def publish(self, data: Mapping[str, Any]) -> None:
        """A new office snapshot (the antenna's ``data`` callback)."""
        with self._lock:
            now = now_ms()
            self.history.add(data.get("readings") or {}, now)
            self.data = data
            text = dumps(view(data, self.history.series(now), self.node, now))
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._fan_out, text)
            except RuntimeError:  # the loop closed in between: nobody is listening
                pass

    def current(self) -> dict | None:
        with self._lock:
            if self.data is None:
                return None
            now = now_ms()
            return view(self.data, self.history.series(now), self.node, now)

    def _fan_out(self, text: str | None) -> None:
        for queue in self.streams:
            if queue.full():  # a slow reader gets the newest snapshot, not a backlog
                queue.get_nowait()
            queue.put_nowait(text)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def script_json(value: Any) -> str:
    """JSON safe inside <script>: no ``</script>`` can end it early."""
    return dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def age(ms: float) -> str:
    seconds = max(0, int(ms // 1000))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


async def call(fn: Callable[..., Any], *args: Any, timeout: float = CALL_TIMEOUT) -> Any:
    """A blocking antenna call in a thread, with a deadline."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn, *args), timeout)
    except TimeoutError:
        raise NodeUnreachable(f"the node did not answer in {timeout:.0f} s") from None


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def index(request: web.Request) -> web.Response:
    hub, antenna = request.app[HUB], request.app[ANTENNA]
    page = hub.current()
    problem = None
    if page is None and not hub.down:  # no snapshot yet: ask the node for one
        try:
            hub.publish(await call(antenna.state))
            page = hub.current()
        except AntennaError as exc:
            problem = str(exc)
    page = page or view(None, {}, hub.node, now_ms())
    html = (
        request.app[TEMPLATES]
        .get_template("index.html")
        .render(view=page, snapshot=script_json(page), problem=problem or hub.down)
    )
    return web.Response(text=html, content_type="text/html")


async def api_state(request: web.Request) -> web.Response:
    hub, antenna = request.app[HUB], request.app[ANTENNA]
    if hub.down:
        return error(503, hub.down)
    try:
        hub.publish(await call(antenna.state))  # fresh from the node, not what we had
    except AntennaError as exc:
        return error(503, str(exc))
    return web.Response(text=dumps(hub.current()), content_type="application/json")


async def set_target(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if request.content_type != "application/json":
        # Not only tidy: a page on another site can POST text/plain without asking (no
        # CORS preflight), but not application/json. No other site switches our lights.
        return error(400, "the body must be JSON, sent as Content-Type: application/json")
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return error(400, 'the body must be JSON: {"value": ...}')
    if not isinstance(body, dict) or "value" not in body:
        return error(400, 'the body must be a JSON object with a "value"')
    value = body["value"]
    if request.app[HUB].down:
        return error(503, request.app[HUB].down)
    try:
        await call(request.app[ANTENNA].set, name, value)
    except NodeUnreachable as exc:
        return error(503, str(exc))
    except AntennaError as exc:  # the node refused it
        return error(400, str(exc))
    return web.json_response({"name": name, "value": value})


async def healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    if hub.down:
        return web.Response(status=503, text=hub.down + "\n")
    try:
        await call(request.app[ANTENNA].members, timeout=HEALTH_TIMEOUT)
    except AntennaError as exc:
        return web.Response(status=503, text=f"the node does not answer: {exc}\n")
    return web.Response(text="ok\n")


async def metrics(request: web.Request) -> web.Response:
    antenna, down = request.app[ANTENNA], request.app[HUB].down
    if down:
        return web.Response(status=503, text=down + "\n")
    try:
        numbers, members = await asyncio.gather(call(antenna.metrics), call(antenna.members))
    except AntennaError as exc:
        return web.Response(status=503, text=f"the node does not answer: {exc}\n")
    return web.Response(
        body=prom.render(numbers, members).encode(),
        headers={"Content-Type": prom.CONTENT_TYPE},
    )


async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a proxy in front must not hold events back
        }
    )
    await response.prepare(request)
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1)
    hub.streams.add(queue)
    try:
        await response.write(b"retry: 2000\n\n")
        first = hub.current()
        if first is not None:
            await response.write(f"data: {dumps(first)}\n\n".encode())
        while True:
            try:
                text = await asyncio.wait_for(queue.get(), KEEPALIVE)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if text is None:  # the server is shutting down
                break
            await response.write(f"data: {text}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the browser went away, or the server is stopping
    finally:
        hub.streams.discard(queue)
    return response


async def _attach(app: web.Application) -> None:
    app[HUB].loop = asyncio.get_running_loop()


async def _close_streams(app: web.Application) -> None:
    app[HUB]._fan_out(None)


def build_app(antenna: Any, hub: Hub | None = None) -> web.Application:
    """The application for one antenna (``state``, ``set``, ``members``, ``metrics``)."""
    app = web.Application()
    app[HUB] = hub or Hub()
    app[ANTENNA] = antenna
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["age"] = age
    app[TEMPLATES] = env
    app.on_startup.append(_attach)
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/", index)
    app.router.add_get("/events", events)
    app.router.add_get("/api/state", api_state)
    app.router.add_post("/api/targets/{name}", set_target)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_static("/static/", HERE / "static")
    return app
