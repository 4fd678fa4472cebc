"""The recorded stream every client benchmark reads: a long Dify chat answer, generated exactly."""

from __future__ import annotations

import json

CONVERSATION = "54f27086-5324-428d-9dc3-d3bee89d5535"
MESSAGE = "d9421453-2edd-45b0-bfee-a890db1f2c90"
TASK = "c391f201-6d8a-4afa-8fb8-76eef2f6bf13"

# Dify's full usage object (dify-api.md §4.2): prices are decimal strings.
USAGE = {
    "prompt_tokens": 1212,
    "prompt_unit_price": "0.15",
    "prompt_price_unit": "0.000001",
    "prompt_price": "0.0001818",
    "completion_tokens": 20000,
    "completion_unit_price": "0.6",
    "completion_price_unit": "0.000001",
    "completion_price": "0.012",
    "total_tokens": 21212,
    "total_price": "0.0121818",
    "currency": "USD",
    "latency": 93.5,
    "time_to_first_token": 0.41,
    "time_to_generate": 93.09,
}


def frame(payload: dict[str, object]) -> bytes:
    """One SSE frame as Dify ≥1.x writes it: compact JSON, raw UTF-8, a blank line after."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"data: {text}\n\n".encode()


def chat_stream(events: int = 20_000, ping_every: int = 1_000) -> list[bytes]:
    """The frames of one answer: ``events`` small ``message`` deltas, pings, a full message_end."""
    envelope = {
        "conversation_id": CONVERSATION,
        "message_id": MESSAGE,
        "created_at": 1795304584,
        "task_id": TASK,
        "id": MESSAGE,
    }
    frames = []
    for i in range(events):
        if i % ping_every == 0:
            frames.append(b"event: ping\n\n")
        delta = {"event": "message", **envelope, "answer": f"tok{i % 97} "}
        frames.append(frame({**delta, "from_variable_selector": None}))
    end = {"event": "message_end", **envelope, "files": None}
    end["metadata"] = {"annotation_reply": None, "retriever_resources": [], "usage": USAGE}
    frames.append(frame(end))
    return frames
