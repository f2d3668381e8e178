"""What happens after files land in the inbox: register the studies and queue them for analysis.

The database and the queue arrive with their own modules; until then (or when they are not configured),
ingest still keeps every file and reports the studies it found.
"""

from __future__ import annotations

import logging

from inference.config import Settings
from inference.dicom.inbox import IngestReport

log = logging.getLogger(__name__)


def register_ingested(report: IngestReport, *, settings: Settings) -> list[str]:
    """Register the studies of ``report`` and queue them; returns the study UIDs queued."""
    del settings
    for study_uid in report.studies:
        log.info("study %s is in the inbox", study_uid)
    return []
