"""Service settings, read from the environment (VEU_*) with safe defaults for the embedded SQLite store."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_db_url() -> str:
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "veu-governor"
    return f"sqlite:///{base / 'veu.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VEU_", extra="ignore")

    database_url: str = ""
    policy_dirs: str = ""
    signing_key_file: str = ""
    log_level: str = "INFO"
    # Authentication for the API and dashboard: "token" (API tokens / OIDC bearer JWTs, sessions for the
    # dashboard) or "none" (single-user trials such as `veuctl demo`; never in production).
    auth: str = "token"
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_file: str = ""
    oidc_role_claim: str = "veu_role"
    session_secret: str = ""

    def db_url(self) -> str:
        return self.database_url or _default_db_url()


def settings() -> Settings:
    return Settings()
