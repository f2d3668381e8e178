"""The analysis queue (Huey): a SQLite file in the data directory by default, Redis by URL.

``TRIAGE_QUEUE_URL`` unset → ``sqlite:///<data_dir>/queue.db``; ``redis://host:port/db`` → Redis. Tasks are
registered on the queue object built for the configured URL (not on a module global), so one process can
talk to the queue its settings name. Messages carry study UIDs only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from huey import Huey, RedisHuey, SqliteHuey

from inference.config import Settings, get_settings

log = logging.getLogger(__name__)


def make_huey(url: str) -> Huey:
    """A Huey instance for ``url`` (``sqlite:///path`` or ``redis://...``).

    Raises:
        ValueError: an unknown scheme.
    """
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey("triage", url=url)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey("triage", filename=str(path))
    raise ValueError(f"TRIAGE_QUEUE_URL must start with sqlite:/// or redis://, got {url.split(':')[0]}:")


#: The analysis task body, installed by the worker (``inference.worker``) before its consumer starts; the
#: queue never imports the worker (producers only enqueue).
_handler: Callable[[str, Any], str] | None = None


def set_analysis_handler(handler: Callable[[str, Any], str]) -> None:
    """Install the body of the ``analyze_study`` task (``handler(study_uid, task)``); called by the worker."""
    global _handler
    _handler = handler


def _analyze_study(study_uid: str, task: Any = None) -> str:
    if _handler is None:
        raise RuntimeError("no analysis handler in this process: the queue is consumed by `triage worker`")
    return _handler(study_uid, task)


@lru_cache(maxsize=4)
def _queue(url: str, retries: int, retry_delay: float) -> tuple[Huey, Any]:
    huey = make_huey(url)
    task = huey.task(retries=retries, retry_delay=retry_delay, context=True, name="analyze_study")(_analyze_study)
    return huey, task


def get_queue(settings: Settings | None = None) -> tuple[Huey, Any]:
    """``(huey, analyze_study_task)`` for the configured queue."""
    s = settings or get_settings()
    return _queue(s.resolved_queue_url, s.task_retries, s.task_retry_delay_s)


def enqueue_study(study_uid: str, settings: Settings | None = None) -> None:
    """Put one study on the analysis queue."""
    _, task = get_queue(settings)
    task(study_uid)
    log.info("study %s queued", study_uid)
