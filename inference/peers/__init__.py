"""Talking to PACS peers: results out (C-STORE, STOW-RS) with retries, studies in by pull (C-FIND + C-MOVE or
C-GET, QIDO-RS + WADO-RS), prior studies for comparison, and ``triage peers check``.

Modules: ``dimse`` (pynetdicom SCU), ``web`` (dicomweb-client), ``delivery`` (the delivery queue in the
database, backoff), ``pull``, ``priors`` (``find_prior``), ``check``, ``cli``. Peers come from
``Settings.peers`` (``TRIAGE_PEERS``); see ``inference/README.md``.
"""

from __future__ import annotations


class PeerError(Exception):
    """A peer refused, could not be reached or answered wrongly; the message says which and why (no secrets)."""
