"""manifest.yml validates against Slack's manifest schema and matches what the adapter uses."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).parent.parent
LOCAL_SCHEMA = Path(__file__).parent / "payloads" / "slack" / "manifest.schema.1.0.0.json"


def _manifest() -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load((ROOT / "manifest.yml").read_text())
    return data


def test_manifest_validates_against_slacks_schema() -> None:
    schema = json.loads(LOCAL_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(_manifest())]
    assert errors == []


def test_manifest_has_what_the_adapter_needs() -> None:
    manifest = _manifest()
    settings = manifest["settings"]
    assert isinstance(settings, dict)
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True
    events = set(settings["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.im", "message.channels", "app_home_opened"} <= events
    features = manifest["features"]
    assert isinstance(features, dict)
    assert [c["command"] for c in features["slash_commands"]] == ["/dify"]
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])  # type: ignore[index]
    assert {"chat:write", "commands", "app_mentions:read", "im:history"} <= scopes


def test_manifest_keeps_http_mode_urls_as_comments() -> None:
    text = (ROOT / "manifest.yml").read_text()
    assert text.count("# request_url: https://") == 2
    assert "# url: https://" in text
