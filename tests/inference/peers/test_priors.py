"""Prior studies: the same patient's earlier chest CT found on the PACS (C-FIND/C-GET or QIDO-RS/WADO-RS) or
in our own database, its best series chosen by the series rules, kept, and linked in the database."""

from __future__ import annotations

import dataclasses

import pytest

from db.peers import get_priors
from db.session import session_scope
from inference.dicom import read_volume
from inference.dicom.ct_writer import derived_uid
from inference.intake import open_database
from inference.peers.priors import fetch_priors, find_prior
from tests.factories import make_volume, write_study
from tests.inference.peers.helpers import make_series, peer_of, receive_locally, with_peers

PATIENT = {"PatientID": "PRIOR-1", "PatientName": "SYNTHETIC^PRIOR"}


@pytest.fixture
def current(tmp_path, settings):
    """The study that just arrived: patient PRIOR-1, 2021-01-01, in our inbox and database."""
    vol, _ = make_series(tmp_path / "current", tag="prior-current", seed=10, StudyDate="20210101", **PATIENT)
    assert receive_locally(tmp_path / "current", settings) == vol.study_uid
    return vol.study_uid


def _prior_on_pacs(tmp_path, server) -> tuple[str, str]:
    """Upload the patient's 2019 study (a 12-slice chest series + a 6-slice series), a later 2023 study and
    another patient's 2018 study. Returns (prior study UID, the series the rules must choose)."""
    best = make_volume(shape=(12, 48, 40), seed=11, uid_tag="prior-2019")
    thin = dataclasses.replace(make_volume(shape=(6, 48, 40), seed=12), study_uid=best.study_uid,
                               series_uid=derived_uid(best.study_uid, "few slices"))  # fmt: skip
    files = write_study(tmp_path / "p2019a", best, headers={"StudyDate": "20190601", **PATIENT})[1]
    files += write_study(tmp_path / "p2019b", thin, headers={"StudyDate": "20190601", **PATIENT,
                                                             "SeriesDescription": "Chest 2.0 partial"})[1]  # fmt: skip
    files += make_series(tmp_path / "p2023", tag="later", seed=13, StudyDate="20230101", **PATIENT)[1]
    files += make_series(tmp_path / "other", tag="other", seed=14, StudyDate="20180101", PatientID="SOMEONE-ELSE")[1]
    server.upload(files)
    return best.study_uid, best.series_uid


@pytest.mark.parametrize("retrieve", ["c-get", "wado-rs"])
def test_prior_on_the_pacs_is_retrieved_best_series_kept_and_linked(tmp_path, settings, orthanc_factory, current,
                                                                     retrieve):  # fmt: skip
    """Test that the patient's earlier CT is fetched from Orthanc, its best series kept and the link stored."""
    server = orthanc_factory("pacs", modalities={"triage": {"AET": "TRIAGE", "Host": "127.0.0.1", "Port": 4242}})
    prior_uid, best_series = _prior_on_pacs(tmp_path, server)
    s = with_peers(settings, peer_of(server, query=True, retrieve=retrieve))
    path = fetch_priors(current, settings=s)
    assert path == s.priors_dir / prior_uid
    assert [p.name for p in path.iterdir()] == [best_series]  # the 6-slice series was dropped
    kept = sorted(path.rglob("*.dcm"))
    assert len(kept) == 12
    vol = read_volume(path)
    assert vol.study_uid == prior_uid and vol.series_uid == best_series and vol.shape[0] == 12
    assert find_prior(current, settings=s) == path
    with session_scope(open_database(s)) as session:
        (link,) = get_priors(session=session, study_uid=current)
        assert (link.prior_study_uid, link.prior_series_uid, link.prior_study_date, link.source) == (
            prior_uid, best_series, "20190601", "peer:pacs")  # fmt: skip
        assert link.prior_study_id is None  # not a study of ours: it never appears on the worklist
    mtimes = [p.stat().st_mtime_ns for p in kept]
    assert fetch_priors(current, settings=s) == path
    assert [p.stat().st_mtime_ns for p in sorted(path.rglob("*.dcm"))] == mtimes  # kept, not fetched again


def test_prior_in_our_own_database_is_linked_without_asking_a_pacs(tmp_path, settings, current):
    """Test that an earlier study of the same patient that we analysed before is linked as a local prior."""
    vol, _ = make_series(tmp_path / "earlier", tag="prior-local", seed=20, StudyDate="20200101", **PATIENT)
    receive_locally(tmp_path / "earlier", settings)
    make_series(tmp_path / "stranger", tag="stranger", seed=21, StudyDate="20200601", PatientID="NOT-THE-SAME")
    receive_locally(tmp_path / "stranger", settings)
    path = fetch_priors(current, settings=settings)
    assert path == settings.inbox_dir / vol.study_uid
    assert read_volume(path).study_uid == vol.study_uid
    with session_scope(open_database(settings)) as session:
        (link,) = get_priors(session=session, study_uid=current)
        assert link.source == "local" and link.prior_study_id is not None
    assert find_prior(current, settings=settings) == path
    assert fetch_priors(vol.study_uid, settings=settings) is None  # the earlier study has no prior itself


def test_no_prior_when_the_pacs_is_down(settings, orthanc, current):
    """Test that an unreachable PACS means no prior (logged), never an error for the analysis."""
    s = with_peers(settings, peer_of(orthanc, query=True))
    orthanc.stop()
    assert fetch_priors(current, settings=s) is None
    assert find_prior(current, settings=s) is None
