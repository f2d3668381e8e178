"""AppTest of the review page's comparison with a prior: current and prior side by side, linked slices."""

from __future__ import annotations

import json

from inference.results import latest_case
from tests.dashboard.conftest import app
from tests.dashboard.seed import finding_at, phantom, save_arrays

PRIOR_UID = "1.2.826.0.1.3680043.10.999.7777"


def _compare_pe_study_with_a_prior(seeded, data_dir, shift_k: int) -> None:
    """Save a prior case (the phantom shifted by ``shift_k`` slices in patient z) and a comparison block."""
    _, parts = phantom()
    k, j, i = parts["nod_c"]
    nod = finding_at("nodule", (k, j, i), 0.66, texture="solid")
    save_arrays(data_dir, PRIOR_UID, [nod], seed=5, embedding=None)
    folder = latest_case(data_dir, seeded["pe_uid"])
    doc = json.loads((folder / "result.json").read_text())
    current_nodule = next(n for n, f in enumerate(doc["findings"]) if f["kind"] == "nodule")
    spacing_z = doc["geometry"]["spacing_mm"][0]
    current_mm = doc["findings"][current_nodule]["center_mm"]
    doc["comparison"] = {
        "prior_study_uid": PRIOR_UID,
        "prior_date": "2025-02-03",
        "interval_days": 300,
        "alignment": {
            "method": "rigid+affine (test)", "lung_dice": 0.97, "ok": True,
            # prior = current moved by shift_k slices along z
            "transform": {"matrix": [1, 0, 0, 0, 1, 0, 0, 0, 1], "center": [0, 0, 0],
                          "translation": [0, 0, -shift_k * spacing_z]},
        },
        "pairs": [{"current_index": current_nodule, "status": "growing", "volume_change_pct": 52.0,
                   "current_mm": current_mm, "prior_mm": nod["center_mm"]}],
        "new": [], "resolved": [],
        "summary": {"pairs": 1, "growing": 1, "stable": 0, "shrinking": 0, "new": 0, "resolved": 0},
    }
    (folder / "result.json").write_text(json.dumps(doc))


def _captions(at) -> list[str]:
    """Captions of the images on the page (the section's two: current and prior)."""
    return [c.caption for img in at.get("image") for c in img.proto.imgs]


def test_review_shows_current_and_prior_with_linked_slices(seeded, data_dir):
    """Test that a compared case shows the prior section with both images, the prior slice following the
    alignment, and that a case without comparison shows no such section."""
    at = app("reader1")
    at.query_params["study"] = str(seeded["pe"])
    at.switch_page("views/review.py")
    at.run()
    assert not at.exception and not [e for e in at.expander if "Compare with prior" in e.label]

    _compare_pe_study_with_a_prior(seeded, data_dir, shift_k=3)
    at.run()
    assert not at.exception, at.exception
    section = [e for e in at.expander if "Compare with prior" in e.label]
    assert section and "1 growing" in section[0].label
    captions = _captions(at)
    k = at.session_state["prior_k"]
    assert f"current, slice {k + 1}" in captions and f"prior 2025-02-03, slice {k + 1 - 3}" in captions
    # scrolling the current scan moves the prior with it
    at.slider(key="prior_k").set_value(k - 2).run()
    captions = _captions(at)
    assert f"current, slice {k - 1}" in captions and f"prior 2025-02-03, slice {k - 1 - 3}" in captions


def test_worklist_tags_a_growing_nodule_as_the_top_finding(seeded):
    """Test that a study whose latest analysis found a growing nodule (comparison with a prior) shows it as its
    top finding on the worklist, tagged "growing", before a more probable finding; the kind label comes from the
    registry."""
    from sqlmodel import Session

    from db import queries
    from db.session import get_engine
    from tests.db.factories import make_finding, make_result

    with Session(get_engine(), expire_on_commit=False) as s:
        study = queries.get_study(session=s, study_id=seeded["routine"])
        findings = [
            make_finding("embolism", 0.4, location="segmental, left"),
            make_finding("nodule", 0.3, diameter_mm=7.0, location="RLL",
                         extra={"change": "growing", "prior_diameter_mm": 5.5, "volume_change_pct": 90.0}),
        ]  # fmt: skip
        result = make_result(study.study_uid, scores={"nodule": 0.62, "embolism": 0.4, "priority": 0.7},
                             findings=findings, comparison={"prior_study_uid": PRIOR_UID})  # fmt: skip
        queries.store_analysis(session=s, result=result)
    at = app("reader1")
    at.run()
    assert not at.exception, at.exception
    tagged = [str(m.value) for m in at.markdown if "wl-change" in str(m.value)]
    assert len(tagged) == 1 and '<b data-testid="wl-change">growing</b> nodule 7 mm · RLL' in tagged[0]
