"""Request validation as Dify 1.13.2 does it (pydantic payload models, input-form checks)."""

from __future__ import annotations

import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ValidationError, field_validator

# The captured server ran pydantic 2.12; its version is part of every validation message.
_DOCS_VERSION = re.compile(r"(errors\.pydantic\.dev/)[^/]+/")


def _uuid_or_none(value: object) -> object:
    if isinstance(value, str):
        value = value.strip()
    if not value:
        return None
    try:
        return str(uuid.UUID(str(value)))
    except ValueError as exc:
        raise ValueError("conversation_id must be a valid UUID") from exc


class ChatRequestPayload(BaseModel):
    """Field order matters: it is the order of the errors in the message."""

    inputs: dict[str, Any]
    query: str
    files: list[dict[str, Any]] | None = None
    response_mode: Literal["blocking", "streaming"] | None = None
    conversation_id: str | None = None
    retriever_from: str = "dev"
    auto_generate_name: bool = True
    workflow_id: str | None = None

    @field_validator("conversation_id", mode="before")
    @classmethod
    def _conversation_uuid(cls, value: object) -> object:
        return _uuid_or_none(value)


class CompletionRequestPayload(BaseModel):
    inputs: dict[str, Any]
    query: str = ""
    files: list[dict[str, Any]] | None = None
    response_mode: Literal["blocking", "streaming"] | None = None
    retriever_from: str = "dev"


class WorkflowRunPayload(BaseModel):
    inputs: dict[str, Any]
    files: list[dict[str, Any]] | None = None
    response_mode: Literal["blocking", "streaming"] | None = None


def validation_message(exc: ValidationError) -> str:
    """``str(ValidationError)`` as the 1.13.2 server puts it in ``invalid_param`` messages."""
    return _DOCS_VERSION.sub(r"\g<1>2.12/", str(exc))


def form_variables(parameters: dict[str, Any]) -> list[tuple[str, bool]]:
    """``(variable, required)`` for each ``user_input_form`` item (``{control: {...}}``)."""
    found = []
    for item in parameters.get("user_input_form") or []:
        for control in item.values():
            if isinstance(control, dict) and control.get("variable"):
                found.append((str(control["variable"]), bool(control.get("required"))))
    return found


def missing_input(parameters: dict[str, Any], inputs: dict[str, Any]) -> str | None:
    """The message for the first required form variable that is absent or empty."""
    for variable, required in form_variables(parameters):
        if required and inputs.get(variable) in (None, ""):
            return f"{variable} is required in input form"
    return None
