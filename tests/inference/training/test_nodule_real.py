"""Tests of the real-scan side of nodule training: NRRD geometry, case roles (lung2 never mined), the truth
labelling of candidates, and the import graph of ``inference.training.nodule`` (no cycles, issue #13)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

PKG = Path(__file__).resolve().parents[3] / "inference" / "training" / "nodule"


def test_nodule_training_package_has_no_import_cycle():
    """Test that no module of inference/training/nodule imports, directly or not, itself (lazy imports
    inside functions count too) and that nothing imports a private name of another module."""
    graph: dict[str, set[str]] = {}
    private = []
    for f in PKG.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("inference.training.nodule"):
                mod = node.module.rsplit(".", 1)[-1] if node.module != "inference.training.nodule" else None
                deps |= {mod} if mod else {a.name for a in node.names}
                private += [f"{f.stem} <- {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        graph[f.stem] = deps

    def reach(m: str, seen: set[str]) -> set[str]:
        for d in graph.get(m, ()):
            if d not in seen:
                seen.add(d)
                reach(d, seen)
        return seen

    assert [m for m in graph if m in reach(m, set())] == []
    assert private == []


def test_lung1_nrrd_geometry_puts_the_nodule_where_the_data_readme_says(shared_data):
    """Test that the NRRD reader builds the LPS geometry from ``space directions``/``space origin``: the
    lung1 label's centroid is at LPS (-21.9, -120.5, -611.5) mm and about 1.36 mL."""
    pytest.importorskip("nrrd", reason="pynrrd (train/dev extra) reads the NRRD scans")
    from inference.training.nodule.real import load_case

    case = load_case("lung1")
    assert case.volume.shape == (48, 512, 512) and case.volume.spacing_mm == pytest.approx((5.0, 0.5703, 0.5703),
                                                                                             abs=1e-3)
    (les,) = case.lesions
    assert case.volume.voxel_to_patient(les["center_voxel"]) == pytest.approx((-21.9, -120.5, -611.5), abs=0.6)
    assert les["volume_ml"] == pytest.approx(1.36, abs=0.05)
    assert -1100 < case.volume.hu.min() and case.volume.hu.max() > 500


def test_lung2_is_validation_only(shared_data):
    """Test that the real training cases never include lung2 and that mining refuses it."""
    pytest.importorskip("nrrd", reason="pynrrd (train/dev extra) reads the NRRD scans")
    from inference.training.nodule import real
    from inference.training.nodule.hardneg import mine_background

    assert "lung2" not in real.TRAIN_CASES and real.VALIDATION_CASES == ("lung2",)
    with pytest.raises(RuntimeError, match="never mined"):
        mine_background("lung2", 0, "assets/models", (24, 24, 24))


def test_candidates_are_labelled_against_the_lesion_mask_with_a_margin():
    """Test the real-case labelling: inside the grown lesion mask -> lesion, near another reader mark ->
    exclude, elsewhere -> negative."""
    from inference.training.nodule.real import RealCase, lesion_record
    from inference.training.nodule.realtable import label_candidates
    from inference.volume import Volume

    vol = Volume(hu=np.full((20, 60, 60), -850, np.int16), spacing_mm=(2.0, 1.0, 1.0))
    m = np.zeros(vol.shape, bool)
    m[8:12, 20:30, 20:30] = True
    case = RealCase("t", "train", vol, [lesion_record(m, vol)], [np.array([50.0, 50.0, 20.0])])
    tags = label_candidates(case, [(10, 25, 25), (10, 25, 33), (10, 50, 50), (10, 5, 50)])
    assert tags == ["lesion:0", "lesion:0", "exclude", "negative"]


def test_real_table_row_of_lidc_0003_finds_the_readers_nodule(shared_data):
    """Test the real-CT table on one scan through the serving path: the LIDC-IDRI-0003 readers' nodule is found
    at the card's report threshold, sized within 30 %, with no false finding, and the Markdown row says so."""
    from inference.engine import Engine
    from inference.training.nodule.realtable import markdown, real_table

    engine = Engine(Path(__file__).resolve().parents[3] / "assets" / "models", ["CPUExecutionProvider"], threads=2)
    table = real_table(engine, cases=("LIDC-IDRI-0003",), log=lambda *a: None)
    (row,) = table["rows"]
    (les,) = row["lesions"]
    assert les["found"] and les["found_as"] == "nodule" and les["probability"] >= table["report_threshold"]
    assert abs(les["size_error_pct"]) <= 30 and row["false_findings"] == 0
    assert "| LIDC-IDRI-0003 |" in markdown(table) and "yes (nodule)" in markdown(table)
