"""Stopping a child process the way a user's Ctrl-C does, for the demo, the benchmarks and the tests."""
from __future__ import annotations

import signal
import subprocess


def interrupt(proc: subprocess.Popen, timeout: float) -> int:
    """SIGINT (the nodes and the bag player shut down cleanly on it), then kill if ``proc`` has not exited
    within ``timeout`` seconds; returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
