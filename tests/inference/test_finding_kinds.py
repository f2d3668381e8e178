"""The finding-kind registry and the detector list: a new kind (``mass``) flows from a detector through the
result contract, the DICOM SEG/SR writers and the JSON without any of them naming it."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pytest

from inference.config import Settings
from inference.dicom import read_volume
from inference.dicom.writer import write_outputs
from inference.findings import KINDS, SCORE_KEYS, get_kind, kind_check_sql
from inference.results import CaseResult, Finding, load_case, save_case
from inference.triage import DetectorOutput, analyze
from tests.factories import make_volume, write_study


def _mass_detector(volume, engine, settings) -> DetectorOutput:
    """A stand-in detector: one 'mass' on the bright sphere, label 1 in the shared label mask."""
    mask = (volume.hu > 500).astype(np.uint8)
    k, j, i = (int(round(c)) for c in np.argwhere(mask).mean(0))
    finding = Finding(
        kind="mass",
        probability=0.93,
        center_mm=tuple(volume.voxel_to_patient((k, j, i))),
        center_voxel=(k, j, i),
        diameter_mm=35.0,
        volume_ml=20.0,
        location="left lower lobe",
        lung_rads="4B",
        label=1,
    )
    return DetectorOutput(
        findings=[finding], scores={"nodule": 0.93}, masks={"nodule_mask": mask}, model_versions={"mass": "t"}
    )


def _nodule_detector(volume, engine, settings) -> DetectorOutput:
    return DetectorOutput(scores={"nodule": 0.4}, thresholds={"nodule": {"report": 0.1, "suspected": 0.5}})


def test_registry_declares_every_kind_once() -> None:
    """Test that each kind has a SNOMED concept, a mask, a colour and a study score, and the DB constraint
    allows exactly the registered kinds."""
    assert set(KINDS) == {"nodule", "mass", "embolism"}
    assert get_kind("mass").concept == ("4147007", "SCT", "Mass") and get_kind("mass").score_key == "nodule"
    assert SCORE_KEYS == ("nodule", "embolism")
    assert kind_check_sql() == "kind IN ('nodule', 'mass', 'embolism')"
    with pytest.raises(ValueError, match="tumour"):
        get_kind("tumour")
    with pytest.raises(ValueError, match="kind"):
        Finding(kind="tumour", probability=0.5, center_mm=(0, 0, 0), center_voxel=(0, 0, 0))


def test_analyze_runs_the_detector_list_and_a_mass_reaches_seg_sr_and_json(tmp_path) -> None:
    """Test that analyze() runs the given detectors (scores combined, priority from them) and that the mass
    becomes a SEG segment and an SR group coded 'Mass', survives result.json, and keeps its mask path."""
    written, _ = write_study(tmp_path / "s")
    volume = read_volume(tmp_path / "s")
    detectors = [("nodules", _nodule_detector), ("mass", _mass_detector)]
    analysis = analyze(volume, engine=object(), settings=Settings(data_dir=tmp_path), detectors=detectors)
    result = analysis.result
    assert result.scores == {"nodule": 0.93, "priority": 0.93}
    assert {"nodules", "mass"} <= set(result.timings_ms) and result.thresholds["nodule"]["suspected"] == 0.5
    assert [f.kind for f in result.findings] == ["mass"] and analysis.nodule_mask is not None

    out = tmp_path / "out"
    out.mkdir()
    files = write_outputs(out, tmp_path / "s", volume, result, analysis.nodule_mask)
    seg = hd.seg.segread(files["seg"])
    assert seg.number_of_segments == 1
    assert seg.get_segment_description(1).segmented_property_type.value == "4147007"
    sr = hd.sr.srread(files["sr"])
    assert "4147007" in str(sr.ContentSequence)

    folder = save_case(tmp_path, result, volume, nodule_mask=analysis.nodule_mask)
    doc = json.loads((folder / "result.json").read_text())
    assert doc["schema_version"] == 2 and doc["findings"][0]["kind"] == "mass"
    back = load_case(folder).result
    assert isinstance(back, CaseResult) and back.findings[0].mask_path.endswith("nodule_mask.npy")


def test_quality_reasons_keep_code_severity_message_and_advice() -> None:
    """Test that a quality reason keeps all four fields through JSON, and that a volume warning becomes one."""
    volume = make_volume()
    volume.warnings.append(
        {"code": "partial_coverage", "severity": "warning", "message": "covers 80 mm", "advice": "Send the chest."}
    )
    analysis = analyze(volume, engine=object(), settings=Settings(), detectors=[("nodules", _nodule_detector)])
    back = CaseResult.model_validate_json(json.dumps(analysis.result.to_dict()))
    (reason,) = back.quality.reasons
    assert (reason.code, reason.severity, reason.message, reason.advice) == (
        "partial_coverage",
        "warning",
        "covers 80 mm",
        "Send the chest.",
    )
