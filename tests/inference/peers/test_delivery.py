"""Results back to the PACS: SEG + SR by C-STORE and STOW-RS into a real Orthanc, retried with backoff when
the PACS is down, and "results not delivered: <reason>" on the worklist after the last try."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import pydicom
import pytest

from db.peers import list_deliveries
from db.queries import get_study
from db.session import session_scope
from db.types import utcnow
from db.worklist import worklist
from inference.intake import open_database
from inference.peers.delivery import backoff_s, deliver_due, plan_deliveries
from tests.inference.peers.helpers import analysis_outputs, make_series, peer_of, receive_locally, with_peers


@pytest.fixture
def analysed(tmp_path, settings):
    """A factory study in the inbox and database, with the SEG and SR of an analysis under results/."""
    make_series(tmp_path / "src", tag="deliver", PatientID="DLV-1", StudyDate="20240301")
    uid = receive_locally(tmp_path / "src", settings)
    outputs = analysis_outputs(settings.inbox_dir / uid, settings)
    assert outputs["seg"] is not None and outputs["sr"] is not None
    return uid, outputs


def _deliveries(settings, uid):
    with session_scope(open_database(settings)) as session:
        return [
            (d.peer, d.method, d.status, d.attempts, d.last_error)
            for d in list_deliveries(session=session, study_uid=uid)
        ]


def _check_stored(orthanc, uid, outputs):
    """The SEG and SR are in Orthanc, in the source study, referencing the analysed source series."""
    source_series = pydicom.dcmread(
        next((orthanc.folder.parent / "src").glob("*.dcm")), stop_before_pixels=True
    ).SeriesInstanceUID
    tags = {t["SOPInstanceUID"]: t for t in orthanc.study_instances(uid)}
    seg = pydicom.dcmread(outputs["seg"], stop_before_pixels=True)
    sr = pydicom.dcmread(outputs["sr"], stop_before_pixels=True)
    assert seg.SOPInstanceUID in tags and sr.SOPInstanceUID in tags
    assert tags[seg.SOPInstanceUID]["Modality"] == "SEG" and tags[sr.SOPInstanceUID]["Modality"] == "SR"
    assert tags[seg.SOPInstanceUID]["StudyInstanceUID"] == uid == tags[sr.SOPInstanceUID]["StudyInstanceUID"]
    ds = pydicom.dcmread(io.BytesIO(orthanc.instance_file(seg.SOPInstanceUID)))
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source_series
    return source_series


def test_c_store_and_stow_rs_deliver_seg_and_sr_into_the_source_study(tmp_path, settings, orthanc_factory, analysed):
    """Test that SEG and SR reach one Orthanc by C-STORE and another by STOW-RS, in the source study."""
    uid, outputs = analysed
    dimse_pacs = orthanc_factory("pacs", modalities={"triage": ["TRIAGE", "127.0.0.1", 104]})
    web_pacs = orthanc_factory("web")
    s = with_peers(
        settings,
        peer_of(dimse_pacs, "pacs", send_results=["c-store"], dicomweb_url=None),
        peer_of(web_pacs, "archive", send_results=["stow-rs"], ae_title=None, port=None),
    )
    ids = plan_deliveries(uid, outputs, settings=s)
    assert len(ids) == 2
    assert plan_deliveries(uid, outputs, settings=s) == ids  # idempotent per run, peer and method
    tried = deliver_due(s)
    assert sorted((t["peer"], t["method"], t["status"]) for t in tried) == [
        ("archive", "stow-rs", "delivered"), ("pacs", "c-store", "delivered")]  # fmt: skip
    # both objects in both PACS, in the source study, the SEG referencing the source series
    src = _check_stored(dimse_pacs, uid, outputs)
    assert _check_stored(web_pacs, uid, outputs) == src
    sr = pydicom.dcmread(outputs["sr"])
    evidence = {
        s.SeriesInstanceUID for e in sr.CurrentRequestedProcedureEvidenceSequence for s in e.ReferencedSeriesSequence
    }
    assert src in evidence
    assert deliver_due(s) == []  # nothing is sent twice
    assert {d[2] for d in _deliveries(s, uid)} == {"delivered"}


def test_stow_rs_round_trip_reads_back_the_same_objects(settings, orthanc, analysed):
    """Test that what STOW-RS stored comes back by QIDO-RS and WADO-RS unchanged (same UIDs, same SEG frames)."""
    from inference.peers import web

    uid, outputs = analysed
    peer = peer_of(orthanc, send_results=["stow-rs"])
    assert web.stow(peer, [outputs["seg"], outputs["sr"]], settings) == 2
    seg = pydicom.dcmread(outputs["seg"])
    series = {r["SeriesInstanceUID"]: r for r in web.search_series(peer, settings, uid)}
    assert seg.SeriesInstanceUID in series and series[seg.SeriesInstanceUID]["Modality"] == "SEG"
    got = []
    web.retrieve_series(peer, settings, uid, seg.SeriesInstanceUID, got.append)
    back = pydicom.dcmread(io.BytesIO(got[0]))
    assert back.SOPInstanceUID == seg.SOPInstanceUID
    assert (back.pixel_array == seg.pixel_array).all()


def test_pacs_down_mid_delivery_is_retried_and_delivered_once_back(settings, orthanc, analysed):
    """Test that a delivery to a stopped Orthanc fails, waits its backoff, and is delivered once it is back."""
    uid, outputs = analysed
    s = with_peers(settings, peer_of(orthanc, send_results=["c-store"]), delivery_backoff_s=60.0)
    plan_deliveries(uid, outputs, settings=s)
    orthanc.stop()
    (first,) = deliver_due(s)
    assert first["status"] == "pending" and first["attempts"] == 1
    assert "cannot be reached" in first["error"] or "refused" in first["error"]
    assert deliver_due(s) == []  # not due before its backoff
    assert deliver_due(s, now=utcnow() + timedelta(seconds=30)) == []
    orthanc.start()
    (second,) = deliver_due(s, now=utcnow() + timedelta(seconds=backoff_s(1, s) + 1))
    assert second["status"] == "delivered" and second["attempts"] == 2 and second["error"] is None
    assert {t["SOPInstanceUID"] for t in orthanc.study_instances(uid)} >= {
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in outputs.values() if p}  # fmt: skip
    with session_scope(open_database(s)) as session:
        assert get_study(session=session, study_uid=uid).delivery_error is None


def test_backoff_doubles_and_is_capped(settings):
    """Test that the retry delay doubles per failed try and stops at the configured maximum."""
    s = settings.model_copy(update={"delivery_backoff_s": 10.0, "delivery_backoff_max_s": 50.0})
    assert [backoff_s(n, s) for n in (1, 2, 3, 4, 5)] == [10.0, 20.0, 40.0, 50.0, 50.0]


def test_last_try_failed_shows_results_not_delivered_on_the_worklist(settings, orthanc, analysed, capsys):
    """Test that after the last try a refused delivery marks the study "results not delivered: <reason>"."""
    uid, outputs = analysed
    # Orthanc answers, but refuses the association: our AE title is wrong for it (a misconfigured peer)
    s = with_peers(settings, peer_of(orthanc, send_results=["c-store"], ae_title="NOT-THE-PACS"),
                   delivery_max_attempts=2, delivery_backoff_s=0.0)  # fmt: skip
    plan_deliveries(uid, outputs, settings=s)
    assert deliver_due(s)[0]["status"] == "pending"
    (last,) = deliver_due(s)
    assert last["status"] == "failed" and last["attempts"] == 2
    assert re.search("(rejected|aborted) the association", last["error"])  # Orthanc rejects; under load may abort
    with session_scope(open_database(s)) as session:
        (item,) = [i for i in worklist(session=session) if i.study_uid == uid]
    assert item.delivery_error.startswith("results not delivered: pacs (c-store) after 2 tries")
    assert item.delivery_error.endswith(last["error"])
    from inference.cli import main

    capsys.readouterr()
    assert main(["worklist", "--json"]) == 0  # the CLI worklist (TRIAGE_DATA_DIR is this test's)
    out = capsys.readouterr().out
    (row,) = [r for r in json.loads(out)["items"] if r["study_uid"] == uid]
    assert "results not delivered" in row["delivery_error"]
    assert deliver_due(s) == []  # failed stays failed (visible), it is not retried silently
