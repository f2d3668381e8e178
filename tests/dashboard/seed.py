"""Builds a dashboard data directory for tests (AppTest and the e2e server): a migrated SQLite database,
users, studies in every worklist situation, findings and saved case arrays (``inference.results.save_case``).

Run directly to make a data directory by hand: ``python -m tests.dashboard.seed /tmp/dash``.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session

from dashboard.auth import add_user
from db import queries
from db.migrate import upgrade
from db.session import create_db_engine
from db.types import utcnow
from inference.results import CaseResult, Finding, save_case
from inference.volume import Volume
from tests.db.factories import make_finding, make_study

PASSWORD = "correct-horse-battery"
HTML_NAME = "<script>alert(1)</script>^<b>Bold</b>"
SHAPE = (40, 128, 128)
SPACING = (2.5, 0.8, 0.8)


def phantom(seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """A small chest-like volume: body, two lungs, a contrast-filled artery with a clot, a nodule."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(SHAPE)
    hu = np.full(SHAPE, -1000, np.int16)
    body = ((j - 64) / 56.0) ** 2 + ((i - 64) / 60.0) ** 2 < 1
    hu[body] = 40
    for ci in (38, 90):
        hu[(((j - 62) / 40.0) ** 2 + ((i - ci) / 22.0) ** 2 < 1) & body] = -850
    artery = ((j - 50) ** 2 + (i - 64) ** 2 < 36) & (k > 4) & (k < 36)
    hu[artery] = 300
    clot_c = (20, 50, 64)
    clot = (k - clot_c[0]) ** 2 / 4 + (j - clot_c[1]) ** 2 + (i - clot_c[2]) ** 2 < 9
    hu[clot] = 35
    nod_c = (26, 70, 36)
    nodule = (k - nod_c[0]) ** 2 * (2.5 / 0.8) ** 2 + (j - nod_c[1]) ** 2 + (i - nod_c[2]) ** 2 < 36
    hu[nodule] = 20
    hu = (hu + rng.integers(-15, 16, SHAPE)).astype(np.int16)
    heat = np.exp(-((k - clot_c[0]) ** 2 / 8 + ((j - clot_c[1]) ** 2 + (i - clot_c[2]) ** 2) / 60.0))
    heat += np.exp(-((k - nod_c[0]) ** 2 / 4 + ((j - nod_c[1]) ** 2 + (i - nod_c[2]) ** 2) / 60.0)) * 0.7
    return hu, {"clot": clot, "nodule": nodule, "heat": heat, "clot_c": clot_c, "nod_c": nod_c}


def save_arrays(
    data_dir: Path,
    study_uid: str,
    findings: list[dict[str, Any]],
    *,
    seed: int,
    embedding: list[float] | None,
    z_slices: int | None = None,
) -> None:
    hu, parts = phantom(seed)
    keep = slice(0, z_slices or SHAPE[0])
    vol = Volume(
        hu=hu[keep],
        spacing_mm=SPACING,
        origin_mm=(-51.2, -51.2, -300.0),
        study_uid=study_uid,
        series_uid=study_uid + ".1",
    )
    result = CaseResult(
        study_uid=study_uid,
        series_uid=study_uid + ".1",
        scores={},
        findings=[Finding.from_dict(f) for f in findings],
        embedding=embedding,
    )
    nodule_mask = parts["nodule"][keep].astype(np.uint8)
    save_case(
        data_dir,
        result,
        vol,
        nodule_mask=nodule_mask,
        pe_mask=parts["clot"][keep].astype(np.uint8),
        heatmap=parts["heat"][keep],
    )


def finding_at(kind: str, kji: tuple[int, int, int], probability: float, **extra: Any) -> dict[str, Any]:
    k, j, i = kji
    mm = [-51.2 + i * SPACING[2], -51.2 + j * SPACING[1], -300.0 + k * SPACING[0]]
    return make_finding(kind, probability, center_voxel=[k, j, i], center_mm=mm, **extra)


def seed(data_dir: Path, *, users: bool = True) -> dict[str, Any]:
    """Populate ``data_dir``; returns the ids of the interesting studies and the user names."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(f"sqlite:///{data_dir / 'triage.db'}")
    upgrade(engine)
    now = utcnow()
    out: dict[str, Any] = {"password": PASSWORD}
    with Session(engine, expire_on_commit=False) as s:
        if users:
            add_user(session=s, username="reader1", password=PASSWORD, role="radiologist")
            add_user(session=s, username="reader2", password=PASSWORD, role="radiologist")
            add_user(session=s, username="admin", password=PASSWORD, role="admin")
        _, parts = phantom()
        pe_f = [
            finding_at("embolism", parts["clot_c"], 0.93, location="lobar, right", diameter_mm=6.0),
            finding_at("nodule", parts["nod_c"], 0.71, texture="solid", lung_rads="4A", location="RUL"),
        ]
        pe = make_study(
            s,
            received_at=now - timedelta(minutes=20),
            nodule=0.71,
            embolism=0.93,
            priority=0.93,
            findings=pe_f,
            PatientName="Critical^Pat",
            PatientID="PID-CRIT",
            scanner_profile="siemens-b30f",
            Manufacturer="SIEMENS",
        )
        save_arrays(data_dir, pe.study_uid, pe_f, seed=1, embedding=[0.9, 0.1, 0.3, 0.2])
        nod_f = [finding_at("nodule", parts["nod_c"], 0.62, texture="part-solid", lung_rads="3", location="RUL")]
        routine = make_study(
            s,
            received_at=now - timedelta(minutes=50),
            nodule=0.62,
            embolism=0.05,
            priority=0.62,
            findings=nod_f,
            PatientName="Routine^Ron",
            PatientID="PID-ROUT",
            scanner_profile="ge-standard",
            Manufacturer="GE",
        )
        save_arrays(data_dir, routine.study_uid, nod_f, seed=2, embedding=[0.1, 0.8, 0.4, 0.6], z_slices=24)
        failed = make_study(
            s,
            received_at=now - timedelta(minutes=30),
            status="failed",
            PatientName="Failed^Fay",
            PatientID="PID-FAIL",
            scanner_profile="ge-standard",
        )
        html = make_study(
            s,
            received_at=now - timedelta(minutes=10),
            nodule=0.1,
            embolism=0.02,
            priority=0.1,
            PatientName=HTML_NAME,
            PatientID="PID-HTML",
            scanner_profile="siemens-b30f",
        )
        save_arrays(data_dir, html.study_uid, [], seed=3, embedding=[0.5, 0.5, 0.9, 0.1])
        if users:
            held = make_study(
                s,
                received_at=now - timedelta(minutes=5),
                nodule=0.3,
                embolism=0.1,
                priority=0.3,
                PatientName="Held^Hank",
                PatientID="PID-HELD",
            )
            queries.claim_study(session=s, study_id=held.id, reader="reader2")
            out["held"] = held.id
        out.update(pe=pe.id, routine=routine.id, failed=failed.id, html=html.id, pe_uid=pe.study_uid)
    engine.dispose()
    return out


if __name__ == "__main__":
    print(seed(Path(sys.argv[1])))
