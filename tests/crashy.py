"""A test actor: it raises on "boom", answers its pid on "pid"."""

from __future__ import annotations

import os
from typing import Any

from actors.base import SatelliteActor


class Crashy(SatelliteActor):
    def init(self, args: dict) -> None:
        self.state = args.get("state", 0)

    def handle(self, msg: Any, sender: Any) -> None:
        if msg == "boom":
            raise RuntimeError("boom, on purpose")
        if msg == "pid":
            self.send(sender, ("pid", os.getpid(), self.state))
