"""``triage peers check``: is every configured peer reachable the way we use it?

C-ECHO for a peer with a DICOM address, an authenticated QIDO-RS request for a peer with a DICOMweb URL.
Each check says plainly what failed; credentials are never shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.config import Peer, Settings
from inference.peers import PeerError


@dataclass
class CheckResult:
    """One check of one peer."""

    peer: str
    check: str  # "C-ECHO" or "HTTP"
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.peer:<16} {self.check:<7} {self.detail}"


def check_peer(peer: Peer, settings: Settings) -> list[CheckResult]:
    """C-ECHO and/or HTTP check of one peer."""
    from inference.peers import dimse, web

    out = []
    if peer.has_dimse:
        try:
            dimse.echo(peer, settings)
            out.append(CheckResult(peer.name, "C-ECHO", True, f"{peer.ae_title}@{peer.host}:{peer.port} answered"))
        except PeerError as exc:
            out.append(CheckResult(peer.name, "C-ECHO", False, str(exc)))
    if peer.dicomweb_url:
        try:
            note = web.http_check(peer, settings)
            out.append(CheckResult(peer.name, "HTTP", True, f"{peer.dicomweb_url} {note}"))
        except PeerError as exc:
            out.append(CheckResult(peer.name, "HTTP", False, str(exc)))
    if not out:
        out.append(CheckResult(peer.name, "config", False, "neither ae_title + port nor dicomweb_url is set"))
    return out


def check_peers(settings: Settings, names: list[str] | None = None) -> list[CheckResult]:
    """Checks of the named peers (all configured ones by default).

    Raises:
        KeyError: a name that is not configured.
    """
    peers = [settings.peer(n) for n in names] if names else settings.all_peers()
    return [r for p in peers for r in check_peer(p, settings)]
