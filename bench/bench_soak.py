"""Benchmark: queue throughput of real `triage worker` processes, in studies per minute, with 1 and 3 workers.

Tiny synthetic studies (10 x 32 x 32, so the run measures the queue, lease and database path around a
~1 s analysis), ingested in two batches while the workers run. PostgreSQL + Redis when
``TRIAGE_TEST_POSTGRES_URL`` / ``TRIAGE_TEST_REDIS_URL`` are set (``source .ci/postgres.sh .ci/redis.sh``),
else the embedded SQLite database and queue. No kills here: ``tests/soak/test_soak.py`` adds those.

Usage: ``.venv/bin/python bench/bench_soak.py [--studies 30] [--workers 1 3]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from tests.soak.harness import fresh_backends, run_soak

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    pg, rd = os.environ.get("TRIAGE_TEST_POSTGRES_URL"), os.environ.get("TRIAGE_TEST_REDIS_URL")
    backend = "PostgreSQL + Redis" if pg and rd else "SQLite + SQLite queue"
    print(f"soak throughput, {args.studies} tiny studies, {backend}, {os.cpu_count()} CPU(s)")
    rates = {}
    for n in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            env = fresh_backends(pg, rd, f"bench{n}") if pg and rd else {}
            result = run_soak(Path(tmp), n_studies=args.studies, workers=n, env=env, timeout_s=900)
        rates[n] = result.studies_per_minute
        status = "ok" if not result.problems else f"PROBLEMS: {result.problems[:3]}"
        print(f"  {n} worker(s): {result.seconds:.1f} s, {rates[n]:.1f} studies/min ({status})")
    if len(rates) > 1:
        lo, hi = min(rates), max(rates)
        print(f"  ratio {hi} vs {lo} worker(s): {rates[hi] / rates[lo]:.2f}x")


if __name__ == "__main__":
    main()
