"""Simulated reading history for the demo's analytics page — every row it makes is labelled simulated.

``simulate_reading_history`` creates signed studies (patient name ``SIMULATED^n``, description "Simulated
study (demo)"), readers named ``sim-reader-N`` (disabled accounts), reading sessions in both arms, verdicts,
reader-added findings and reports spread over past weeks. The analytics page counts rows by ``sim-*``
readers and says so. It never touches real studies.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session

from dashboard.auth import hash_password
from db import queries
from db.types import utcnow
from inference.schema import CaseResult, Finding

#: Readers created here have this prefix; the analytics page labels their data as simulated.
SIMULATED_PREFIX = "sim-"
#: Scanner profiles of the simulation and how far their AI scores drift towards 0.5 (domain shift).
PROFILES = {"siemens-b30f": 0.0, "ge-standard": 0.15, "philips-b": 0.35}


def _score(rng: np.random.Generator, positive: bool, shift: float) -> float:
    s = rng.beta(6, 2) if positive else rng.beta(1.5, 9)
    return float(np.clip((1 - shift) * s + shift * 0.5, 0.0, 1.0))


def _ensure_readers(session: Session, names: list[str]) -> None:
    for name in names:
        if queries.get_user(session=session, username=name) is None:
            queries.create_user(session=session, username=name, password_hash=hash_password(secrets.token_urlsafe(24)))
            queries.set_user_active(session=session, username=name, active=False)


def simulate_reading_history(
    *,
    session: Session,
    rng: np.random.Generator,
    n_studies: int = 160,
    weeks: int = 8,
    n_readers: int = 3,
    ai_hidden_fraction: float = 0.25,
    ai_speedup: float = 0.8,
    thresholds: dict[str, dict[str, float]] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Create a simulated, signed reading history for the analytics page.

    Args:
        session: database session (committed as it goes).
        rng: random generator (seed it for a reproducible demo).
        n_studies: simulated studies to create and sign.
        weeks: spread of arrival times into the past.
        n_readers: simulated readers (``sim-reader-1`` ...).
        ai_hidden_fraction: share of readings in the AI-hidden arm.
        ai_speedup: reading time with AI as a fraction of without (the simulated effect).
        thresholds: operating points per study score, stored with each simulated analysis as the pipeline
            stores its own (default: the model cards' values, with any settings override).
        now: reference time (default: now).

    Returns:
        Counts: ``studies``, ``readings``, ``ai_hidden``, ``reader_findings``, ``readers``.
    """
    if thresholds is None:
        thresholds = card_operating_points()
    pe_threshold = thresholds["embolism"]["critical"]
    nodule_threshold = thresholds["nodule"]["suspected"]
    now = now or utcnow()
    readers = [f"{SIMULATED_PREFIX}reader-{n + 1}" for n in range(n_readers)]
    _ensure_readers(session, readers)
    profiles = list(PROFILES)
    counts: dict[str, Any] = {"studies": 0, "readings": 0, "ai_hidden": 0, "reader_findings": 0, "readers": readers}
    tag = secrets.token_hex(4)
    for n in range(n_studies):
        profile = profiles[int(rng.integers(len(profiles)))]
        has_pe, has_nodule = bool(rng.random() < 0.15), bool(rng.random() < 0.35)
        pe_s, nod_s = _score(rng, has_pe, PROFILES[profile]), _score(rng, has_nodule, PROFILES[profile])
        received = now - timedelta(minutes=float(rng.uniform(60, weeks * 7 * 24 * 60)))
        uid = f"2.25.{int(tag, 16)}{n:06d}"
        queries.upsert_study(
            session=session,
            study_uid=uid,
            scanner_profile=profile,
            received_at=received,
            header={
                "PatientName": f"SIMULATED^{n + 1}",
                "PatientID": f"SIM-{tag}-{n + 1}",
                "StudyDescription": "Simulated study (demo)",
                "Modality": "CT",
            },
        )
        findings = []
        if nod_s >= nodule_threshold:
            findings.append(
                {
                    "kind": "nodule",
                    "probability": nod_s,
                    "center_mm": [0, 0, 0],
                    "center_voxel": [0, 0, 0],
                    "diameter_mm": float(rng.uniform(4, 20)),
                    "texture": "solid",
                    "lung_rads": "3",
                }
            )
        if pe_s >= pe_threshold:
            findings.append(
                {
                    "kind": "embolism",
                    "probability": pe_s,
                    "center_mm": [0, 0, 0],
                    "center_voxel": [0, 0, 0],
                    "location": "segmental",
                }
            )
        result = CaseResult(
            study_uid=uid,
            series_uid=f"{uid}.1",
            scores={"nodule": nod_s, "embolism": pe_s, "priority": max(nod_s, pe_s)},
            findings=[Finding.model_validate(f) for f in findings],
            thresholds=thresholds,
            provider="simulated",
            model_versions={"simulation": "demo"},
        )
        queries.store_analysis(session=session, result=result)
        study = queries.get_study(session=session, study_uid=uid)
        assert study is not None and study.id is not None  # registered above
        reader = readers[int(rng.integers(len(readers)))]
        ai_shown = bool(rng.random() >= ai_hidden_fraction)
        wait_min = rng.uniform(5, 30) if pe_s >= pe_threshold else rng.uniform(20, 600)
        opened = received + timedelta(minutes=float(wait_min))
        seconds = float(rng.lognormal(np.log(300), 0.45)) * (ai_speedup if ai_shown else 1.0)
        rid = queries.open_reading_session(
            session=session, study_id=study.id, reader=reader, ai_shown=ai_shown, opened_at=opened
        )
        queries.close_reading_session(
            session=session,
            reading_session_id=rid,
            active_seconds=round(seconds, 1),
            closed_at=opened + timedelta(seconds=seconds * 1.3),
        )
        if ai_shown:
            for f in queries.get_findings(session=session, study_id=study.id):
                assert f.id is not None
                truth = has_pe if f.kind == "embolism" else has_nodule
                queries.set_verdict(
                    session=session,
                    finding_id=f.id,
                    reader=reader,
                    verdict="confirmed" if truth else "rejected",
                    reading_session_id=rid,
                )
        for kind, truth, score in (("nodule", has_nodule, nod_s), ("embolism", has_pe, pe_s)):
            missed = truth and (score < (nodule_threshold if kind == "nodule" else pe_threshold) or not ai_shown)
            if missed and rng.random() < 0.9:
                queries.add_reader_finding(
                    session=session,
                    study_id=study.id,
                    reader=reader,
                    kind=kind,
                    note="simulated",
                    reading_session_id=rid,
                )
                counts["reader_findings"] += 1
        queries.sign_report(
            session=session,
            study_id=study.id,
            reader=reader,
            nodule=has_nodule,
            embolism=has_pe,
            impression="Simulated report (demo data).",
            signed_at=opened + timedelta(seconds=seconds * 1.3 + 5),
        )
        counts["studies"] += 1
        counts["readings"] += 1
        counts["ai_hidden"] += int(not ai_shown)
    queries.record_event(
        session=session,
        actor="simulation",
        action="simulated_history",
        detail={k: v for k, v in counts.items() if k != "readers"},
    )
    return counts


def card_operating_points() -> dict[str, dict[str, float]]:
    """The study operating points of the configured model cards, settings overrides applied."""
    from inference.config import get_settings
    from inference.model_card import apply_overrides, find_cards, study_operating_points

    settings = get_settings()
    cards = find_cards(settings.resolved_model_dir)
    apply_overrides(cards, settings.threshold_overrides)
    return study_operating_points(cards)
