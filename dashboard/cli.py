"""``triage serve`` (the dashboard) and ``triage user add|list|enable|disable|unlock`` (local accounts).

Thin wrappers: ``serve()`` is a plain function (``triage demo`` calls it after building its data);
the account commands call ``dashboard.auth``.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Literal, overload

log = logging.getLogger(__name__)
APP = Path(__file__).resolve().parent / "app.py"
#: Theme of the reading room (dark, low glare); passed on the command line so no config file is needed.
THEME_FLAGS = (
    "--theme.base", "dark",
    "--theme.primaryColor", "#3d8bfd",
    "--theme.backgroundColor", "#0e1117",
    "--theme.secondaryBackgroundColor", "#1a2029",
    "--theme.textColor", "#e6ebf2",
)  # fmt: skip


class UnsafeSettings(RuntimeError):
    """The settings are unsafe outside demo mode (the message lists why)."""


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def exposure_warnings(host: str, settings) -> list[str]:
    """Loud warnings for a dashboard reachable beyond this machine without TLS (empty when safe)."""
    if host in LOOPBACK or (settings.tls_cert_file and settings.tls_key_file):
        return []
    return [
        f"WARNING: the dashboard listens on {host} WITHOUT TLS: passwords, sign-in cookies and patient data cross "
        "the network in clear text. Set TRIAGE_TLS_CERT_FILE and TRIAGE_TLS_KEY_FILE, or keep --host 127.0.0.1 "
        "behind an HTTPS reverse proxy."
    ]


def _tls_flags(settings) -> list[str]:
    if settings is None or not (settings.tls_cert_file and settings.tls_key_file):
        return []
    return ["--server.sslCertFile", str(settings.tls_cert_file), "--server.sslKeyFile", str(settings.tls_key_file)]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the Streamlit child gets SIGTERM if `triage serve` dies, even by SIGKILL."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class _Stop(Exception):
    """SIGTERM or SIGHUP reached ``triage serve``."""


def streamlit_command(port: int, host: str = "127.0.0.1", settings=None) -> list[str]:
    """The ``streamlit run`` command line for the dashboard (HTTPS when ``settings`` name a certificate)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(int(port)),
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "minimal",
        "--client.showErrorDetails", "none",
        # A full gc.collect() after every run (fragment runs too) held the GIL for ~100 ms per slice
        # change; Python's generational collector still runs as usual.
        "--runner.postScriptGC", "false",
        *THEME_FLAGS,
        *_tls_flags(settings),
    ]  # fmt: skip


@overload
def serve(
    port: int,
    host: str = ...,
    *,
    block: Literal[True] = ...,
    env: Mapping[str, str] | None = ...,
    output: IO[str] | None = ...,
) -> int: ...
@overload
def serve(
    port: int,
    host: str = ...,
    *,
    block: Literal[False],
    env: Mapping[str, str] | None = ...,
    output: IO[str] | None = ...,
) -> subprocess.Popen: ...
def serve(
    port: int,
    host: str = "127.0.0.1",
    *,
    block: bool = True,
    env: Mapping[str, str] | None = None,
    output: IO[str] | None = None,
) -> subprocess.Popen | int:
    """Start the dashboard server (``streamlit run dashboard/app.py``, headless).

    Args:
        port: TCP port.
        host: address to listen on (default loopback only).
        block: wait for the server to exit and return its exit code; otherwise return the ``Popen``.
        env: environment for the server (default: this process's); ``TRIAGE_*`` variables configure it.
        output: file receiving the server's stdout and stderr (default: inherited).

    Returns:
        The exit code (``block=True``) or the running process.

    Raises:
        UnsafeSettings: unsafe settings (placeholder secret, ...) outside demo mode.
    """

    environ = dict(os.environ if env is None else env)
    settings = _settings_from(environ)
    reasons = settings.unsafe_reasons()
    if reasons and not settings.demo_mode:
        raise UnsafeSettings(
            "refusing to serve the dashboard with unsafe settings (set TRIAGE_DEMO_MODE=1 only for a local demo):\n  "
            + "\n  ".join(reasons)
        )
    for warning in exposure_warnings(host, settings):
        print(warning, file=sys.stderr, flush=True)
        log.warning(warning)
    proc = subprocess.Popen(
        streamlit_command(port, host, settings),
        env=environ,
        cwd=str(APP.parents[1]),
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    if not block:
        return proc
    return _wait_forwarding_signals(proc)


def _wait_forwarding_signals(proc: subprocess.Popen) -> int:
    """Wait for the server; SIGTERM, SIGHUP or Ctrl-C stop it (terminate, then kill after 10 s)."""
    import signal
    import threading

    def stop(signum, frame):
        raise _Stop(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, stop)
    try:
        return proc.wait()
    except (KeyboardInterrupt, _Stop):
        proc.terminate()
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _settings_from(environ: Mapping[str, str]):
    """Settings as the server process will see them (its environment, not ours)."""
    from inference.config import Settings

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(environ)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        return int(serve(args.port, args.host, block=True))
    except UnsafeSettings as exc:
        print(f"triage serve: {exc}", file=sys.stderr)
        return 2


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise ValueError("the passwords differ")
    return first


def _session():
    from sqlmodel import Session

    from db.session import get_engine

    return Session(get_engine(), expire_on_commit=False)


def _cmd_user_add(args: argparse.Namespace) -> int:
    from dashboard.auth import add_user
    from db.session import SchemaError

    try:
        password = _read_password(args)
        with _session() as s:
            user = add_user(session=s, username=args.name, password=password, role=args.role)
    except (ValueError, SchemaError) as exc:
        print(f"triage user add: {exc}", file=sys.stderr)
        return 2
    print(f"created {user.username} ({'admin' if user.is_admin else 'radiologist'})")
    return 0


def _cmd_user_passwd(args: argparse.Namespace) -> int:
    import secrets

    from dashboard.auth import set_password
    from db.session import SchemaError

    try:
        password = secrets.token_urlsafe(12) if args.generate else _read_password(args)
        with _session() as s:
            ok = set_password(session=s, username=args.name, password=password)
    except (ValueError, SchemaError) as exc:
        print(f"triage user passwd: {exc}", file=sys.stderr)
        return 2
    if not ok:
        print(f"triage user passwd: no user {args.name!r}", file=sys.stderr)
        return 2
    shown = f": {password}" if args.generate else ""
    print(f"password of {args.name} changed{shown} (its open sign-ins are ended)")
    return 0


def _cmd_user_list(args: argparse.Namespace) -> int:
    from db import queries

    with _session() as s:
        for u in queries.list_users(session=s):
            print(f"{u.username}\t{'admin' if u.role == 'admin' else 'radiologist'}\t{'active' if u.active else 'off'}")
    return 0


def _cmd_user_active(args: argparse.Namespace) -> int:
    from db import queries

    with _session() as s:
        ok = queries.set_user_active(session=s, username=args.name, active=args.action == "enable")
    if not ok:
        print(f"triage user {args.action}: no user {args.name!r}", file=sys.stderr)
        return 2
    return 0


def _cmd_user_unlock(args: argparse.Namespace) -> int:
    from db import throttle

    with _session() as s:
        was_locked = throttle.unlock(session=s, username=args.name, actor="cli")
    print(f"{args.name}: {'unlocked' if was_locked else 'was not locked (back-off cleared)'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``serve`` and ``user`` to the ``triage`` command line."""
    p = sub.add_parser("serve", help="run the dashboard (Streamlit) on localhost")
    p.add_argument("--port", type=int, default=8501, help="TCP port (default 8501)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.set_defaults(func=_cmd_serve)

    user = sub.add_parser("user", help="manage dashboard accounts")
    usub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = usub.add_parser("add", help="create an account (asks for the password)")
    add.add_argument("name")
    add.add_argument("--role", choices=("radiologist", "admin"), default="radiologist")
    add.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    add.set_defaults(func=_cmd_user_add)
    pw = usub.add_parser("passwd", help="set a new password (asks for it; --generate makes and prints one)")
    pw.add_argument("name")
    how = pw.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    how.add_argument("--generate", action="store_true", help="generate a random password and print it")
    pw.set_defaults(func=_cmd_user_passwd)
    usub.add_parser("list", help="list accounts").set_defaults(func=_cmd_user_list)
    q = usub.add_parser("unlock", help="lift a sign-in lockout (after too many failed sign-ins)")
    q.add_argument("name")
    q.set_defaults(func=_cmd_user_unlock)
    for action in ("enable", "disable"):
        q = usub.add_parser(action, help=f"{action} an account")
        q.add_argument("name")
        q.set_defaults(func=_cmd_user_active, action=action)
