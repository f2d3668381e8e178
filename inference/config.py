"""One settings object for the whole system (pydantic-settings, env prefix ``TRIAGE_``).

Every knob lives here: where data is kept, which database and queue to use, where the models are, which
ONNX Runtime providers to try, the DICOM receiver and the quality-gate limits. Defaults work with no
configuration at all (SQLite database and queue inside the data directory); an optional ``.env`` file in
the working directory is read too.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SECRET = "change-me-research-only"
#: Folder of saved cases inside the data directory (``inference.results``).
RESULTS_DIRNAME = "results"
#: The models of a source checkout (an installed wheel has none: ``TRIAGE_MODEL_DIR`` names them).
SOURCE_MODEL_DIR = PROJECT_ROOT / "assets" / "models"


class ModelDirMissing(FileNotFoundError):
    """The model directory is not configured or does not exist."""


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "chest-ct-triage"


class QualityLimits(BaseSettings):
    """Limits of the quality gate (``TRIAGE_QUALITY__<NAME>``)."""

    min_slices: int = 8
    max_slice_thickness_mm: float = 3.0
    gap_factor: float = 1.5
    max_gantry_tilt_deg: float = 1.0
    axial_tolerance_deg: float = 15.0
    full_chest_extent_mm: float = 200.0
    position_tolerance_mm: float = 0.01
    #: largest deviation of one slice step from the series' median step, as a fraction of that median; above
    #: it the series is unusable (``uneven_spacing``): the volume would assume an even grid it does not have
    spacing_tolerance: float = 0.1


class IntakeLimits(BaseSettings):
    """Limits of ``triage ingest`` (``TRIAGE_INTAKE__<NAME>``); each refusal names the limit in its reason."""

    max_file_bytes: int = 2 * 1024**3  # one file, or one zip member uncompressed
    max_zip_total_bytes: int = 64 * 1024**3  # all members of one zip, uncompressed
    max_zip_ratio: float = 200.0  # uncompressed / compressed size of one member
    max_zip_members: int = 100_000
    quarantine_quota_bytes: int = 10 * 1024**3  # beyond it only the reason file is kept, not the bytes


class SignInLimits(BaseSettings):
    """Sign-in throttling (``TRIAGE_SIGNIN__<NAME>``): back-off per user and per address, then a lockout."""

    free_failures: int = 3  # failed attempts before any back-off
    backoff_base_s: float = 2.0  # first back-off; doubles with each further failure
    backoff_max_s: float = 300.0
    lock_after: int = 10  # consecutive failures of one user → locked until an admin unlocks
    window_s: float = 3600.0  # failures older than this (and no lock) are forgotten


class Peer(BaseModel):
    """A PACS (or other DICOM node) the service talks to; one entry of ``TRIAGE_PEERS`` (a JSON list).

    ``send_results`` says how our SEG and SR go to it (``c-store`` needs ``ae_title`` + ``port``, ``stow-rs``
    needs ``dicomweb_url``). ``query`` makes it a source for ``triage pull`` and prior studies, retrieved by
    ``retrieve``. ``password`` is a secret: never printed or logged.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    ae_title: str | None = Field(default=None, max_length=16)
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, gt=0, lt=65536)
    dicomweb_url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    send_results: list[Literal["c-store", "stow-rs"]] = []
    query: bool = False
    retrieve: Literal["c-get", "c-move", "wado-rs"] = "c-get"

    @property
    def has_dimse(self) -> bool:
        return bool(self.ae_title and self.port)

    def describe(self) -> str:
        """Where the peer is, without credentials."""
        parts = []
        if self.has_dimse:
            parts.append(f"{self.ae_title}@{self.host}:{self.port}")
        if self.dicomweb_url:
            parts.append(self.dicomweb_url)
        return f"{self.name} ({', '.join(parts) or 'no address'})"


def peer_from_destination(destination: str) -> Peer:
    """The legacy ``TRIAGE_PACS_DESTINATION`` (``AE@host:port``) as a C-STORE result peer named ``pacs``.

    Raises:
        ValueError: not of the form ``AE@host:port``.
    """
    try:
        ae_title, hostport = destination.split("@", 1)
        host, port = hostport.rsplit(":", 1)
        return Peer(name="pacs", ae_title=ae_title, host=host, port=int(port), send_results=["c-store"])
    except ValueError as exc:
        raise ValueError(f"PACS destination must look like AE@host:port, got {destination!r}") from exc


class Settings(BaseSettings):
    """Runtime configuration. Environment: ``TRIAGE_DATA_DIR``, ``TRIAGE_DATABASE_URL`` and so on."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_file=".env", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    queue_url: str | None = None
    #: Folder of the model cards + ONNX files. Unset: ``assets/models`` of the source checkout; an installed
    #: wheel does not carry the models, so there it must be set (``triage analyze`` says so when it is not).
    model_dir: Path | None = None
    onnx_providers: list[str] = [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    onnx_threads: int = 0

    receiver_ae_title: str = "TRIAGE"
    receiver_port: int = 11112
    receiver_host: str = "127.0.0.1"
    receiver_allowed_callers: list[str] = []
    receiver_max_associations: int = 10  # concurrent associations (idle TCP connections do not count)
    receiver_acse_timeout_s: float = 5.0  # a connection that sends no association request is dropped
    receiver_network_timeout_s: float = 60.0  # an association silent this long is aborted
    receiver_max_pending: int = 64  # TCP connections waiting for their association request
    study_quiet_period_s: float = 30.0
    lease_ttl_s: float = Field(default=30.0, gt=0)  # worker lease; renewed every third of it
    task_retries: int = 2  # analysis retries before a study is marked failed
    task_retry_delay_s: float = 5.0
    pacs_destination: str | None = None  # AE@host:port that receives our SEG and SR (legacy: one c-store peer)
    # PACS peers (JSON list of ``Peer``), result delivery and priors
    peers: list[Peer] = []
    calling_ae_title: str | None = None  # our AE title towards peers (default: receiver_ae_title)
    dimse_timeout_s: float = Field(default=30.0, gt=0)
    delivery_max_attempts: int = Field(default=6, ge=1)
    delivery_backoff_s: float = Field(default=30.0, ge=0)  # first retry after this; doubles each time
    delivery_backoff_max_s: float = Field(default=3600.0, ge=0)
    delivery_poll_s: float = Field(default=5.0, gt=0)  # the worker looks for due deliveries this often
    priors_enabled: bool = True  # look for the same patient's earlier CT when a study is analysed

    series_rules: Path | None = None
    quality: QualityLimits = Field(default_factory=QualityLimits)
    intake: IntakeLimits = Field(default_factory=IntakeLimits)
    signin: SignInLimits = Field(default_factory=SignInLimits)

    secret_key: str = DEFAULT_SECRET
    demo_mode: bool = False
    max_wait_minutes: float = 120.0
    #: Operating points that replace model-card values, by model: ``{"pe_cnnlstm": {"critical": 0.5}}``
    #: (``TRIAGE_THRESHOLD_OVERRIDES`` as JSON). Each analysis stores the values it used, overridden or not.
    threshold_overrides: dict[str, dict[str, float]] = {}
    #: Retired (the PE operating point lives in its model card); set only to be refused with a pointer.
    pe_critical_threshold: float | None = None
    ai_hidden_fraction: float = 0.2
    # dashboard
    dashboard_refresh_s: float = 15.0  # worklist auto-refresh period
    reading_idle_cap_s: float = 90.0  # longest gap between interactions that still counts as reading
    claim_stale_minutes: float = 30.0  # a claim idle this long (no activity in its case) may be taken over
    lung_rads_min_probability: float = 0.5  # a finding's suggested Lung-RADS is shown only from this probability
    session_hours: float = Field(default=12.0, gt=0)  # a sign-in survives browser reloads this long
    tls_cert_file: Path | None = None  # HTTPS for `triage serve` (Streamlit's server.sslCertFile)
    tls_key_file: Path | None = None

    @field_validator("pe_critical_threshold", mode="after")
    @classmethod
    def _retired(cls, value: float | None) -> None:
        if value is not None:
            raise ValueError(
                "TRIAGE_PE_CRITICAL_THRESHOLD is retired: the PE operating point comes from its model card; to "
                f"override it set TRIAGE_THRESHOLD_OVERRIDES='{{\"pe_cnnlstm\": {{\"critical\": {value}}}}}'"
            )
        return None

    @field_validator("data_dir", "model_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    # --- derived locations -------------------------------------------------------------------------
    @property
    def inbox_dir(self) -> Path:
        return self.data_dir / "inbox"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / RESULTS_DIRNAME

    @property
    def resolved_model_dir(self) -> Path:
        """``model_dir``, or the source checkout's ``assets/models``.

        Raises:
            ModelDirMissing: neither exists (the message names ``TRIAGE_MODEL_DIR``).
        """
        path = self.model_dir or SOURCE_MODEL_DIR
        if not path.is_dir():
            if self.model_dir is None:
                raise ModelDirMissing(
                    "no model directory: this installation does not include the models. Set TRIAGE_MODEL_DIR to "
                    "the folder holding the model cards and ONNX files (assets/models of the source)."
                )
            raise ModelDirMissing(f"TRIAGE_MODEL_DIR={path} is not a folder")
        return path

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'triage.db'}"

    @property
    def resolved_queue_url(self) -> str:
        return self.queue_url or f"sqlite:///{self.data_dir / 'queue.db'}"

    @property
    def priors_dir(self) -> Path:
        return self.data_dir / "priors"

    @property
    def calling_ae(self) -> str:
        return self.calling_ae_title or self.receiver_ae_title

    def all_peers(self) -> list[Peer]:
        """``peers`` plus the legacy ``pacs_destination`` (as peer ``pacs``) when set."""
        peers = list(self.peers)
        if self.pacs_destination and not any(p.name == "pacs" for p in peers):
            peers.append(peer_from_destination(self.pacs_destination))
        return peers

    def peer(self, name: str) -> Peer:
        """The peer called ``name``.

        Raises:
            KeyError: no such peer (the message lists the configured names).
        """
        for p in self.all_peers():
            if p.name == name:
                return p
        raise KeyError(f"no peer named {name!r}; configured: {', '.join(p.name for p in self.all_peers()) or 'none'}")

    def unsafe_reasons(self) -> list[str]:
        """Settings that are unsafe outside demo mode, as plain sentences (empty when safe)."""
        reasons = []
        if self.secret_key == DEFAULT_SECRET:
            reasons.append("TRIAGE_SECRET_KEY is the built-in placeholder; set a long random value.")
        if self.receiver_host not in ("127.0.0.1", "localhost", "::1") and not self.receiver_allowed_callers:
            reasons.append(
                "the DICOM receiver listens beyond loopback with no TRIAGE_RECEIVER_ALLOWED_CALLERS allow-list."
            )
        return reasons


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; tests call ``get_settings.cache_clear()``)."""
    return Settings()
