"""Multi-worker soak harness: real `triage worker` processes on a shared database and queue, with SIGKILLs of
workers and re-sends of studies; the test (tests/soak/test_soak.py) and the benchmark (bench/bench_soak.py)
both drive it.

Nothing is stubbed: studies are tiny synthetic CT series (so the real ONNX pipeline takes about a second
each on two cores), ingested with `triage ingest`, analysed by `triage worker` processes, and judged from the
database: every study must end analysed, once per version of its files, with nothing lost.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (10, 32, 32)  # slices, rows, columns: the smallest study the quality gate accepts (min 8 slices)


@dataclass
class SoakResult:
    """What a soak run measured and found."""

    studies: int
    workers: int
    seconds: float
    kills: int = 0
    identical_resends: int = 0
    changed_resends: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def studies_per_minute(self) -> float:
        return 60.0 * self.studies / self.seconds if self.seconds else 0.0


def make_studies(root: Path, n: int, seed: int = 0) -> list[tuple[str, Path]]:
    """``n`` tiny synthetic studies under ``root`` (one folder each); returns (study UID, folder)."""
    from tests.factories import make_volume, write_study

    out = []
    for i in range(n):
        vol, _ = write_study(root / f"s{i:03d}", make_volume(shape=SHAPE, seed=seed + i, uid_tag=f"soak{i}"))
        out.append((vol.study_uid, root / f"s{i:03d}"))
    return out


def extra_instance(study_dir: Path, out: Path, tag: str) -> Path:
    """A copy of one instance of ``study_dir`` as a new SOP instance of the same series (a late slice)."""
    import pydicom

    from inference.dicom.ct_writer import derived_uid

    files = sorted(study_dir.glob("*.dcm"))
    lowest = min(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files)
    ds = pydicom.dcmread(files[0])
    ds.SOPInstanceUID = derived_uid(str(ds.SOPInstanceUID), tag)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], lowest - SHAPE_STEP]
    ds.InstanceNumber = 0
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


SHAPE_STEP = 2.0  # make_volume's default slice spacing (mm)


def cli(*args: str, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "inference.cli", *map(str, args)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fresh_backends(pg_url: str | None, redis_url: str | None, tag: str) -> dict[str, str]:
    """Environment for a fresh PostgreSQL database and an empty Redis database (or {} for SQLite files)."""
    env: dict[str, str] = {}
    if pg_url:
        name = f"soak_{tag}_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
        admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        env["TRIAGE_DATABASE_URL"] = pg_url.rsplit("/", 1)[0] + "/" + name
    if redis_url:
        import redis

        env["TRIAGE_QUEUE_URL"] = redis_url.rsplit("/", 1)[0] + "/" + str(os.getpid() % 13 + 2)
        redis.Redis.from_url(env["TRIAGE_QUEUE_URL"]).flushdb()
    return env


class Workers:
    """``n`` real `triage worker` processes, each in its own process group; kill and restart them at will."""

    def __init__(self, n: int, env: dict, log: Path):
        self.env, self.log = env, open(log, "a")  # noqa: SIM115
        self.procs = [self._start() for _ in range(n)]

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "inference.cli", "worker"],
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill_and_restart(self, rng: random.Random) -> None:
        i = rng.randrange(len(self.procs))
        os.killpg(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait(timeout=10)
        self.procs[i] = self._start()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.log.close()


def _state(engine) -> dict[str, dict]:
    with engine.connect() as c:
        rows = c.execute(
            sa.text(
                "SELECT s.study_uid, s.status, s.analysis_version, s.analysed_fingerprint, s.lease_owner, "
                "(SELECT count(*) FROM analysis_run r WHERE r.study_id = s.id AND r.error IS NULL) AS ok_runs, "
                "(SELECT count(*) FROM analysis_run r WHERE r.study_id = s.id AND r.error IS NOT NULL) AS bad_runs, "
                "(SELECT count(*) FROM audit_event a WHERE a.study_id = s.id AND a.action = 'analysed') AS audits "
                "FROM study s"
            )
        ).mappings()
        return {r["study_uid"]: dict(r) for r in rows}


def run_soak(
    work: Path,
    *,
    n_studies: int,
    workers: int,
    env: dict[str, str],
    kill_every_s: float | None = None,
    identical_resends: int = 0,
    changed_resends: int = 0,
    timeout_s: float = 240.0,
    seed: int = 17,
) -> SoakResult:
    """Ingest ``n_studies`` tiny studies, analyse them with ``workers`` real worker processes, optionally
    SIGKILL a random worker every ``kill_every_s`` seconds (restarting it) and re-send studies (identical, or
    with one new instance), wait until everything is analysed and judge the database.

    Returns:
        The result; ``problems`` lists every study not analysed exactly once per version of its files.
    """
    from inference.dicom.inbox import inbox_fingerprint

    rng = random.Random(seed)
    data = work / "data"
    env = {
        "TRIAGE_DATA_DIR": str(data),
        "TRIAGE_LEASE_TTL_S": "5",
        "TRIAGE_TASK_RETRY_DELAY_S": "1",
        "TRIAGE_ONNX_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    studies = make_studies(work / "studies", n_studies, seed)
    out = cli("db", "upgrade", env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    url = env.get("TRIAGE_DATABASE_URL") or f"sqlite:///{data / 'triage.db'}"
    engine = sa.create_engine(url)
    result = SoakResult(studies=n_studies, workers=workers, seconds=0.0)
    pool = Workers(workers, env, work / "workers.log")
    t0 = time.monotonic()
    try:
        half = n_studies // 2  # half arrive before the workers get going, half while they run and get killed
        _checked(cli("ingest", *[path for _, path in studies[:half]], env=env))
        resend = rng.sample(studies, identical_resends + changed_resends)
        identical, changed = resend[:identical_resends], resend[identical_resends:]
        batches: list[tuple[str, list]] = [("ingest", studies[half:])]
        if identical:
            batches.append(("same", identical))
        if changed:
            batches.append(("new", changed))
        next_kill = time.monotonic() + (kill_every_s or 0)
        running: subprocess.Popen | None = None  # the ingest in flight (the kills go on meanwhile)
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            now = time.monotonic()
            if kill_every_s and now >= next_kill:
                pool.kill_and_restart(rng)
                result.kills += 1
                next_kill = now + kill_every_s * rng.uniform(0.5, 1.5)
            if running is not None and running.poll() is not None:
                if running.returncode != 0:
                    raise RuntimeError(f"triage ingest failed: {(work / 'ingest.log').read_text()[-2000:]}")
                running = None
            if running is None and batches:
                kind, items = batches.pop(0)
                if kind == "new":  # studies already analysed get one more instance each: a new analysis version
                    state = _state(engine)
                    done = [(u, p) for u, p in studies if (state.get(u) or {}).get("status") == "ready"]
                    if len(done) < len(items):
                        batches.insert(0, (kind, items))  # not yet: wait until enough studies are analysed
                        time.sleep(0.5)
                        continue
                    items = rng.sample(done, len(items))
                    paths = [extra_instance(path, work / "extra" / uid[-12:], "late").parent for uid, path in items]
                    result.changed_resends += [uid for uid, _ in items]
                else:  # the second half arriving, or the same files again (nothing may change)
                    paths = [path for _, path in items]
                    result.identical_resends += len(items) if kind == "same" else 0
                running = _ingest_async(paths, env, work / "ingest.log")
            if running is None and not batches and _settled(_state(engine), studies, data, inbox_fingerprint):
                break
            time.sleep(0.5)
        result.seconds = time.monotonic() - t0
    finally:
        pool.stop()
    state = _state(engine)
    engine.dispose()
    result.problems = _judge(state, studies, set(result.changed_resends), data, inbox_fingerprint)
    if time.monotonic() >= t0 + timeout_s:
        result.problems.append(f"not settled within {timeout_s:.0f} s")
    return result


def _ingest_async(paths: list[Path], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "inference.cli", "ingest", *map(str, paths)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def _checked(out: subprocess.CompletedProcess) -> None:
    if out.returncode != 0:
        raise RuntimeError(f"triage failed: {out.stderr[-2000:]}")


def _settled(state: dict, studies: list, data: Path, fingerprint) -> bool:
    for uid, _ in studies:
        row = state.get(uid)
        if row is None or row["status"] != "ready" or row["lease_owner"] is not None:
            return False
        if row["analysed_fingerprint"] != fingerprint(data / "inbox" / uid):
            return False
    return True


def _judge(state: dict, studies: list, changed: set[str], data: Path, fingerprint) -> list[str]:
    problems = []
    for uid, _ in studies:
        row = state.get(uid)
        if row is None:
            problems.append(f"{uid[-12:]}: lost (not in the database)")
            continue
        versions = 2 if uid in changed else 1
        if row["status"] != "ready":
            problems.append(f"{uid[-12:]}: status {row['status']}")
        if row["ok_runs"] != versions or row["analysis_version"] != versions or row["audits"] != versions:
            problems.append(
                f"{uid[-12:]}: {row['ok_runs']} successful runs / version {row['analysis_version']} / "
                f"{row['audits']} 'analysed' audits, expected {versions}"
            )
        if row["bad_runs"]:
            problems.append(f"{uid[-12:]}: {row['bad_runs']} failed run(s)")
        if row["analysed_fingerprint"] != fingerprint(data / "inbox" / uid):
            problems.append(f"{uid[-12:]}: its latest files were not analysed")
    return problems


def cleanup(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
