"""docker/compose.yml is a valid Compose file with the services the README promises, and
.env.example lists every setting difybot reads."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from difybot.config import Settings
from tests.test_cli_e2e import REPO

COMPOSE = REPO / "docker" / "compose.yml"
# The Compose specification's schema as docker-compose 1.29.2 (Debian bookworm) ships it.
SCHEMA = Path(__file__).parent / "payloads" / "docker" / "compose_spec.json"


def load_compose() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(compose, dict)
    return compose


def test_compose_file_matches_the_compose_schema() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    # Its $schema ends in "#", which jsonschema does not look up: name the draft instead.
    jsonschema.Draft201909Validator(schema).validate(load_compose())


def test_compose_runs_sqlite_by_default_and_two_replicas_on_postgres() -> None:
    services = load_compose()["services"]
    default = [name for name, service in services.items() if not service.get("profiles")]
    assert default == ["difybot"]
    assert services["difybot"]["environment"]["DATABASE_URL"].startswith("sqlite+aiosqlite:")
    replicas = [name for name, s in services.items() if name.startswith("difybot-")]
    assert replicas == ["difybot-a", "difybot-b"]
    for name in ["postgres", *replicas]:
        assert services[name]["profiles"] == ["postgres"]
    for name in replicas:
        url = services[name]["environment"]["DATABASE_URL"]
        assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for service in ("difybot", *replicas):
        assert services[service]["build"]["dockerfile"] == "docker/Dockerfile"
        assert services[service]["env_file"] == "../.env"


def compose_command() -> list[str] | None:
    """``docker compose`` (the v2 plugin) or ``docker-compose``: neither needs a daemon."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.parametrize("profile", [[], ["--profile", "postgres"]])
def test_compose_config_accepts_the_file(tmp_path: Path, profile: list[str]) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no Compose client here; the schema test above still ran")
    (tmp_path / "docker").mkdir()
    shutil.copy(COMPOSE, tmp_path / "docker" / "compose.yml")
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    result = subprocess.run(
        [*command, "-f", "docker/compose.yml", *profile, "config"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)  # anchors merged, paths made absolute
    assert resolved["services"]["difybot"]["stop_grace_period"] == "30s"
    assert resolved["services"]["difybot-b"]["environment"]["DATABASE_URL"].endswith("/difybot")


def test_env_example_lists_every_setting() -> None:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    missing = {name.upper() for name in Settings.model_fields} - listed
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_dockerfile_builds_from_what_the_package_needs() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text(encoding="utf-8")
    for needed in ("COPY pyproject.toml README.md", "COPY bot", "COPY adapters", "COPY storage",
                   "USER difybot", "HEALTHCHECK", "/healthz"):  # fmt: skip
        assert needed in dockerfile
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored and ".venv" in ignored  # no secrets, no virtualenv in the image
