"""Tests that the result says how many findings passed the operating point beyond the display limit."""

from __future__ import annotations

from types import SimpleNamespace

from inference import triage
from inference.volume import Volume


def _cand(p: float, d: float = 8.0):
    from inference.results import Finding

    return SimpleNamespace(
        probability=p, label=1, diameter_mm=d,
        to_finding=lambda: Finding(kind="nodule", probability=p, center_mm=(0.0, 0.0, 0.0), center_voxel=(0, 0, 0),
                                   diameter_mm=d, texture="solid"),
    )


def test_more_findings_counts_what_the_list_leaves_out():
    """Test that 13 candidates above the threshold list 10 nodules and count 3 more, those below are not counted,
    and masses are always listed."""
    import numpy as np

    from inference.results import Finding

    mass = Finding(kind="mass", probability=0.9, center_mm=(1.0, 2.0, 3.0), center_voxel=(1, 2, 3), diameter_mm=50.0)
    cands = [_cand(0.9 - 0.01 * n) for n in range(13)] + [_cand(0.05) for _ in range(4)]
    nod = SimpleNamespace(candidates=cands, masses=[mass], mask=None)
    vol = Volume(hu=np.zeros((2, 2, 2), np.int16), spacing_mm=(1, 1, 1))
    findings, more = triage._nodule_findings(nod, vol, 0.5)
    assert more == 3
    assert [f.kind for f in findings].count("nodule") == triage.MAX_NODULE_FINDINGS
    assert findings[0].kind == "mass"


def test_study_score_ignores_small_nodules_and_counts_masses():
    """Test that the study nodule score is the highest probability among actionable findings only."""
    from inference.results import Finding

    small = Finding(kind="nodule", probability=0.95, center_mm=(0, 0, 0), center_voxel=(0, 0, 0), diameter_mm=4.0,
                    lung_rads="2")
    solid8 = Finding(kind="nodule", probability=0.4, center_mm=(0, 0, 0), center_voxel=(0, 0, 0), diameter_mm=8.0,
                     lung_rads="4A")
    mass = Finding(kind="mass", probability=0.9, center_mm=(0, 0, 0), center_voxel=(0, 0, 0), diameter_mm=50.0)
    assert triage.study_nodule_score([small]) == 0.0
    assert triage.study_nodule_score([small, solid8]) == 0.4
    assert triage.study_nodule_score([small, solid8, mass]) == 0.9
