"""DICOMweb towards a peer (dicomweb-client): STOW-RS, QIDO-RS, WADO-RS and a plain HTTP check.

Credentials (``Peer.username`` / ``password``) go into the HTTP session's basic auth, never into URLs or
messages. Errors become ``PeerError`` with the HTTP status or the connection problem.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pydicom
import requests

from inference.config import Peer, Settings
from inference.peers import PeerError


def _session(peer: Peer) -> requests.Session:
    session = requests.Session()
    if peer.username:
        session.auth = (peer.username, peer.password.get_secret_value() if peer.password else "")
    return session


def client(peer: Peer, settings: Settings):
    """A ``DICOMwebClient`` for the peer's base URL.

    Raises:
        PeerError: the peer has no ``dicomweb_url``.
    """
    from dicomweb_client.api import DICOMwebClient

    if not peer.dicomweb_url:
        raise PeerError(f"peer {peer.name} has no dicomweb_url")
    return DICOMwebClient(url=peer.dicomweb_url.rstrip("/"), session=_session(peer), timeout=settings.dimse_timeout_s)


def _call(peer: Peer, what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else "?"
        reason = exc.response.reason if exc.response is not None else ""
        raise PeerError(f"{peer.describe()}: {what} answered HTTP {code} {reason}".rstrip()) from None
    except requests.RequestException as exc:
        raise PeerError(f"{peer.describe()}: {what} failed: {type(exc).__name__} (unreachable?)") from None


def stow(peer: Peer, paths: list[Path], settings: Settings) -> int:
    """STOW-RS the files into their study; returns how many the peer stored.

    Raises:
        PeerError: unreachable, HTTP error, or some objects refused (FailedSOPSequence).
    """
    datasets = [pydicom.dcmread(p) for p in paths]
    web = client(peer, settings)
    study_uids = {ds.StudyInstanceUID for ds in datasets}
    stored = 0
    for study_uid in sorted(study_uids):
        batch = [ds for ds in datasets if ds.StudyInstanceUID == study_uid]
        rsp = _call(peer, "STOW-RS", partial(web.store_instances, batch, study_instance_uid=study_uid))
        failed = list(getattr(rsp, "FailedSOPSequence", []) or [])
        if failed:
            reasons = sorted({f"0x{int(getattr(item, 'FailureReason', 0xFFFF)):04X}" for item in failed})
            raise PeerError(f"{peer.describe()}: STOW-RS refused {len(failed)} object(s): {', '.join(reasons)}")
        stored += len(list(getattr(rsp, "ReferencedSOPSequence", []) or []))
    return stored


def search_studies(peer: Peer, settings: Settings, filters: dict[str, Any]) -> list[dict[str, Any]]:
    """QIDO-RS studies matching ``filters`` (keyword → value); each result as ``{keyword: value}``."""
    web = client(peer, settings)
    fields = ["StudyInstanceUID", "StudyDate", "PatientID", "ModalitiesInStudy", "StudyDescription"]
    rows = _call(peer, "QIDO-RS", lambda: web.search_for_studies(search_filters=filters, fields=fields))
    return [_simplify(r) for r in rows]


def search_series(peer: Peer, settings: Settings, study_uid: str) -> list[dict[str, Any]]:
    """QIDO-RS the series of one study."""
    web = client(peer, settings)
    fields = [
        "SeriesInstanceUID",
        "Modality",
        "SeriesDescription",
        "BodyPartExamined",
        "NumberOfSeriesRelatedInstances",
    ]
    rows = _call(peer, "QIDO-RS", lambda: web.search_for_series(study_instance_uid=study_uid, fields=fields))
    return [_simplify(r) for r in rows]


def retrieve_series(
    peer: Peer, settings: Settings, study_uid: str, series_uid: str, on_instance: Callable[[bytes], None]
) -> int:
    """WADO-RS one series; ``on_instance`` gets each object as Part 10 bytes. Returns the count."""
    web = client(peer, settings)
    datasets = _call(peer, "WADO-RS", lambda: web.retrieve_series(study_uid, series_uid))
    for ds in datasets:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        on_instance(buf.getvalue())
    return len(datasets)


def http_check(peer: Peer, settings: Settings) -> str:
    """A QIDO-RS request that lists at most one study; returns a short 'HTTP 200' note.

    Raises:
        PeerError: unreachable, wrong credentials (401/403) or not a DICOMweb service.
    """
    if not peer.dicomweb_url:
        raise PeerError(f"peer {peer.name} has no dicomweb_url")
    url = peer.dicomweb_url.rstrip("/") + "/studies"
    try:
        rsp = _session(peer).get(
            url, params={"limit": 1}, headers={"Accept": "application/dicom+json"}, timeout=settings.dimse_timeout_s
        )
    except requests.RequestException as exc:
        raise PeerError(f"{peer.describe()}: HTTP check failed: {type(exc).__name__} (unreachable?)") from None
    if rsp.status_code in (401, 403):
        raise PeerError(f"{peer.describe()}: HTTP {rsp.status_code}: credentials refused (username/password)")
    if rsp.status_code not in (200, 204):
        raise PeerError(f"{peer.describe()}: HTTP {rsp.status_code} {rsp.reason} from {url}")
    return f"HTTP {rsp.status_code}"


def _simplify(row: dict[str, Any]) -> dict[str, Any]:
    """DICOM JSON (tag → {vr, Value}) to ``{keyword: first value}``."""
    from pydicom.datadict import keyword_for_tag

    out = {}
    for tag, item in row.items():
        values = item.get("Value") or []
        value = values[0] if values else None
        if isinstance(value, dict):  # person name
            value = value.get("Alphabetic")
        out[keyword_for_tag(int(tag, 16)) or tag] = value if len(values) <= 1 else values
    return out
