"""Prometheus metrics: one registry per process (injected, never the library's global one).

Every series a deployment watches, with labels of bounded cardinality only (platform, app route
name, API method, HTTP status, failure reason): never a user, channel or conversation id.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Seconds. First tokens come in ~0.3-5 s; whole answers can take minutes (agents, workflows).
FIRST_TOKEN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
ANSWER_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Metrics:
    """The collectors, registered on ``registry``; ``exposition`` renders them for /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "difybot_messages", "Messages taken to answer", ["platform", "app"], registry=r
        )
        self.completed = Counter(
            "difybot_answers_completed", "Answers shown in full", ["platform", "app"], registry=r
        )
        self.failed = Counter(
            "difybot_answers_failed",
            "Answers not completed, by reason (error, busy, quota, unavailable, interrupted, "
            "stopped, paused, refused, unanswerable)",
            ["platform", "app", "reason"],
            registry=r,
        )
        self.first_token = Histogram(
            "difybot_time_to_first_token_seconds",
            "From taking the message to Dify's first answer text",
            ["platform", "app"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "difybot_answer_duration_seconds",
            "From taking the message to the end of its answer",
            ["platform", "app"],
            buckets=ANSWER_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("difybot_answers_in_flight", "Answers running now", registry=r)
        self.dify_errors = Counter(
            "difybot_dify_http_errors",
            "Dify HTTP error responses, by status and Dify error code",
            ["app", "status", "code"],
            registry=r,
        )
        self.platform_calls = Counter(
            "difybot_platform_api_calls", "Platform API calls", ["platform", "method"], registry=r
        )
        self.platform_limited = Counter(
            "difybot_platform_rate_limited",
            "Platform API calls refused for rate (HTTP 429, WeChat frequency errcodes)",
            ["platform", "method"],
            registry=r,
        )
        self.duplicates = Counter(
            "difybot_duplicate_deliveries",
            "Platform redeliveries dropped as already taken",
            ["platform"],
            registry=r,
        )
        self.takeovers = Counter(
            "difybot_lease_takeovers",
            "Answers taken over from a replica that died or let go",
            ["platform"],
            registry=r,
        )

        # The delivery scheduler (bot/delivery/scheduler.py): labelled by account (a Slack
        # workspace, a bot): operators have a handful, and budgets are per account.
        self.delivery_calls = Counter(
            "difybot_delivery_calls",
            "Rate-limited platform calls let through, by priority class",
            ["platform", "account", "method", "priority"],
            registry=r,
        )
        self.delivery_wait = Histogram(
            "difybot_delivery_wait_seconds",
            "How long a rate-limited call waited for its budget",
            ["platform", "account", "priority"],
            buckets=(0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0),
            registry=r,
        )
        self.delivery_skipped = Counter(
            "difybot_delivery_skipped",
            "Interim calls (progress edits) skipped because the budget was short",
            ["platform", "account", "method"],
            registry=r,
        )
        self.delivery_blocked = Counter(
            "difybot_delivery_blocked",
            "Rate-limit refusals that paused a method for an account on every replica",
            ["platform", "account", "method"],
            registry=r,
        )
        self.delivery_saturated = Gauge(
            "difybot_delivery_saturated",
            "1 while an account's budget is short (calls wait, progress is thinned out)",
            ["platform", "account"],
            registry=r,
        )

    def dify_error(self, app: str, status: int | None, code: str) -> None:
        self.dify_errors.labels(app, str(status or 0), code or "none").inc()

    def platform_call(self, platform: str, method: str, *, limited: bool = False) -> None:
        self.platform_calls.labels(platform, method).inc()
        if limited:
            self.platform_limited.labels(platform, method).inc()

    def answer_ended(
        self,
        platform: str,
        app: str,
        *,
        reason: str,
        seconds: float,
        first_token: float | None,
    ) -> None:
        """One answer's end: ``reason`` "" when it was shown in full."""
        if reason:
            self.failed.labels(platform, app, reason).inc()
        else:
            self.completed.labels(platform, app).inc()
        self.duration.labels(platform, app).observe(seconds)
        if first_token is not None:
            self.first_token.labels(platform, app).observe(first_token)

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
