"""Where DICOM bytes come from: files, folders (recursively) and zip archives.

A ``Source`` names one candidate file and can open it again later, so headers can be scanned first and
pixels read only for the series that is selected.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SKIP_NAMES = {".DS_Store", "Thumbs.db", "DICOMDIR"}


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

    def read_bytes(self) -> bytes:
        if self.member is None:
            return self.path.read_bytes()
        with zipfile.ZipFile(self.path) as zf:
            return zf.read(self.member)

    def open(self) -> BinaryIO:
        """A binary file object positioned at the start (the caller closes it)."""
        if self.member is None:
            return open(self.path, "rb")
        return io.BytesIO(self.read_bytes())


def _is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip" and zipfile.is_zipfile(path)


def iter_sources(paths: Iterable[Path | str]) -> Iterator[Source]:
    """Every candidate file under ``paths`` (files, folders walked recursively, zip members), sorted.

    Raises:
        FileNotFoundError: if a given path does not exist.
    """
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.name in SKIP_NAMES or f.name.startswith("._"):
                continue
            if _is_zip(f):
                with zipfile.ZipFile(f) as zf:
                    for info in sorted(zf.infolist(), key=lambda i: i.filename):
                        name = Path(info.filename).name
                        if info.is_dir() or name in SKIP_NAMES or name.startswith("._"):
                            continue
                        yield Source(f, info.filename)
            else:
                yield Source(f)
