"""Where DICOM bytes come from: files, folders (recursively) and zip archives.

A ``Source`` names one candidate file and can open it again later, so headers can be scanned first and
pixels read only for the series that is selected.

Safety: inside a folder, symbolic links are never followed (a link to ``/etc/passwd`` is skipped with a
reason, never read). Zip archives are checked against ``IntakeLimits`` before anything is decompressed
(member count, per-member size, compression ratio, total uncompressed size) and members are read in chunks
with a hard cap, so a zip bomb is refused after reading at most one limit's worth of bytes.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from inference.config import IntakeLimits

SKIP_NAMES = {".DS_Store", "Thumbs.db", "DICOMDIR"}
CHUNK = 1 << 20


class TooLarge(ValueError):
    """A file or zip member is larger than the intake limit allows (the message names the limit)."""


@dataclass(frozen=True)
class Skipped:
    """A path or zip member that was not read, and why."""

    label: str
    reason: str


@dataclass(frozen=True)
class Source:
    """One file on disk, or one member of a zip archive on disk."""

    path: Path
    member: str | None = None

    @property
    def label(self) -> str:
        return f"{self.path}!{self.member}" if self.member else str(self.path)

    @property
    def name(self) -> str:
        return Path(self.member).name if self.member else self.path.name

    def read_bytes(self, limit: int | None = None) -> bytes:
        """The bytes, read in chunks; more than ``limit`` bytes raise ``TooLarge`` (nothing more is read).

        Raises:
            TooLarge: the file or member is larger than ``limit``.
            OSError: unreadable.
        """
        with self._raw() as fh:
            parts, size = [], 0
            while chunk := fh.read(CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise TooLarge(f"larger than the per-file limit of {limit} bytes (TRIAGE_INTAKE__MAX_FILE_BYTES)")
                parts.append(chunk)
        return b"".join(parts)

    def _raw(self) -> BinaryIO:
        if self.member is None:
            return open(self.path, "rb")
        zf = zipfile.ZipFile(self.path)
        try:
            fh = zf.open(self.member)
        except BaseException:
            zf.close()
            raise
        return _ClosingMember(fh, zf)  # type: ignore[return-value]  # a readable raw stream, used as BinaryIO

    def open(self) -> BinaryIO:
        """A binary file object positioned at the start (the caller closes it)."""
        if self.member is None:
            return open(self.path, "rb")
        return io.BytesIO(self.read_bytes())


class _ClosingMember(io.RawIOBase):
    """A zip member stream that also closes its archive."""

    def __init__(self, fh: IO[bytes], zf: zipfile.ZipFile):
        super().__init__()
        self._fh, self._zf = fh, zf

    def read(self, size: int = -1) -> bytes:
        return self._fh.read(size)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        try:
            self._fh.close()
        finally:
            self._zf.close()
            super().close()


def _is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip" and zipfile.is_zipfile(path)


def _walk(folder: Path, skipped: list[Skipped]) -> list[Path]:
    """Regular files under ``folder``; symbolic links (to files or folders) are skipped, never followed."""
    files = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        base = Path(root)
        for d in list(dirs):
            if (base / d).is_symlink():
                skipped.append(Skipped(str(base / d), "symbolic link to a folder, not followed"))
                dirs.remove(d)
        for n in names:
            p = base / n
            if p.is_symlink():
                skipped.append(Skipped(str(p), "symbolic link, not followed"))
            elif p.is_file():
                files.append(p)
    return sorted(files)


def _zip_members(path: Path, limits: IntakeLimits, skipped: list[Skipped]) -> list[str]:
    """The members of a zip that pass the limits, judged from the central directory before decompressing."""
    with zipfile.ZipFile(path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > limits.max_zip_members:
        skipped.append(
            Skipped(
                str(path),
                f"zip refused: {len(infos)} members, above the limit of {limits.max_zip_members} "
                "(TRIAGE_INTAKE__MAX_ZIP_MEMBERS)",
            )
        )
        return []
    members, total = [], 0
    for info in sorted(infos, key=lambda i: i.filename):
        name = Path(info.filename).name
        if name in SKIP_NAMES or name.startswith("._"):
            continue
        label = f"{path}!{info.filename}"
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.max_file_bytes:
            why = (
                f"zip member refused: {info.file_size} bytes uncompressed, above the per-file limit of "
                f"{limits.max_file_bytes} (TRIAGE_INTAKE__MAX_FILE_BYTES)"
            )
        elif ratio > limits.max_zip_ratio:
            why = (
                f"zip member refused: compression ratio {ratio:.0f}:1, above the limit of {limits.max_zip_ratio:g}:1 "
                "(TRIAGE_INTAKE__MAX_ZIP_RATIO; a zip bomb?)"
            )
        elif total + info.file_size > limits.max_zip_total_bytes:
            why = (
                f"zip member refused: the archive would exceed {limits.max_zip_total_bytes} bytes uncompressed "
                "(TRIAGE_INTAKE__MAX_ZIP_TOTAL_BYTES)"
            )
        else:
            total += info.file_size
            members.append(info.filename)
            continue
        skipped.append(Skipped(label, why))
    return members


def iter_sources(
    paths: Iterable[Path | str],
    *,
    limits: IntakeLimits | None = None,
    skipped: list[Skipped] | None = None,
) -> Iterator[Source]:
    """Every candidate file under ``paths`` (files, folders walked recursively, zip members), sorted.

    Args:
        paths: files, folders or zips as given (a path given directly may itself be a link).
        limits: intake limits for zips and file sizes (default: ``IntakeLimits()``).
        skipped: receives what was not yielded and why (links inside folders, refused zip members).

    Raises:
        FileNotFoundError: if a given path does not exist.
    """
    limits = limits or IntakeLimits()
    skipped = skipped if skipped is not None else []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        files = _walk(path, skipped) if path.is_dir() else [path]
        for f in files:
            if f.name in SKIP_NAMES or f.name.startswith("._"):
                continue
            if _is_zip(f):
                for member in _zip_members(f, limits, skipped):
                    yield Source(f, member)
            else:
                yield Source(f)
