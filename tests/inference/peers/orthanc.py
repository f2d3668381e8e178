"""A throw-away Orthanc PACS for tests: own config and storage under a temporary folder, loopback ports.

``OrthancServer(folder).start()`` writes ``orthanc.json`` (storage, index, free HTTP and DICOM ports, the
DICOMweb plugin named by its ``.so`` path, no remote access) and runs ``/usr/sbin/Orthanc`` in the
foreground as our child; ``stop()`` sends SIGTERM and waits. ``rest`` is a ``requests`` session bound to its
HTTP root (basic auth when credentials are set). Stopping and starting again keeps the storage, as a
restarted PACS would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

ORTHANC = os.environ.get("TRIAGE_TEST_ORTHANC", "/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = os.environ.get("TRIAGE_TEST_ORTHANC_DICOMWEB", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port that is free on loopback right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def orthanc_available() -> str | None:
    """None when Orthanc and its DICOMweb plugin are installed, else what is missing."""
    if not (shutil.which(ORTHANC) or os.access(ORTHANC, os.X_OK)):
        return f"Orthanc not found at {ORTHANC} (apt-get install orthanc orthanc-dicomweb)"
    if not Path(DICOMWEB_PLUGIN).is_file():
        return f"the Orthanc DICOMweb plugin is missing at {DICOMWEB_PLUGIN} (apt-get install orthanc-dicomweb)"
    return None


class OrthancServer:
    """One Orthanc process with its own folder; DICOM AE ``aet`` on ``dicom_port``, REST on ``http_port``."""

    def __init__(
        self,
        folder: Path,
        *,
        aet: str = "ORTHANC",
        modalities: dict[str, dict[str, Any]] | None = None,
        username: str | None = None,
        password: str | None = None,
        lua_scripts: list[Path] | None = None,
    ):
        self.folder = Path(folder)
        self.aet = aet
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.modalities = dict(modalities or {})
        self.username = username
        self.password = password
        self.lua_scripts = [str(p) for p in lua_scripts or []]
        self.proc: subprocess.Popen | None = None
        self.rest = requests.Session()
        if username:
            self.rest.auth = (username, password or "")

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "Name": f"triage-test-{self.aet}",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.username),
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": self.modalities,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StableAge": 1,  # seconds without a new instance before OnStableStudy (routing rules)
            "HttpTimeout": 30,
            "DicomScuTimeout": 10,
        }
        if self.lua_scripts:
            cfg["LuaScripts"] = self.lua_scripts
        if self.username:
            cfg["RegisteredUsers"] = {self.username: self.password or ""}
        return cfg

    def start(self, timeout: float = 20.0) -> OrthancServer:
        """Write the config, start Orthanc and wait until its REST API answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(self.config(), indent=2))
        log = open(self.folder / "orthanc.log", "ab")
        self.proc = subprocess.Popen([ORTHANC, str(path)], stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        log.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.rest.get(f"{self.url}/system", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on {self.url} within {timeout:.0f} s: {self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait (SIGKILL if it hangs)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.folder / "orthanc.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # --- REST helpers ------------------------------------------------------------------------------------
    def get(self, path: str, **kw) -> Any:
        r = self.rest.get(f"{self.url}{path}", timeout=30, **kw)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: Any = None, **kw) -> Any:
        r = self.rest.post(f"{self.url}{path}", json=body, timeout=120, **kw)
        r.raise_for_status()
        return r.json() if r.content else None

    def upload(self, files: list[Path]) -> set[str]:
        """``POST /instances`` each file; returns the Orthanc study ids they went into."""
        studies = set()
        for f in files:
            r = self.rest.post(f"{self.url}/instances", data=Path(f).read_bytes(), timeout=60)
            r.raise_for_status()
            studies.add(r.json()["ParentStudy"])
        return studies

    def add_modality(self, name: str, aet: str, port: int, host: str = LOOPBACK) -> None:
        """``PUT /modalities/NAME`` (a peer known at run time)."""
        r = self.rest.put(f"{self.url}/modalities/{name}", json={"AET": aet, "Host": host, "Port": port}, timeout=30)
        r.raise_for_status()

    def lookup(self, uid: str, kind: str) -> str | None:
        """Orthanc's id of the ``kind`` (Study, Series, Instance) with this DICOM UID, or None."""
        r = self.rest.post(f"{self.url}/tools/lookup", data=uid, timeout=30)
        r.raise_for_status()
        return next((hit["ID"] for hit in r.json() if hit["Type"] == kind), None)

    def find_study(self, study_uid: str) -> str | None:
        """Orthanc's id of the study with this StudyInstanceUID, or None."""
        return self.lookup(study_uid, "Study")

    def instance_file(self, sop_uid: str) -> bytes:
        """The stored file of one instance."""
        r = self.rest.get(f"{self.url}/instances/{self.lookup(sop_uid, 'Instance')}/file", timeout=30)
        r.raise_for_status()
        return r.content

    def study_instances(self, study_uid: str) -> list[dict[str, Any]]:
        """Tags (simplified) of every instance Orthanc holds for the study."""
        oid = self.find_study(study_uid)
        if oid is None:
            return []
        return [self.get(f"/instances/{i['ID']}/tags?simplify") for i in self.get(f"/studies/{oid}/instances")]
