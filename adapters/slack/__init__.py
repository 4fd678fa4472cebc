"""Slack: DMs, mentions and threads, ``/dify``, buttons; Socket Mode or HTTP; streamed answers."""

from __future__ import annotations

from adapters.slack.adapter import SlackAdapter, build_slack

__all__ = ["SlackAdapter", "build_slack"]
