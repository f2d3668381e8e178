"""Intake hardening (#17.3, #17.7, #17.10): zip-bomb limits, links not followed, private file modes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from inference.config import IntakeLimits, Settings
from inference.dicom.inbox import ingest_paths
from tests.factories import write_study

ROOT = Path(__file__).resolve().parents[3]


def _limited(tmp_path, **limits) -> Settings:
    return Settings(data_dir=tmp_path / "data", intake=IntakeLimits(**limits))


def _bomb(path: Path, size: int, name: str = "zeros.dcm") -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name, "w", force_zip64=True) as fh:
            block = bytes(1 << 20)
            for _ in range(size >> 20):
                fh.write(block)
    return path


def _reasons(settings) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(settings.quarantine_dir.glob("*.reason.json"))]


def test_zip_bomb_is_refused_by_ratio_without_decompressing(tmp_path):
    """Test that a small zip of 64 MiB of zeros is refused on its compression ratio, with the limit named in
    the reason, nothing decompressed into memory and nothing but a reason file written."""
    bomb = _bomb(tmp_path / "bomb.zip", 64 << 20)
    assert bomb.stat().st_size < 1 << 20
    settings = _limited(tmp_path, max_zip_ratio=50)
    tracemalloc.start()
    report = ingest_paths([bomb], settings=settings)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20
    (out,) = report.outcomes
    assert out.status == "refused" and "compression ratio" in out.reason and "MAX_ZIP_RATIO" in out.reason
    assert report.to_dict()["refused"][0]["reason"] == out.reason
    files = [p for p in settings.data_dir.rglob("*") if p.is_file()]
    assert [p.name.endswith(".reason.json") for p in files] == [True]
    assert _reasons(settings)[0]["kept"] is False


@pytest.mark.parametrize(
    ("limits", "needle"),
    [
        ({"max_file_bytes": 2 << 20}, "per-file limit"),
        ({"max_zip_total_bytes": 4 << 20}, "MAX_ZIP_TOTAL_BYTES"),
        ({"max_zip_members": 2}, "3 members"),
    ],
)
def test_each_zip_limit_is_enforced_and_named(tmp_path, limits, needle):
    """Test that the per-file, total and member-count limits each refuse an archive, naming the limit."""
    z = tmp_path / "many.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(3):
            zf.writestr(f"m{i}.dcm", os.urandom(3 << 20))
    settings = _limited(tmp_path, **limits)
    report = ingest_paths([z], settings=settings)
    refused = [o for o in report.outcomes if o.status == "refused"]
    assert refused and all(needle in o.reason or "limit" in o.reason for o in refused)
    assert any(needle in o.reason for o in refused)
    assert not settings.inbox_dir.exists()


def test_a_member_that_lies_about_its_size_is_cut_at_the_limit(tmp_path):
    """Test that streaming enforces the per-file cap even for a plain (non-zip) file that is too large."""
    big = tmp_path / "big.dcm"
    big.write_bytes(os.urandom(2 << 20))
    settings = _limited(tmp_path, max_file_bytes=1 << 20)
    (out,) = ingest_paths([big], settings=settings).outcomes
    assert out.status == "refused" and "per-file limit of 1048576" in out.reason


def test_quarantine_quota_keeps_only_the_reason(tmp_path):
    """Test that beyond the quarantine quota a bad file's bytes are not kept, only its reason (saying so)."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"junk{i}.txt").write_bytes(os.urandom(40_000))
    settings = _limited(tmp_path, quarantine_quota_bytes=100_000)
    report = ingest_paths([src], settings=settings)
    assert report.count("quarantined") == 3
    kept = [r for r in _reasons(settings) if r["kept"]]
    dropped = [r for r in _reasons(settings) if not r["kept"]]
    assert len(kept) == 2 and len(dropped) == 1 and "QUARANTINE_QUOTA_BYTES" in dropped[0]["not_kept_because"]
    assert sum(p.stat().st_size for p in settings.quarantine_dir.iterdir() if not p.name.endswith(".json")) <= 100_000


def test_links_inside_an_ingested_folder_are_not_followed(tmp_path, settings):
    """Test that a file link to /etc/passwd and a folder link out of the tree are skipped with a reason, their
    targets never read or copied, while the real files are stored."""
    _, paths = write_study(tmp_path / "s")
    outside = tmp_path / "outside"
    _, other = write_study(outside, headers={"PatientID": "NOT-IN-THIS-FOLDER"})
    (tmp_path / "s" / "passwd.dcm").symlink_to("/etc/passwd")
    (tmp_path / "s" / "elsewhere").symlink_to(outside, target_is_directory=True)
    report = ingest_paths([tmp_path / "s"], settings=settings)
    assert report.count("stored") == len(paths)
    refused = {Path(str(o.path)).name: o.reason for o in report.outcomes if o.status == "refused"}
    assert refused == {
        "passwd.dcm": "symbolic link, not followed",
        "elsewhere": "symbolic link to a folder, not followed",
    }
    secret = Path("/etc/passwd").read_bytes()
    for f in settings.data_dir.rglob("*"):
        if f.is_file():
            assert secret not in f.read_bytes()


def test_everything_written_is_private_even_under_a_lax_umask(tmp_path, settings):
    """Test that inbox and quarantine folders are 0700 and their files 0600 when the caller's umask is 022."""
    _, paths = write_study(tmp_path / "s")
    (tmp_path / "s" / "junk.txt").write_text("not dicom")
    old = os.umask(0o022)
    try:
        ingest_paths([tmp_path / "s"], settings=settings)
    finally:
        os.umask(old)
    for p in [settings.data_dir, *settings.data_dir.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))


def test_cli_ingest_leaves_data_dir_database_and_queue_private(tmp_path):
    """Test that `triage ingest` run with umask 022 leaves the data directory 0700 and the SQLite database,
    the queue and the inbox files without any group or other permission."""
    _, paths = write_study(tmp_path / "s")
    data = tmp_path / "data"
    code = "import os, sys; os.umask(0o022); from inference.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "TRIAGE_DATA_DIR": str(data)}
    out = subprocess.run(
        [sys.executable, "-c", code, "ingest", str(tmp_path / "s")], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert (data / "triage.db").exists() and (data / "queue.db").exists()
    for p in data.rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, (p, oct(p.stat().st_mode))
