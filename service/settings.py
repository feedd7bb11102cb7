"""Settings of the keepwise service: one pydantic-settings class, environment prefix ``KEEPWISE_``.

Nothing is read at import: :func:`get_settings` builds the settings on first call (cached) and
tests pass their own :class:`Settings` to :func:`service.api.main.create_app`.

============================  =============================================  =======================
variable                      meaning                                        default
============================  =============================================  =======================
KEEPWISE_DATABASE_URL         SQLAlchemy URL of the store                    sqlite:///keepwise.db
KEEPWISE_MLFLOW_TRACKING_URI  MLflow tracking/registry URI                   $MLFLOW_TRACKING_URI
KEEPWISE_MODEL_NAME           registered model name                          keepwise
KEEPWISE_MODEL_ALIAS          registry alias served and reloaded             champion
KEEPWISE_MODEL_PATH           serve this bundle folder, not the registry     (unset)
KEEPWISE_POLICY               decision policy TOML                           policies/default.toml
KEEPWISE_API_KEYS_FILE        TOML file of hashed API keys                   (unset)
KEEPWISE_API_KEYS             JSON list of hashed API key entries            []
KEEPWISE_MAX_BODY_BYTES       largest request body accepted (413 above)      4194304 (4 MiB)
KEEPWISE_SCORING_THREADS      LightGBM threads per scoring call              1
KEEPWISE_STORE_TIMEOUT_S      longest wait for the store (lock, connection)  5
KEEPWISE_MAX_HEADER_BYTES     largest request head (431 above)               16384 (16 KiB)
KEEPWISE_HEADER_TIMEOUT_S     a request head must arrive within (408)        10
KEEPWISE_BODY_TIMEOUT_S       a request body must arrive within (408)        30
KEEPWISE_KEEP_ALIVE_S         an idle kept-alive connection is closed after  5
KEEPWISE_LOG_LEVEL            DEBUG, INFO, WARNING or ERROR                  INFO
KEEPWISE_DATA_DIR             CRM export the web page reads histories from   (unset)
KEEPWISE_SESSION_IDLE_MINUTES web sign-in ends after this long unused        30
KEEPWISE_SESSION_HOURS        web sign-in ends this long after sign-in       8
============================  =============================================  =======================

See :mod:`service.api.keys` for the key entry format.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.api.keys import ApiKeyEntry

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "policies" / "default.toml"
# A full batch of 1,000 feature rows is about 1.7 MB of JSON; 4 MiB leaves room for long ids.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class Settings(BaseSettings):
    """Service configuration (environment variables ``KEEPWISE_<FIELD>``, see the module docs)."""

    model_config = SettingsConfigDict(env_prefix="KEEPWISE_", frozen=True, extra="forbid")

    database_url: str = Field(
        default="sqlite:///keepwise.db",
        description="SQLAlchemy URL of the store; the default is a SQLite file in the "
        "working directory.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking and registry URI; None uses $MLFLOW_TRACKING_URI or "
        "sqlite:///mlflow.db.",
    )
    model_name: str = Field(default="keepwise", min_length=1, description="Registered model.")
    model_alias: str = Field(
        default="champion",
        min_length=1,
        description="Registry alias loaded at start-up and on reload.",
    )
    model_path: Path | None = Field(
        default=None,
        description="A model bundle folder to serve instead of the registry (offline use).",
    )
    policy: Path = Field(default=DEFAULT_POLICY, description="Decision policy TOML file.")
    api_keys_file: Path | None = Field(default=None, description="TOML file of API keys.")
    api_keys: list[ApiKeyEntry] = Field(
        default_factory=list, description="API key entries (JSON in the environment)."
    )
    max_body_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=DEFAULT_MAX_BODY_BYTES, description="Largest request body accepted, in bytes."
    )
    scoring_threads: Annotated[int, Field(ge=1, le=64)] = Field(
        default=1, description="LightGBM threads per scoring call (requests run in parallel)."
    )
    store_timeout_s: Annotated[float, Field(gt=0, le=300)] = Field(
        default=5.0,
        description="Longest a request waits for the store: a lock, a pooled connection, a "
        "statement (PostgreSQL). Past it the request answers 503 and /health/ready says the "
        "store is not available.",
    )
    max_header_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = Field(
        default=16 * 1024,
        description="Largest request head (request line and headers), in bytes; 431 above.",
    )
    header_timeout_s: Annotated[float, Field(gt=0, le=600)] = Field(
        default=10.0,
        description="Seconds a request head may take to arrive after the connection opened or "
        "the head began; 408 and the connection closed after that.",
    )
    body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0,
        description="Seconds a request body may take to arrive after its head; 408 after that.",
    )
    keep_alive_s: Annotated[float, Field(gt=0, le=600)] = Field(
        default=5.0, description="Seconds an idle kept-alive connection stays open."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="Service log level. INFO logs one access line per request; DEBUG adds "
        "what the scoring code says (e.g. the actions decided), with the request id.",
    )

    data_dir: Path | None = Field(
        default=None,
        description="The CRM export folder (<table>.parquet or .csv) the web page reads a "
        "customer's complaint and offer history from; unset: the page says it has none.",
    )
    session_idle_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = Field(
        default=30, description="A web session ends after this many minutes without a request."
    )
    session_hours: Annotated[int, Field(ge=1, le=24 * 7)] = Field(
        default=8, description="A web session ends this many hours after sign-in."
    )

    @field_validator("database_url")
    @classmethod
    def _url_has_a_scheme(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError(
                f"expected a SQLAlchemy URL such as sqlite:///keepwise.db, got {value!r}"
            )
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment, read once (``get_settings.cache_clear()`` re-reads)."""
    return Settings()
