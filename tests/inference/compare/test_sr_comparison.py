"""Tests of the TID 1500 SR after a comparison: prior measurements, growth, VDT and the links between studies."""

from __future__ import annotations

import highdicom as hd

from inference.compare import tracking_uid
from inference.dicom import read_volume
from inference.dicom.writer import rewrite_sr_with_comparison, write_outputs
from tests.factories import write_study
from tests.inference.dicom.test_writer import _case


def test_sr_carries_prior_measurements_and_the_prior_tracking_uid(tmp_path, settings):
    """Test that a paired nodule keeps the prior report's tracking UID and carries prior volume, change and VDT,
    with the prior study's UID, and that the UID derivation matches the prior's own SR."""
    written, _ = write_study(tmp_path / "s")
    vol = read_volume(tmp_path / "s")
    result, mask = _case(vol, written.meta["sphere_kji"])
    (tmp_path / "out").mkdir()
    out = write_outputs(tmp_path / "out", tmp_path / "s", vol, result, mask)
    own = hd.sr.srread(out["sr"]).content.get_volumetric_roi_measurement_groups()[0]
    # the SR written without comparison uses the derivation compare.tracking_uid names for a prior
    assert own.tracking_uid == tracking_uid(vol.study_uid, vol.series_uid, "nodule", 1)

    prior_uid = "1.2.826.0.1.3680043.10.999.4242"
    prior_tracking = tracking_uid(prior_uid, "1.2.826.0.1.3680043.10.999.4243", "nodule", 2)
    comparison = {
        "prior_study_uid": prior_uid,
        "pairs": [
            {
                "current_index": 0, "status": "growing", "prior_tracking_uid": prior_tracking,
                "prior_tracking_id": "Nodule 2", "prior": {"volume_mm3": 65.0, "diameter_mm": 5.0},
                "volume_change_pct": 84.6, "vdt_days": 410.0,
            }
        ],
        "new": [],
    }
    path = rewrite_sr_with_comparison(tmp_path / "out", tmp_path / "s", vol, result, comparison)
    sr = hd.sr.srread(path)
    group = sr.content.get_volumetric_roi_measurement_groups()[0]
    assert group.tracking_uid == prior_tracking
    meas = {m.name.meaning: m.value for m in group.get_measurements()}
    assert meas["Volume doubling time"] == 410.0
    assert meas["Volume on the prior study"] == 65.0
    assert meas["Volume change since the prior study"] == 84.6
    evals = {e.name.meaning: e.value.meaning for e in group.get_qualitative_evaluations()}
    assert evals["Change since prior study"] == "growing"
    uids = [item.UID for item in group[0].ContentSequence if item.ValueType == "UIDREF"]
    assert prior_uid in uids
