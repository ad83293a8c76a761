"""A thread that serves an actor's sockets, so a broadcast costs no turn of Thespian's loop.

Each wake of a Thespian actor goes through Thespian's own loop: measured here at 125-225
us of CPU for an actor that only echoes a pipe (a plain ``poll`` loop: about 50 us), and
each event crosses about ten such wakes per node (a connection worker receives it, Gossip
forwards it, workers send it on, the client's worker delivers it). The actors on that
path (connection workers, Gossip) set ``threaded_io``: their watched descriptors are then
polled by this thread, which calls the actor's own ``handle`` with the same
``WatchMessage`` Thespian would have sent, holding the actor's lock. The actor thread
keeps every actor message, under the same lock. Timers (``wakeupAfter``) are this
thread's too: a Plumtree IHAVE window or a GRAFT timeout would otherwise cost two turns of
Thespian's loop (setting it, and its firing).

Thespian is single-threaded: what the I/O thread asks of it (``send``) is queued and
done by the actor thread, woken through a socketpair that Thespian watches, before it
handles anything else, so nothing overtakes it.
"""

from __future__ import annotations

import heapq
import itertools
import select
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from thespian.actors import WakeupMessage, WatchMessage

_ERRORS = select.POLLERR | select.POLLHUP | select.POLLNVAL


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _poke(sock: socket.socket) -> None:
    try:
        sock.send(b"!")
    except (BlockingIOError, InterruptedError):
        pass  # already full of pokes: the reader wakes anyway


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


class IoThread(threading.Thread):
    """Polls ``actor.watching`` and hands what is ready to ``actor.serve_io``."""

    def __init__(self, actor: Any, crash: Callable[[], None]) -> None:
        super().__init__(name="io", daemon=True)
        self.actor = actor
        self.crash = crash
        self.lock = threading.RLock()
        self.actor_thread = threading.get_ident()
        self.deferred: list[tuple[Callable, tuple]] = []
        self._defer_r, self._defer_w = _pair()  # wakes the actor thread (Thespian watches it)
        self._ctl_r, self._ctl_w = _pair()  # wakes this thread when the fds to poll change
        self.wanted: tuple[int, ...] = ()
        self.timers: list[tuple[float, int, timedelta, Any]] = []  # heap by due time
        self._order = itertools.count()  # timers due together fire in the order set

    @property
    def defer_fd(self) -> int:
        return self._defer_r.fileno()

    def in_actor_thread(self) -> bool:
        return threading.get_ident() == self.actor_thread

    def defer(self, fn: Callable, *args: Any) -> None:
        """Have the actor thread call ``fn(*args)`` (Thespian calls from this thread)."""
        self.deferred.append((fn, args))
        if len(self.deferred) == 1:
            _poke(self._defer_w)

    def run_deferred(self) -> None:
        """In the actor thread, holding the lock: what this thread asked for, in order."""
        _drain(self._defer_r)
        while self.deferred:
            calls, self.deferred = self.deferred, []
            for fn, args in calls:
                fn(*args)

    def watch(self, fds: list[int]) -> None:
        """The descriptors to poll from now on (holding the lock)."""
        wanted = tuple(fds)
        if wanted != self.wanted:
            self.wanted = wanted
            if not self.in_actor_thread():
                return  # this thread reads ``wanted`` again before it polls
            _poke(self._ctl_w)

    def add_timer(self, delay: timedelta, payload: Any) -> None:
        """``wakeupAfter`` of the actor (holding the lock): a WakeupMessage after ``delay``."""
        due = time.monotonic() + max(0.0, delay.total_seconds())
        first = not self.timers or due < self.timers[0][0]
        heapq.heappush(self.timers, (due, next(self._order), delay, payload))
        if first and threading.get_ident() != self.ident:
            _poke(self._ctl_w)  # the thread waits for an earlier deadline now

    def run(self) -> None:
        try:
            self._loop()
        except BaseException:  # let it crash: the supervisor restarts the actor
            self.crash()

    def _loop(self) -> None:
        poller = select.poll()
        ctl = self._ctl_r.fileno()
        poller.register(ctl, select.POLLIN)
        polled: tuple[int, ...] = ()
        while True:
            with self.lock:
                wanted = self.wanted
            if wanted != polled:
                for fd in polled:
                    try:
                        poller.unregister(fd)
                    except KeyError:
                        pass
                for fd in wanted:
                    poller.register(fd, select.POLLIN)
                polled = wanted
            with self.lock:
                timeout = None
                if self.timers:
                    timeout = max(0, round((self.timers[0][0] - time.monotonic()) * 1000) + 1)
            events = poller.poll(timeout)
            ready = []
            for fd, mask in events:
                if fd == ctl:
                    _drain(self._ctl_r)
                elif mask & select.POLLNVAL:
                    # Closed under us: the handler's next ``watching`` drops it; until
                    # then, polling it again would return at once, again and again.
                    poller.unregister(fd)
                elif mask & (select.POLLIN | _ERRORS):
                    ready.append(fd)
            if ready:
                with self.lock:
                    self.actor.serve_io(WatchMessage(ready))
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                with self.lock:
                    _, _, delay, payload = heapq.heappop(self.timers)
                    self.actor.serve_io(WakeupMessage(delay, payload))
