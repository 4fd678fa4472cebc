"""What each answer leaves behind: its one INFO line (with structured fields) and its metrics."""

from __future__ import annotations

import logging

from bot.answering.run import AnswerRun, Outcome
from bot.ops.metrics import Metrics

log = logging.getLogger("bot.answering")  # one "answered" line per message, from here


def report_answer(run: AnswerRun, outcome: Outcome, metrics: Metrics) -> None:
    """Log the answer (trace id, platform, app, outcome, chunks, duration) and count it."""
    message, seconds = run.message, run.elapsed
    ms = int(seconds * 1000)
    fields = {"platform": message.platform, "app": message.key.app, "chunks": run.chunks,
              "outcome": outcome.value, "duration_ms": ms}  # fmt: skip
    log.info(
        "answered trace=%s platform=%s app=%s outcome=%s chunks=%d chars=%d edits=%d ms=%d",
        run.trace_id, message.platform, message.key.app, outcome.value, run.chunks,
        len(run.reply.text), run.reply.edits, ms, extra=fields,
    )  # fmt: skip
    reason = "" if outcome is Outcome.ANSWERED else (run.failure or outcome.value)
    first = run.first_text_at - run.started_at if run.first_text_at is not None else None
    metrics.answer_ended(
        message.platform, message.key.app, reason=reason, seconds=seconds, first_token=first
    )
