"""Polling helper for tests that wait on a server, a receiver or a process."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(cond: Callable[[], object], timeout: float = 10.0, interval: float = 0.1) -> bool:
    """Call ``cond`` every ``interval`` seconds until it is truthy (True) or ``timeout`` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(interval)
    return False
