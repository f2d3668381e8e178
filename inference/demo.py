"""``triage demo``: build a demo data directory end to end, then serve the dashboard.

1. synthetic chest CTs with known truth (PE-positive CTPAs, nodules of several textures, negatives, and one
   deliberately broken study that must come out *unsuitable*) are written as DICOM;
2. they and the real LIDC-IDRI samples (``assets/samples/lidc``) go through the real importer into the inbox,
   the database and the queue;
3. the real queue worker analyses them (ONNX models, SEG/SR outputs);
4. a demo reader account is created (password printed once) and a *simulated* reading history is added so
   the analytics page has something to show (it is labelled simulated there);
5. the dashboard is served on localhost.

The directory is ``var/demo`` in the project (or ``TRIAGE_DATA_DIR``); a second run reuses it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.config import PROJECT_ROOT, Settings, get_settings

log = logging.getLogger(__name__)

DEMO_USER = "demo"
MARKER = ".demo-built.json"
SAMPLES = PROJECT_ROOT / "assets" / "samples" / "lidc"

# (label, seed, contrast, lesions) — lesions as accepted by inference.synth.generate_study
DEMO_CASES: list[tuple[str, int, str, str | list[Any]]] = [
    ("central PE", 9101, "ctpa", [{"kind": "embolism", "level": "central", "occlusive": False}]),
    ("lobar PE", 9102, "ctpa", [{"kind": "embolism", "level": "lobar", "occlusive": True}]),
    ("solid nodule", 9103, "none", [{"kind": "nodule", "texture": "solid", "diameter_mm": 14.0}]),
    ("part-solid nodule", 9104, "none", [{"kind": "nodule", "texture": "part-solid", "diameter_mm": 18.0}]),
    ("ground-glass nodule", 9105, "none", [{"kind": "nodule", "texture": "ground-glass", "diameter_mm": 16.0}]),
    ("negative CTPA", 9106, "ctpa", "none"),
    ("negative non-contrast", 9107, "none", "none"),
]


def demo_settings() -> Settings:
    """Settings for the demo: ``var/demo`` unless TRIAGE_DATA_DIR is set; demo mode on.

    Set in this process's environment too, so the queue worker's tasks (which read the settings
    themselves) and the dashboard server see the same directory.
    """
    os.environ.setdefault("TRIAGE_DATA_DIR", str(PROJECT_ROOT / "var" / "demo"))
    os.environ["TRIAGE_DEMO_MODE"] = "1"
    get_settings.cache_clear()
    return get_settings()


def _progress(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def write_synthetic_cases(out: Path, size: str) -> list[dict]:
    """Write the demo's synthetic studies as DICOM (plus ground truth) under ``out``; one is made unusable."""
    from inference.synth.output import write_study
    from inference.synth.study import generate_study

    rows = []
    for n, (label, seed, contrast, lesions) in enumerate(DEMO_CASES, start=1):
        t = time.perf_counter()
        study = generate_study(seed, contrast=contrast, size=size, lesions=lesions, case_number=900 + n)
        row = write_study(study, out / f"case_{n:02d}", case_number=900 + n, preview=False)
        row["label"] = label
        rows.append(row)
        _progress(f"synthetic case {n}/{len(DEMO_CASES) + 1}: {label} ({time.perf_counter() - t:.1f} s)")
    # A broken study: every fourth slice missing (as if the transfer from the scanner was cut) -> unsuitable.
    study = generate_study(9199, contrast="none", size=size, lesions="none", case_number=999)
    row = write_study(study, out / "case_broken", case_number=999, preview=False)
    files = sorted((out / "case_broken" / "dicom").glob("*.dcm"))
    withheld = out / "case_broken" / "withheld"  # kept beside, never sent
    withheld.mkdir()
    for f in files[5 : len(files) - 5 : 4]:
        f.rename(withheld / f.name)
    row["label"] = "broken transfer (slices missing)"
    rows.append(row)
    _progress("synthetic case 8/8: broken transfer")
    return rows


def wait_until_analysed(settings: Settings, timeout_s: float) -> dict[str, int]:
    """Run the queue worker until no study is queued or analysing (or the timeout); returns status counts."""
    import sqlalchemy as sa
    from sqlmodel import col

    from db.models import Study
    from db.session import session_scope
    from inference.intake import open_database
    from inference.worker import make_consumer

    engine = open_database(settings)
    consumer = make_consumer(settings, workers=1)
    consumer.start()
    deadline = time.monotonic() + timeout_s
    counts: dict[str, int] = {}
    try:
        while time.monotonic() < deadline:
            with session_scope(engine) as session:
                status = col(Study.status)
                counts = dict(session.execute(sa.select(status, sa.func.count()).group_by(status)).all())
            busy = counts.get("queued", 0) + counts.get("analysing", 0) + counts.get("received", 0)
            if busy == 0:
                break
            time.sleep(1.0)
    finally:
        consumer.stop(graceful=True)
    return counts


def build_demo(settings: Settings, *, size: str = "medium", timeout_s: float = 1800) -> dict:
    """Build the demo data directory (idempotent: a built directory is reused)."""
    from db.session import session_scope
    from inference.dicom.inbox import ingest_paths
    from inference.intake import open_database, register_ingested

    marker = settings.data_dir / MARKER
    if marker.exists():
        return json.loads(marker.read_text())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_database(settings)
    incoming = settings.data_dir / "incoming"
    rows = write_synthetic_cases(incoming / "synthetic", size)
    sources = [Path(r["path"]) / "dicom" for r in rows] + sorted(SAMPLES.glob("*.zip"))
    report = ingest_paths(sources, settings=settings)
    queued = register_ingested(report, settings=settings)
    _progress(f"ingested {report.count('stored')} files, {len(queued)} studies queued; analysing (CPU)...")
    t = time.perf_counter()
    counts = wait_until_analysed(settings, timeout_s)
    _progress(f"analysed in {time.perf_counter() - t:.0f} s: {counts}")

    from dashboard.auth import add_user
    from dashboard.simulate import simulate_reading_history

    password = secrets.token_urlsafe(9)
    with session_scope(engine) as session:
        add_user(session=session, username=DEMO_USER, password=password, role="radiologist")
        sim = simulate_reading_history(session=session, rng=np.random.default_rng(7))
    info = {"user": DEMO_USER, "cases": [r["label"] for r in rows], "status_counts": counts, "simulated": sim}
    marker.write_text(json.dumps(info, indent=2, default=str))
    return info | {"password": password}  # in memory only: shown once at the end of `triage demo`


def cmd_demo(args: argparse.Namespace) -> int:
    settings = demo_settings()
    _progress(f"data directory {settings.data_dir}")
    try:
        info = build_demo(settings, size=args.size)
    except ModuleNotFoundError as exc:
        print(f"error: the demo needs {exc.name}; run `make demo` (it installs everything)", file=sys.stderr)
        return 2
    if args.no_serve:
        print(closing_lines(settings, None, info.get("password")))
        return 0
    from dashboard.cli import serve

    env = {**os.environ, "TRIAGE_DATA_DIR": str(settings.data_dir), "TRIAGE_DEMO_MODE": "1"}
    log_path = settings.data_dir / "dashboard.log"
    with open(log_path, "a") as log:  # the server's own lines go there, so the instructions end the output
        proc = serve(args.port, env=env, block=False, output=log)
        if not wait_for_health(args.port, timeout_s=60):
            print(f"error: the dashboard did not start; see {log_path}", file=sys.stderr)
            proc.terminate()
            return 1
        print(closing_lines(settings, args.port, info.get("password")), flush=True)
        try:
            return int(proc.wait())
        except KeyboardInterrupt:
            proc.terminate()
            return int(proc.wait(timeout=10))


def wait_for_health(port: int, *, timeout_s: float) -> bool:
    """Poll the dashboard's health endpoint until it answers (True) or ``timeout_s`` passes (False)."""
    import urllib.request

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def closing_lines(settings: Settings, port: int | None, password: str | None) -> str:
    """What ``triage demo`` prints last: the URL, the account, how to reset its password and to stop."""
    data_dir = settings.data_dir
    secret = (
        f"password {password}  (shown this once; stored only as an Argon2 hash)"
        if password
        else "password: the one printed when this demo was first built"
    )
    lines = ["", "=" * 72, "Chest CT triage demo (research software, not a medical device)"]
    if port is not None:
        lines.append(f"  Dashboard:  http://localhost:{port}")
    lines += [
        f"  Account:    {DEMO_USER}, {secret}",
        f"  New password: TRIAGE_DATA_DIR={data_dir} .venv/bin/triage user passwd {DEMO_USER} --generate",
        f"  Data:       {data_dir}  (delete it to rebuild the demo from scratch)",
    ]
    if port is not None:
        lines += [f"  Server log: {data_dir / 'dashboard.log'}", "  Stop:       Ctrl-C in this terminal"]
    lines.append("=" * 72)
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="build demo studies (synthetic + real samples), triage them and serve the dashboard",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--size", default="medium", choices=["small", "medium", "full"], help="synthetic study size")
    p.add_argument("--no-serve", action="store_true", help="build the data directory only")
    p.set_defaults(func=cmd_demo)
