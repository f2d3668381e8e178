"""DIMSE service user towards a peer (pynetdicom): C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET.

Every function opens one association with the peer's AE title, host and port, uses the settings' calling
AE title and timeouts, and raises ``PeerError`` with a plain sentence when the peer cannot be reached, refuses
the association or answers with a failure status.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from inference.config import Peer, Settings
from inference.dicom.receiver import COMPRESSED, IMAGE_CLASSES, OTHER_CLASSES, UNCOMPRESSED
from inference.peers import PeerError

PENDING = (0xFF00, 0xFF01)
#: Warning statuses of C-STORE (coercion, elements discarded): the object is stored.
STORE_WARNINGS = (0x0001, 0xB000, 0xB006, 0xB007)


def _new_ae(settings: Settings) -> AE:
    ae = AE(ae_title=settings.calling_ae)
    ae.acse_timeout = settings.dimse_timeout_s
    ae.dimse_timeout = settings.dimse_timeout_s
    ae.network_timeout = settings.dimse_timeout_s
    ae.connection_timeout = min(10.0, settings.dimse_timeout_s)
    return ae


@contextmanager
def associate(peer: Peer, settings: Settings, ae: AE, **kwargs: Any) -> Iterator[Any]:
    """An established association with ``peer`` (released afterwards).

    Raises:
        PeerError: no DICOM address configured, peer unreachable, or association refused.
    """
    if not peer.has_dimse:
        raise PeerError(f"peer {peer.name} has no DICOM address (ae_title and port)")
    assert peer.port is not None and peer.ae_title is not None  # has_dimse
    try:
        assoc = ae.associate(peer.host, int(peer.port), ae_title=peer.ae_title, **kwargs)
    except OSError as exc:
        raise PeerError(f"{peer.describe()}: cannot connect: {exc}") from exc
    if not assoc.is_established:
        if assoc.is_rejected:
            why = "rejected the association (is our AE title known to it, and its AE title right?)"
        else:
            why = _unreachable_reason(peer) or "aborted the association (are the AE titles right on both sides?)"
        raise PeerError(f"{peer.describe()} {why}")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _unreachable_reason(peer: Peer) -> str | None:
    """Why a TCP connection to the peer fails, or None when it opens."""
    try:
        with socket.create_connection((peer.host, int(peer.port or 0)), timeout=5):
            return None
    except OSError as exc:
        return f"cannot be reached ({exc.strerror or type(exc).__name__})"


def _status(rsp: Dataset | None) -> int:
    return int(getattr(rsp, "Status", 0xFFFF)) if rsp is not None and len(rsp) else 0xFFFF


def echo(peer: Peer, settings: Settings) -> None:
    """C-ECHO. Raises ``PeerError`` unless the peer answers success."""
    ae = _new_ae(settings)
    ae.add_requested_context(Verification)
    with associate(peer, settings, ae) as assoc:
        status = _status(assoc.send_c_echo())
    if status != 0:
        raise PeerError(f"{peer.describe()}: C-ECHO answered status 0x{status:04X}")


def store(peer: Peer, paths: list[Path], settings: Settings) -> list[int]:
    """C-STORE each file; returns the statuses.

    Raises:
        PeerError: unreachable, refused, or any object not stored (failure status or no answer).
    """
    datasets = [pydicom.dcmread(p) for p in paths]
    ae = _new_ae(settings)
    for key in {(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) for ds in datasets}:
        ae.add_requested_context(*key)
    statuses = []
    with associate(peer, settings, ae) as assoc:
        for ds in datasets:
            statuses.append(_status(assoc.send_c_store(ds)))
    bad = [f"0x{s:04X}" for s in statuses if s != 0 and s not in STORE_WARNINGS]
    if bad:
        raise PeerError(f"{peer.describe()} refused {len(bad)} of {len(statuses)} object(s): status {', '.join(bad)}")
    return statuses


def find(peer: Peer, settings: Settings, level: str, query: dict[str, Any]) -> list[Dataset]:
    """C-FIND (study root) at ``level`` (``STUDY``/``SERIES``/``IMAGE``); ``query`` maps keywords to matching
    values ('' = return this attribute). Returns the matches.

    Raises:
        PeerError: unreachable, refused, or a failure status.
    """
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for key, value in query.items():
        setattr(ds, key, value)
    ae = _new_ae(settings)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    out = []
    with associate(peer, settings, ae) as assoc:
        for status, identifier in assoc.send_c_find(ds, StudyRootQueryRetrieveInformationModelFind):
            code = _status(status)
            if code in PENDING and identifier is not None:
                out.append(identifier)
            elif code != 0:
                raise PeerError(f"{peer.describe()}: C-FIND answered status 0x{code:04X} (is our AE title known?)")
    return out


def _retrieve_identifier(study_uid: str, series_uid: str | None) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    ds.StudyInstanceUID = study_uid
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    return ds


def _final(peer: Peer, what: str, responses) -> tuple[int, int]:
    completed = failed = 0
    code = 0xFFFF
    for status, _ in responses:
        code = _status(status)
        completed = int(getattr(status, "NumberOfCompletedSuboperations", completed) or completed)
        failed = int(getattr(status, "NumberOfFailedSuboperations", failed) or failed)
    if code not in (0x0000, 0xB000):
        raise PeerError(f"{peer.describe()}: {what} answered status 0x{code:04X} ({failed} sub-operation(s) failed)")
    return completed, failed


def move(peer: Peer, settings: Settings, study_uid: str, destination_ae: str, series_uid: str | None = None) -> int:
    """C-MOVE a study (or one series) to ``destination_ae`` (an AE the peer knows). Returns instances moved.

    Raises:
        PeerError: unreachable, refused, unknown destination, or failed sub-operations.
    """
    ae = _new_ae(settings)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    with associate(peer, settings, ae) as assoc:
        responses = assoc.send_c_move(
            _retrieve_identifier(study_uid, series_uid), destination_ae, StudyRootQueryRetrieveInformationModelMove
        )
        completed, _ = _final(peer, "C-MOVE", responses)
    return completed


def get(
    peer: Peer,
    settings: Settings,
    study_uid: str,
    on_instance: Callable[[bytes], None],
    series_uid: str | None = None,
) -> int:
    """C-GET a study (or one series) on one association; ``on_instance`` gets each object's bytes (with file
    meta). Returns instances received.

    Raises:
        PeerError: unreachable, refused, or failed sub-operations.
    """
    ae = _new_ae(settings)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = []
    for uid in IMAGE_CLASSES:
        ae.add_requested_context(uid, UNCOMPRESSED)
        for syntax in COMPRESSED:
            ae.add_requested_context(uid, [syntax])
        roles.append(build_role(uid, scp_role=True))
    for uid in OTHER_CLASSES:
        ae.add_requested_context(uid, UNCOMPRESSED)
        roles.append(build_role(uid, scp_role=True))
    received = 0

    def handle_store(event) -> int:
        nonlocal received
        try:
            on_instance(event.encoded_dataset(include_meta=True))
        except Exception:
            return 0xA700
        received += 1
        return 0x0000

    with associate(peer, settings, ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, handle_store)]) as assoc:
        responses = assoc.send_c_get(
            _retrieve_identifier(study_uid, series_uid), StudyRootQueryRetrieveInformationModelGet
        )
        _final(peer, "C-GET", responses)
    return received
