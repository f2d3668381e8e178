"""Tests of the DICOM outputs: SEG and TID 1500 SR read back with highdicom; C-STORE to dcmtk's storescp."""

from __future__ import annotations

import socket
import subprocess
import time

import highdicom as hd
import numpy as np
import pydicom

from inference.dicom import read_volume
from inference.dicom.writer import send_to_pacs, write_outputs
from inference.results import CaseResult, Finding
from tests.dcmtk import require_dcmtk
from tests.factories import write_study


def _case(vol, sphere_kji):
    c = np.round(sphere_kji).astype(int)
    mask = np.zeros(vol.shape, np.uint8)
    mask[c[0] - 1 : c[0] + 2, c[1] - 2 : c[1] + 3, c[2] - 2 : c[2] + 3] = 1
    nodule = Finding(
        kind="nodule",
        probability=0.91,
        center_mm=tuple(vol.voxel_to_patient(c)),
        center_voxel=tuple(int(x) for x in c),
        diameter_mm=6.5,
        volume_ml=0.12,
        mean_hu=650.0,
        texture="solid",
        lung_rads="3",
        label=1,
    )
    pe = Finding(
        kind="embolism", probability=0.8, center_mm=(0.0, 0.0, 0.0), center_voxel=(0, 0, 0), location="central"
    )
    result = CaseResult(
        study_uid=vol.study_uid,
        series_uid=vol.series_uid,
        scores={"nodule": 0.91, "embolism": 0.8, "priority": 0.98},
        findings=[nodule, pe],
        model_versions={"nodule_seg": "1.0", "pe_cnnlstm": "1.0"},
    )
    return result, mask


def test_seg_and_sr_read_back_and_reference_the_series(tmp_path, settings):
    """Test that the SEG holds the nodule on the right source slices and the SR references SEG and series."""
    written, _ = write_study(tmp_path / "s")
    vol = read_volume(tmp_path / "s")
    result, mask = _case(vol, written.meta["sphere_kji"])
    (tmp_path / "out").mkdir()
    out = write_outputs(tmp_path / "out", tmp_path / "s", vol, result, mask)
    seg = hd.seg.segread(out["seg"])
    assert seg.number_of_segments == 1
    assert seg.get_segment_description(1).segmented_property_type.value == "27925004"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == vol.series_uid
    src_uids = [
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in sorted((tmp_path / "s").glob("*.dcm"))
    ]
    stack = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=src_uids, segment_numbers=[1], ignore_spatial_locations=True
    )
    k_with_mask = sorted(set(np.nonzero(stack)[0].tolist()))
    c = result.findings[0].center_voxel
    assert k_with_mask == [c[0] - 1, c[0], c[0] + 1]
    assert int(stack.sum()) == int(mask.sum())

    sr = hd.sr.srread(out["sr"])
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 1
    ref = groups[0].referenced_segment  # the nodule group points at its SEG segment
    assert ref is not None
    assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
    assert list(ref.referenced_segment_numbers) == [1]
    assert ref.source_series_for_segmentation.value == vol.series_uid
    names = {m.name.meaning for m in groups[0].get_measurements()}
    assert {"Long axis", "Volume", "Model probability (calibrated)"} <= names
    evidence = {s.SeriesInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence}
    assert vol.series_uid in evidence


def test_no_nodule_means_no_seg_but_an_sr(tmp_path, settings):
    """Test that a study without nodule findings gets an SR and no SEG."""
    write_study(tmp_path / "s")
    vol = read_volume(tmp_path / "s")
    result = CaseResult(
        study_uid=vol.study_uid, series_uid=vol.series_uid, scores={"nodule": 0.02, "embolism": 0.01, "priority": 0.03}
    )
    (tmp_path / "out").mkdir()
    out = write_outputs(tmp_path / "out", tmp_path / "s", vol, result, np.zeros(vol.shape, np.uint8))
    assert out["seg"] is None
    content = hd.sr.srread(out["sr"]).content
    assert content.get_volumetric_roi_measurement_groups() == []
    groups = content.get_planar_roi_measurement_groups() + content.get_volumetric_roi_measurement_groups()
    assert groups == []
    text = str(hd.sr.srread(out["sr"]))
    assert "Study nodule suspicion" in text and "0.02" in text


def test_send_outputs_to_a_real_pacs_storescp(tmp_path, settings):
    """Test that SEG and SR are C-STOREd to dcmtk's storescp and arrive intact."""
    exe = require_dcmtk("storescp")
    written, _ = write_study(tmp_path / "s")
    vol = read_volume(tmp_path / "s")
    result, mask = _case(vol, written.meta["sphere_kji"])
    (tmp_path / "out").mkdir()
    out = write_outputs(tmp_path / "out", tmp_path / "s", vol, result, mask)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recv = tmp_path / "pacs"
    recv.mkdir()
    proc = subprocess.Popen([exe, "-aet", "PACS", "-od", str(recv), "+xa", str(port)])
    try:
        for _ in range(50):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        statuses = send_to_pacs([out["seg"], out["sr"]], f"PACS@127.0.0.1:{port}")
        assert statuses == [0, 0]
        time.sleep(0.5)
        got = {pydicom.dcmread(p).SOPInstanceUID for p in recv.iterdir()}
        assert got == {pydicom.dcmread(out["seg"]).SOPInstanceUID, pydicom.dcmread(out["sr"]).SOPInstanceUID}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
