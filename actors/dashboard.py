"""The live web dashboard (``--http HOST:PORT``): an aiohttp server in this actor's
process, and an Antenna client of the node's own client port, as the talk's Phoenix app
was a client of its node.

The server runs in a daemon thread with its own asyncio loop; the antenna watches the
office state in another. Neither thread goes through ``receiveMessage``, so neither can
crash the actor the usual way: when the server cannot bind, or its thread dies, we log
one line and end the process ourselves (as ``SatelliteActor.crash`` does) and the
supervisor restarts us. A node whose client gateway is not up yet (or is restarting) is
no crash: the antenna keeps trying, and /healthz says why it is not ready.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sys
import threading
from typing import Any

from aiohttp import web
from loguru import logger

from actors.base import CRASH_STATUS, SatelliteActor
from satellite.antenna import Antenna, AntennaError, parse_node
from satellite.dashboard.app import Hub, build_app

CONNECT_BACKOFF = (0.1, 2.0)  # first and longest wait between attempts to attach, seconds


class Dashboard(SatelliteActor):
    def init(self, args: dict) -> None:
        self.http = parse_node(args["http"])
        host, port = parse_node(args["client"])
        self.done = threading.Event()  # set by stopping(): from then on, exits are normal
        self.hub = Hub()
        self.hub.down = f"connecting to the node's client port {host}:{port}"
        keyring = self.context.get("keyring") or None  # the node's own key, if it has one
        self.antenna = Antenna(host, port, client=f"dashboard@{self.node_id}", key=keyring)
        self.antenna.on("data")(self.hub.publish)
        self.loop: asyncio.AbstractEventLoop | None = None
        # The server thread's first news: None once it listens, else why it cannot.
        self.listening: queue.Queue[str | None] = queue.Queue(maxsize=1)
        self.server = threading.Thread(target=self.serve, name="http", daemon=True)
        self.server.start()
        problem = self.listening.get()
        if problem is not None:
            self.die(f"cannot listen on http://{args['http']}: {problem}")
        threading.Thread(target=self.attach, name="attach", daemon=True).start()

    def die(self, why: str) -> None:
        if self.done.is_set():
            return  # stopping: whatever broke, broke because we are going
        logger.error("[{}] dashboard: {}; exiting for a restart", self.node_id, why)
        sys.stderr.flush()
        os._exit(CRASH_STATUS)

    def serve(self) -> None:
        host, port = self.http
        try:
            loop = self.loop = asyncio.new_event_loop()
            runner = web.AppRunner(build_app(self.antenna, self.hub), shutdown_timeout=1.0)
            loop.run_until_complete(runner.setup())
            try:
                loop.run_until_complete(web.TCPSite(runner, host, port).start())
            except OSError as exc:
                self.listening.put(str(exc.strerror or exc))
                return
            logger.info("[{}] dashboard on http://{}:{}", self.node_id, host, port)
            self.listening.put(None)
            loop.run_forever()  # until stopping() stops the loop
            if self.done.is_set():
                loop.run_until_complete(runner.cleanup())
        except BaseException as exc:  # noqa: BLE001 - any death of this thread is fatal
            self.die(f"the HTTP server failed: {type(exc).__name__}: {exc}")
        self.die("the HTTP server stopped")

    def attach(self) -> None:
        """Attach the antenna, with backoff: the gateway may not be up (or may restart)."""
        delay = CONNECT_BACKOFF[0]
        while not self.done.is_set():
            try:
                self.antenna.start()  # from here on, the antenna reconnects by itself
                self.hub.node = self.antenna.node
                self.hub.publish(self.antenna.state())  # the first snapshot, not only changes
                self.hub.down = None
                return
            except AntennaError as exc:
                self.antenna.stop()
                self.hub.down = f"not attached to the node yet: {exc}"
                self.done.wait(delay)
                delay = min(CONNECT_BACKOFF[1], delay * 2)

    def handle(self, msg: Any, sender: Any) -> None:
        pass  # everything happens in the two threads

    def stopping(self) -> None:
        self.done.set()
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)  # serve() then closes the server
            self.server.join(timeout=1.5)
        self.antenna.stop()
