"""Private files: the data directory and everything the service writes are 0700 (folders) / 0600 (files).

The data directory holds patient data, password hashes and the reader-study key. Two layers keep it
private: the service entry points set ``umask 077`` (``restrict_umask``: every file and folder a library
creates, the SQLite database, results and the queue included), and the inbox and quarantine create their
files and folders with explicit modes (``private_dir``, ``write_private``) whatever the caller's umask.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077


def restrict_umask() -> int:
    """Set the process umask to 077 (children inherit it); returns the previous one."""
    return os.umask(UMASK)


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents with mode 0700 (existing folders are left as they are)."""
    missing = []
    cur = Path(path)
    while not cur.exists():
        missing.append(cur)
        if cur.parent == cur:
            break
        cur = cur.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def secure_data_dir(data_dir: Path) -> Path:
    """Create the data directory 0700, or tighten an existing one that group or others could read."""
    private_dir(data_dir)
    mode = data_dir.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(data_dir, mode & 0o700)
    return data_dir


def write_private(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (temp file, fsync, rename) with mode 0600."""
    import uuid

    private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
