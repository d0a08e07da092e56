"""An executor spun in a background thread, for processes whose main thread does other work (the bag
player's clocked publishing, the latency benchmark's camera, test clients)."""
from __future__ import annotations

import threading

from rclpy.executors import Executor, ExternalShutdownException


class BackgroundSpin:
    """Spins `executor` in a daemon thread until `stop()`.

    Call `stop()` before destroying the nodes and shutting the context down: a thread still inside
    rcl_wait when the interpreter exits aborts the whole process ("terminate called without an active
    exception"), after all its work is done."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:  # the context went down first (Ctrl-C, a test's teardown)
            pass

    def stop(self, timeout: float = 5.0) -> None:
        self.executor.shutdown(timeout_sec=timeout)
        self.thread.join(timeout=timeout)
