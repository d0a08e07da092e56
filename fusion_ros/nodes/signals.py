"""SIGINT / SIGTERM handling owned by a node's process instead of rclpy's.

rclpy's own handler shuts the context down at once, from the signal, while other threads may still publish
("publisher's context is invalid") and raises KeyboardInterrupt wherever the main thread is. Here the first
signal only sets an event (and runs a callback); the process then stops its own work and shuts rclpy down
last. Later signals (an impatient second Ctrl-C, launch forwarding its SIGINT after the terminal's) run the
same handler, which does nothing more. The handler stays a Python function while the process shuts down:
switching to SIG_IGN from inside it makes Python report a signal that was already pending at that moment
as "OSError: Signal 15 ignored due to race condition" with a traceback. Only once rclpy is shut down does
``ignore_from_now`` switch to SIG_IGN, which also covers the interpreter's exit (Python puts its own
handlers back to SIG_DFL there, so a late Ctrl-C would otherwise end the process with -2).
"""
from __future__ import annotations

import signal
import threading
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownOnSignal:
    """The first SIGINT / SIGTERM sets ``event``, records its name and calls ``on_first``; later ones do nothing."""

    def __init__(self, on_first: Callable[[], None] | None = None):
        self.event = threading.Event()
        self.signal_name = ""
        self._on_first = on_first
        self._previous: dict = {}

    def install(self) -> bool:
        """Take SIGINT / SIGTERM; False (nothing installed) off the main thread, where Python cannot."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            return
        self.signal_name = signal.Signals(signum).name
        self.event.set()
        if self._on_first is not None:
            self._on_first()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def ignore_from_now(self) -> None:
        """Once rclpy is shut down, if a signal came: ignore further signals at the OS level, through exit."""
        if self._previous and self.requested:
            for signum in SIGNALS:
                signal.signal(signum, signal.SIG_IGN)

    def restore(self) -> None:
        """Give an in-process caller (a test calling main()) its handlers back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
