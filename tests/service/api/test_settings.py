"""Settings: the KEEPWISE_ environment, defaults and fail-fast validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import DEFAULT_POLICY, Settings, get_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"KEEPWISE_{name.upper()}", raising=False)


def test_defaults_are_safe_and_local() -> None:
    settings = Settings()
    assert settings.database_url == "sqlite:///keepwise.db"
    assert settings.model_alias == "champion" and settings.model_name == "keepwise"
    assert settings.policy == DEFAULT_POLICY and DEFAULT_POLICY.is_file()
    assert settings.api_keys == [] and settings.api_keys_file is None
    assert settings.max_body_bytes == 4 * 1024 * 1024


def test_environment_overrides_with_the_keepwise_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KEEPWISE_DATABASE_URL", "postgresql://kw@db/keepwise")
    monkeypatch.setenv("KEEPWISE_MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("KEEPWISE_MODEL_ALIAS", "challenger")
    monkeypatch.setenv("KEEPWISE_POLICY", str(tmp_path / "policy.toml"))
    monkeypatch.setenv("KEEPWISE_API_KEYS_FILE", str(tmp_path / "keys.toml"))
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert get_settings() is settings  # cached
    finally:
        get_settings.cache_clear()
    assert settings.database_url == "postgresql://kw@db/keepwise"
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert settings.model_alias == "challenger"
    assert settings.policy == tmp_path / "policy.toml"
    assert settings.api_keys_file == tmp_path / "keys.toml"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("database_url", "keepwise.db"),
        ("max_body_bytes", 10),
        ("scoring_threads", 0),
        ("api_keys", [{"name": "x", "role": "viewer", "sha256": "plain-text-token"}]),
        ("databse_url", "sqlite://"),
    ],
)
def test_unsafe_or_misspelt_settings_fail_fast(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})  # type: ignore[arg-type]
