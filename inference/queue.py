"""The analysis queue (Huey): a SQLite file in the data directory by default, Redis by URL.

``TRIAGE_QUEUE_URL`` unset → ``sqlite:///<data_dir>/queue.db``; ``redis://host:port/db`` → Redis. Tasks are
registered on the queue object built for the configured URL (not on a module global), so one process can
talk to the queue its settings name. Messages carry study UIDs only.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

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


@lru_cache(maxsize=4)
def _queue(url: str, retries: int, retry_delay: float):
    from inference.worker import analyze_task  # the task body lives with the worker

    huey = make_huey(url)
    task = huey.task(retries=retries, retry_delay=retry_delay, context=True, name="analyze_study")(analyze_task)
    return huey, task


def get_queue(settings: Settings | None = None):
    """``(huey, analyze_study_task)`` for the configured queue."""
    s = settings or get_settings()
    return _queue(s.resolved_queue_url, s.task_retries, s.task_retry_delay_s)


def enqueue_study(study_uid: str, settings: Settings | None = None) -> None:
    """Put one study on the analysis queue."""
    _, task = get_queue(settings)
    task(study_uid)
    log.info("study %s queued", study_uid)


def pending_count(settings: Settings | None = None) -> int:
    huey, _ = get_queue(settings)
    return huey.pending_count()
