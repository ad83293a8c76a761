"""A test actor: it raises on "boom", answers its pid on "pid", how many objects its
garbage collector leaves alone on "frozen", a name of its context on ("context", name),
logs a CRITICAL stdlib record on ("critical", text), and on ("garbage", "from") then
("garbage", "to") answers how many unreachable objects were made in between (the
collector is off meanwhile, so none is freed early). Started with ``hang_on_usr2``,
SIGUSR2 makes it hang (it sleeps, answering nothing, until killed)."""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from typing import Any

from actors.base import SatelliteActor


class Crashy(SatelliteActor):
    def init(self, args: dict) -> None:
        self.state = args.get("state", 0)
        if args.get("hang_on_usr2"):
            signal.signal(signal.SIGUSR2, lambda signum, frame: time.sleep(600))

    def handle(self, msg: Any, sender: Any) -> None:
        if msg == "boom":
            raise RuntimeError("boom, on purpose")
        if msg == "pid":
            self.send(sender, ("pid", os.getpid(), self.state))
        if isinstance(msg, tuple) and msg[0] == "context":
            self.send(sender, ("context", self.context.get(msg[1])))
        if msg == "frozen":
            self.send(sender, ("frozen", gc.get_freeze_count()))
        if isinstance(msg, tuple) and msg[0] == "critical":
            logging.getLogger("crashy").critical(msg[1])
            self.send(sender, "logged")
        if msg == ("garbage", "from"):
            gc.collect()
            gc.disable()
            self.send(sender, "counting")
        if msg == ("garbage", "to"):
            made = gc.collect()
            gc.enable()
            self.send(sender, ("garbage", made))
