"""A test actor served by an I/O thread (``threaded_io``): it echoes what arrives on a
socket it was handed, with the name of the thread that read it; "tick" sets a timer
whose firing is written back too; "tell" sends the text to whoever said "hello", an
actor message that the I/O thread must leave to the actor thread."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta
from typing import Any

from thespian.actors import WakeupMessage, WatchMessage

from actors.base import SatelliteActor


class EchoIo(SatelliteActor):
    threaded_io = True

    def init(self, args: dict) -> None:
        self.sock = socket.socket(fileno=args["fd"].detach())
        self.sock.setblocking(False)
        self.watching = [self.sock.fileno()]
        self.listener: Any = None

    def handle(self, msg: Any, sender: Any) -> None:
        where = threading.current_thread().name
        if msg == "hello":
            self.listener = sender
            self.send(sender, ("hello", where))
        elif isinstance(msg, WatchMessage):
            data = self.sock.recv(4096)
            if not data:
                self.watching = []
                return
            for word in data.decode().split():
                if word == "tick":
                    self.wakeupAfter(timedelta(milliseconds=20), payload="tock")
                elif word.startswith("tell:"):
                    self.send(self.listener, ("told", word[5:], where))
                self.sock.send(f"{word}@{where} ".encode())
        elif isinstance(msg, WakeupMessage) and msg.payload == "tock":
            self.sock.send(f"tock@{where} ".encode())
