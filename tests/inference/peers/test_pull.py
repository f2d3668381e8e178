"""Pull mode against a real Orthanc: C-FIND + C-MOVE (to our running receiver), C-FIND + C-GET and
QIDO-RS + WADO-RS; filtered by modality, body part and date; a study already present is not fetched again."""

from __future__ import annotations

import json

import pytest

from db.queries import get_study
from db.session import session_scope
from inference.dicom.receiver import Receiver
from inference.intake import open_database
from inference.peers.pull import date_range, parse_date, pull
from tests.inference.peers.helpers import make_series, peer_of, with_peers
from tests.inference.peers.orthanc import free_port


@pytest.fixture
def pacs_with_studies(tmp_path, orthanc_factory):
    """An Orthanc holding three CT studies: chest 2024-03-01, chest 2019-05-01 and a head CT 2024-03-02."""
    port = free_port()
    server = orthanc_factory("pacs", modalities={"triage": {"AET": "TRIAGE", "Host": "127.0.0.1", "Port": port}})
    uids = {}
    for name, seed, headers in (
        ("recent", 1, {"StudyDate": "20240301", "PatientID": "PULL-1"}),
        ("old", 2, {"StudyDate": "20190501", "PatientID": "PULL-2"}),
        ("head", 3, {"StudyDate": "20240302", "PatientID": "PULL-3", "BodyPartExamined": "HEAD"}),
    ):
        vol, files = make_series(tmp_path / "src" / name, tag=f"pull-{name}", seed=seed, **headers)
        server.upload(files)
        uids[name] = vol.study_uid
    return server, port, uids


def _in_db(settings, uid):
    with session_scope(open_database(settings)) as session:
        study = get_study(session=session, study_uid=uid)
        return None if study is None else study.status


@pytest.mark.parametrize("retrieve", ["c-get", "wado-rs"])
def test_pull_fetches_matching_chest_ct_once(settings, pacs_with_studies, retrieve):
    """Test that pull (C-FIND + C-GET, or QIDO-RS + WADO-RS) fetches only chest CT in the date range, once."""
    server, _, uids = pacs_with_studies
    s = with_peers(settings, peer_of(server, query=True, retrieve=retrieve))
    report = pull(s, peer="pacs", since="2024-01-01")
    assert report.matched == [uids["recent"]]  # the old study is out of range, the head CT is not chest
    assert report.fetched == {uids["recent"]: 12} and report.queued == [uids["recent"]] and not report.failed
    assert len(list((s.inbox_dir / uids["recent"]).rglob("*.dcm"))) == 12
    assert _in_db(s, uids["recent"]) == "queued" and _in_db(s, uids["head"]) is None
    again = pull(s, peer="pacs", since="2024-01-01")
    assert again.present == [uids["recent"]] and again.fetched == {}  # idempotent
    everything = pull(s, peer="pacs", body_part=None)
    assert sorted(everything.fetched) == sorted([uids["old"], uids["head"]])


def test_pull_by_c_move_to_the_running_receiver(settings, pacs_with_studies):
    """Test that C-FIND + C-MOVE sends the study to our receiver, which registers it; a second pull skips it."""
    server, port, uids = pacs_with_studies
    s = with_peers(settings, peer_of(server, query=True, retrieve="c-move"), receiver_port=port,
                   study_quiet_period_s=0.5)  # fmt: skip
    receiver = Receiver(s)
    receiver.start()
    try:
        report = pull(s, peer="pacs", since="20240101", until="20241231")
        assert report.fetched == {uids["recent"]: 12} and not report.failed
        assert receiver.stats["stored"] == 12
        assert _in_db(s, uids["recent"]) in ("received", "queued")
        assert pull(s, peer="pacs", since="20240101").present == [uids["recent"]]
    finally:
        receiver.stop()


def test_pull_cli_reports_unknown_aes_plainly(settings, pacs_with_studies, monkeypatch, capsys):
    """Test that `triage pull` says plainly when the PACS does not know the C-MOVE destination or our AE title."""
    from inference.cli import main
    from inference.config import get_settings

    server, _, uids = pacs_with_studies
    peers = [peer_of(server, query=True, retrieve="c-move").model_dump(mode="json")]
    monkeypatch.setenv("TRIAGE_PEERS", json.dumps(peers))
    monkeypatch.setenv("TRIAGE_RECEIVER_AE_TITLE", "NOBODY")  # the C-MOVE destination: unknown to the PACS
    monkeypatch.setenv("TRIAGE_CALLING_AE_TITLE", "TRIAGE")  # our calling AE: known to it
    get_settings.cache_clear()
    assert main(["pull", "--since", "36500d", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert set(out["failed"]) == {uids["recent"], uids["old"]}
    assert all("C-MOVE answered status 0x" in why for why in out["failed"].values())
    monkeypatch.delenv("TRIAGE_CALLING_AE_TITLE")  # now we call as NOBODY: the PACS answers no query at all
    get_settings.cache_clear()
    assert main(["pull"]) == 2
    err = capsys.readouterr().err
    assert "C-FIND answered status" in err and "is our AE title known?" in err and "Traceback" not in err


def test_dates():
    """Test the date forms pull accepts and the DICOM ranges they make."""
    assert parse_date("2024-03-01") == "20240301" == parse_date("20240301")
    assert date_range("2024-01-01", None) == "20240101-" and date_range(None, None) == ""
    with pytest.raises(ValueError, match="not a date"):
        parse_date("yesterday-ish")
