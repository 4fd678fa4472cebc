"""Per-app ``inputs`` from the message context, and their check against the app's form.

A routes file maps an app's ``user_input_form`` variables to context fields (``user_name``,
``user_id``, ``channel``, ``platform``, ``locale``, ``workspace``). ``with_inputs`` wraps the
prepare step so every request carries them; ``check_inputs`` compares the mapping with what
``GET /parameters`` says the app takes, at startup and in ``difybot check``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bot.dify.client import DifyClient
from bot.models import IncomingMessage
from bot.preparing import Prepare, Prepared
from bot.routing import AppSpec, context_value


def with_inputs(inner: Prepare, mapping: Mapping[str, Mapping[str, str]]) -> Prepare:
    """``inner``'s query and files, its inputs completed from the message context by the
    mapping of the message's app (``{app: {variable: context field}}``). What ``inner`` set
    itself wins: it knows more than the context does."""
    if not any(mapping.values()):
        return inner

    async def prepare(message: IncomingMessage, dify: DifyClient) -> Prepared:
        prepared = await inner(message, dify)
        variables = mapping.get(message.key.app)
        if not variables:
            return prepared
        context = to_inputs(message, variables)
        return replace(prepared, inputs={**context, **prepared.inputs})

    return prepare


def to_inputs(message: IncomingMessage, variables: Mapping[str, str]) -> dict[str, str]:
    """The known context values by variable name (unknown ones are left out, not sent empty)."""
    found = {name: context_value(message, field) for name, field in variables.items()}
    return {name: value for name, value in found.items() if value is not None}


def form_variables(parameters: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``user_input_form`` as ``{variable: control}``; each item is ``{type: {variable, …}}``."""
    variables: dict[str, dict[str, Any]] = {}
    for item in parameters.get("user_input_form") or ():
        if not isinstance(item, dict):
            continue
        for control in item.values():
            if isinstance(control, dict) and control.get("variable"):
                variables[str(control["variable"])] = control
    return variables


def check_inputs(
    spec: AppSpec, parameters: Mapping[str, Any], *, source: str, filled: frozenset[str]
) -> list[str]:
    """Mistakes in ``spec.inputs`` against the app's form: unknown variables, and required
    variables nothing fills (Dify would refuse every message). ``filled``: variables set
    otherwise (a workflow app's query variable)."""
    form = form_variables(parameters)
    problems = []
    for variable in spec.inputs:
        if variable not in form:
            known = ", ".join(sorted(form)) or "none"
            where = f"{source}:{spec.input_lines.get(variable, spec.line)}: " if source else ""
            problems.append(
                f"{where}app {spec.name!r} has no input variable {variable!r} (it has: {known})"
            )
    for variable, control in form.items():
        if control.get("required") and variable not in spec.inputs and variable not in filled:
            problems.append(
                f"app {spec.name!r} requires input {variable!r}: map it under inputs "
                "in the routes file, or make it optional in Dify"
            )
    return problems
