"""Database benchmark: worklist page, analytics and storing one analysis, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_db.py [--studies 100000] [--sessions 100000]

Loads ``--studies`` studies (a realistic mix: ~90 % signed with a report, the rest open, failed or
unsuitable), 30 % of them with AI findings and some verdicts / reader-added findings, and ``--sessions``
reading sessions, with bulk core inserts. Then times, per engine:

- the first worklist page (50 rows, open studies; target ≤ 50 ms) and a deep page (offset 1,000);
- the worst case: ranking *all* studies (every status) for one page;
- ``analytics_summary`` (every analytics table; target ≤ 1 s);
- ``store_analysis`` with 20 findings (target ≤ 20 ms), and ``claim_study``.

PostgreSQL runs when ``TRIAGE_TEST_POSTGRES_URL`` names a server (``source .ci/postgres.sh``); a
throw-away database is created on it and dropped afterwards. Not a test: it prints figures and ratios.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db import queries  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import (  # noqa: E402
    AnalysisRun,
    Finding,
    FindingVerdict,
    ReaderFinding,
    ReadingSession,
    Study,
    StudyReport,
    StudyStatus,
    User,
)
from db.session import create_db_engine  # noqa: E402
from inference.schema import CaseResult  # noqa: E402

PG_ENV = "TRIAGE_TEST_POSTGRES_URL"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
PROFILES = ["siemens-force", "siemens-edge", "ge-revolution", "philips-iqon", "canon-aquilion", None]
READERS = [f"reader{n:02d}" for n in range(20)]
CHUNK = 5000


def _chunks(rows: list[dict], size: int = CHUNK):
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _insert(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    for chunk in _chunks(rows):
        conn.execute(sa.insert(table), chunk)


def load(engine: Engine, n_studies: int, n_sessions: int, seed: int = 7) -> dict[str, int]:
    """Bulk-load the synthetic data set; returns row counts."""
    rnd = random.Random(seed)
    users = [
        {"username": r, "password_hash": "x", "role": "reader", "active": True, "created_at": NOW} for r in READERS
    ]
    studies, reports, signed_ids = [], [], []
    for sid in range(1, n_studies + 1):
        received = NOW - timedelta(minutes=rnd.uniform(0, 365 * 24 * 60))
        roll = rnd.random()
        status = (
            "signed" if roll < 0.90 else "ready" if roll < 0.96 else "in_review" if roll < 0.97
            else "queued" if roll < 0.98 else "failed" if roll < 0.99 else "unsuitable"
        )  # fmt: skip
        scored = status not in ("queued", "failed", "unsuitable")
        nodule = rnd.betavariate(0.6, 4) if scored else None
        embolism = rnd.betavariate(0.4, 6) if scored else None
        signed_at = received + timedelta(minutes=rnd.uniform(5, 600)) if status == "signed" else None
        studies.append(
            {
                "id": sid, "study_uid": f"1.2.826.0.1.3680043.10.999.{sid}", "accession": f"A{sid:08d}",
                "patient_id": f"P{sid % 40000:07d}", "patient_name": "Doe^Jane", "modality": "CT",
                "scanner_profile": PROFILES[sid % len(PROFILES)], "received_at": received,
                "analysed_at": received + timedelta(minutes=3) if scored else None, "signed_at": signed_at,
                "status": status, "nodule_score": nodule, "embolism_score": embolism,
                "priority": max(nodule, embolism) if scored else None,
                "critical": bool(scored and embolism >= 0.5),
                "attention_reason": "model crashed" if status == "failed" else
                "slice thickness 5 mm" if status == "unsuitable" else None,
                "claimed_by": READERS[sid % 20] if status == "in_review" else None,
            }
        )  # fmt: skip
        if status == "signed":
            signed_ids.append(sid)
            reports.append(
                {
                    "study_id": sid, "nodule": rnd.random() < (nodule or 0) + 0.05,
                    "embolism": rnd.random() < (embolism or 0) + 0.01, "signed_by": READERS[sid % 20],
                    "signed_at": signed_at,
                }
            )  # fmt: skip
    runs, findings, verdicts, added = [], [], [], []
    for sid in rnd.sample(range(1, n_studies + 1), k=int(n_studies * 0.3)):
        if studies[sid - 1]["nodule_score"] is None:
            continue
        run_id = len(runs) + 1
        runs.append({"id": run_id, "study_id": sid, "finished_at": NOW, "models": {}, "timings_ms": {}})
        for _ in range(rnd.randint(1, 3)):
            fid = len(findings) + 1
            findings.append(
                {"id": fid, "study_id": sid, "run_id": run_id, "kind": rnd.choice(["nodule", "embolism"]),
                 "probability": rnd.random(), "diameter_mm": rnd.uniform(3, 30)}
            )  # fmt: skip
            if rnd.random() < 0.5:
                verdicts.append(
                    {"finding_id": fid, "reader": READERS[fid % 20], "at": NOW,
                     "verdict": "confirmed" if rnd.random() < 0.6 else "rejected"}
                )  # fmt: skip
        if rnd.random() < 0.1:
            added.append(
                {"study_id": sid, "reader": READERS[sid % 20], "kind": rnd.choice(["nodule", "embolism"]),
                 "created_at": NOW}
            )  # fmt: skip
    sessions = []
    for _ in range(n_sessions):
        sid = rnd.choice(signed_ids)
        opened = studies[sid - 1]["signed_at"] - timedelta(minutes=rnd.uniform(1, 30))
        seconds = rnd.lognormvariate(5, 0.6)
        sessions.append(
            {"study_id": sid, "reader": READERS[rnd.randrange(20)], "opened_at": opened,
             "closed_at": opened + timedelta(seconds=seconds), "active_seconds": seconds,
             "ai_shown": rnd.random() < 0.8}
        )  # fmt: skip
    with engine.begin() as conn:
        for model, rows in (
            (User, users), (Study, studies), (StudyReport, reports), (AnalysisRun, runs), (Finding, findings),
            (FindingVerdict, verdicts), (ReaderFinding, added), (ReadingSession, sessions),
        ):  # fmt: skip
            _insert(conn, model.__table__, rows)
        if conn.dialect.name == "postgresql":
            for model in (Study, AnalysisRun, Finding):
                table = model.__tablename__
                conn.execute(
                    sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE"))
    return {"studies": len(studies), "reports": len(reports), "findings": len(findings), "sessions": len(sessions)}


def timed(func: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and max wall time in ms over ``repeats`` calls (after one warm-up call)."""
    func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def run_engine(engine: Engine, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    upgrade(engine)
    start = time.perf_counter()
    counts = load(engine, args.studies, args.sessions)
    print(f"  loaded {counts} in {time.perf_counter() - start:.1f} s", flush=True)
    results: dict[str, tuple[float, float]] = {}
    with Session(engine, expire_on_commit=False) as s:
        open_count = queries.count_worklist(session=s)
        print(f"  open studies on the worklist: {open_count}", flush=True)
        results["worklist page 1 (50 open)"] = timed(
            lambda: queries.worklist(session=s, limit=50, now=NOW, max_wait_minutes=120), args.repeats
        )
        results["worklist page at offset 1000"] = timed(
            lambda: queries.worklist(session=s, limit=50, offset=1000, now=NOW, max_wait_minutes=120), args.repeats
        )
        results["worklist count"] = timed(lambda: queries.count_worklist(session=s), args.repeats)
        every = [st.value for st in StudyStatus]
        results["worklist page, every study ranked"] = timed(
            lambda: queries.worklist(session=s, statuses=every, limit=50, now=NOW), max(3, args.repeats // 4)
        )
        results["analytics_summary"] = timed(
            lambda: queries.analytics_summary(session=s, embolism_threshold=0.5), max(3, args.repeats // 4)
        )
        results["  reading times (arm/reader/week)"] = timed(
            lambda: queries.reading_time_tables(session=s), max(3, args.repeats // 4)
        )
        results["  turnaround by priority"] = timed(
            lambda: queries.turnaround_by_priority(session=s), max(3, args.repeats // 4)
        )
        results["  AI performance"] = timed(
            lambda: queries.ai_performance(session=s, embolism_threshold=0.5), max(3, args.repeats // 4)
        )
        results["  scanner profiles"] = timed(
            lambda: queries.scanner_profile_breakdown(session=s, embolism_threshold=0.5), max(3, args.repeats // 4)
        )
        findings = [
            {"kind": "nodule" if n % 2 else "embolism", "probability": 0.5 + n / 100, "center_mm": [1.0, 2.0, 3.0],
             "center_voxel": [10, 20, 30], "diameter_mm": 6.0, "volume_ml": 0.1, "mean_hu": 20.0,
             "texture": "solid", "lung_rads": "4A", "location": "RUL", "mask_path": "m.nii.gz",
             "heatmap_path": "h.nii.gz"}
            for n in range(20)
        ]  # fmt: skip
        uids = [f"2.25.{uuid.uuid4().int}" for _ in range(args.repeats + 1)]
        for study_uid in uids:
            queries.upsert_study(session=s, study_uid=study_uid, header={"Modality": "CT"}, received_at=NOW)
        pending = iter([
            CaseResult(
                study_uid=uid, series_uid=f"{uid}.1", scores={"nodule": 0.7, "embolism": 0.2}, findings=findings,
                model_versions={"nodule": "n-1", "embolism": "e-1"}, timings_ms={"total": 900.0}, provider="CPU",
                thresholds={"nodule": {"report": 0.25, "suspected": 0.5}, "embolism": {"report": 0.3, "critical": 0.5}},
            )
            for uid in uids
        ])
        results["store_analysis, 20 findings"] = timed(
            lambda: queries.store_analysis(session=s, result=next(pending)), args.repeats
        )  # fmt: skip
        ids = iter(range(1, args.studies + 1))
        results["claim_study"] = timed(
            lambda: queries.claim_study(session=s, study_id=next(ids), reader=READERS[0]), args.repeats
        )
    return results


TARGETS_MS = {
    "worklist page 1 (50 open)": 50.0,
    "worklist page at offset 1000": 50.0,
    "worklist page, every study ranked": 50.0,
    "analytics_summary": 1000.0,
    "store_analysis, 20 findings": 20.0,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    engines: dict[str, tuple[str, Callable[[], None]]] = {}
    tmp = tempfile.TemporaryDirectory(prefix="triage-bench-")
    engines["sqlite"] = (f"sqlite:///{Path(tmp.name) / 'bench.db'}", lambda: None)
    pg_url = os.environ.get(PG_ENV)
    if pg_url:
        admin = create_db_engine(pg_url).execution_options(isolation_level="AUTOCOMMIT")
        name = f"triage_bench_{os.getpid()}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        engines["postgresql"] = (make_url(pg_url).set(database=name).render_as_string(hide_password=False), drop)
    else:
        print(f"PostgreSQL skipped: set {PG_ENV} to a server URL (source .ci/postgres.sh) to include it.")

    results: dict[str, dict[str, tuple[float, float]]] = {}
    for kind, (url, cleanup) in engines.items():
        print(f"{kind}: {make_url(url).render_as_string(hide_password=True)}", flush=True)
        engine = create_db_engine(url)
        try:
            results[kind] = run_engine(engine, args)
        finally:
            engine.dispose()
            cleanup()
    tmp.cleanup()

    kinds = list(results)
    print(f"\n{args.studies} studies, {args.sessions} reading sessions; median (max) ms; ratio = median / target")
    head = (
        f"{'measure':<36}"
        + "".join(f"{k:>22}" for k in kinds)
        + f"{'target':>9}"
        + "".join(f"{'ratio ' + k[:6]:>14}" for k in kinds)
    )
    print(head)
    for measure in results[kinds[0]]:
        target = TARGETS_MS.get(measure)
        cells = "".join(f"{results[k][measure][0]:>12.2f} ({results[k][measure][1]:>7.1f})" for k in kinds)
        ratios = "".join(f"{results[k][measure][0] / target:>14.2f}" if target else f"{'':>14}" for k in kinds)
        print(f"{measure:<36}{cells}{f'{target:.0f}' if target else '':>9}{ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
