"""Plain values that travel between adapters, the dispatcher, the Dify client and the store."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Scope(StrEnum):
    """What one Dify conversation is shared by."""

    USER = "user"
    THREAD = "thread"
    CHANNEL = "channel"


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Identifies one Dify conversation on our side: (app, platform, workspace, scope, scope id).

    The scope id is whatever the adapter chose for the scope: a user id, a thread id or a
    channel id. The app is the route name (``default`` when one app is configured), so two
    apps never share a conversation id (Dify scopes conversations to one app).
    """

    platform: str
    workspace: str
    scope: Scope
    scope_id: str
    app: str = "default"

    def as_str(self) -> str:
        return f"{self.app}/{self.place}"

    @property
    def place(self) -> str:
        """The chat place whatever app answers there: a user's DM, a thread, a channel."""
        return f"{self.platform}/{self.workspace}/{self.scope.value}/{self.scope_id}"


def dify_user_id(platform: str, workspace: str, user_id: str) -> str:
    """The stable Dify ``user`` for a platform user: never a display name, always namespaced."""
    return f"{platform}:{workspace}:{user_id}"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file a user sent, as its platform describes it; the adapter's ``FileSource`` fetches it
    (by ``url`` or ``platform_id``). ``voice``: a voice note or audio clip, transcribed into the
    question when the app takes no audio files."""

    name: str
    mime_type: str
    size: int | None = None
    url: str | None = None
    platform_id: str | None = None
    voice: bool = False


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One user message, normalized by an adapter.

    The core routes it to its Dify app from ``platform``, ``workspace``, ``channel_id`` and
    ``command`` (a slash command that asked it), and speaks the user's language: ``user_locale``
    when the platform told it, else the route's, else ``locale`` (the platform's default).
    ``key.app`` and ``locale`` are set by the core when the message is accepted.
    """

    platform: str
    workspace: str
    user_id: str
    text: str
    key: ConversationKey
    message_id: str
    attachments: tuple[Attachment, ...] = ()
    locale: str | None = None
    user_name: str | None = None
    channel_id: str | None = None
    author_id: str = ""  # who wrote it, when ``user_id`` is a shared conversation's owner
    command: str = ""
    user_locale: str | None = None

    @property
    def dify_user(self) -> str:
        return dify_user_id(self.platform, self.workspace, self.user_id)

    @property
    def author(self) -> str:
        return self.author_id or self.user_id


@dataclass(frozen=True, slots=True)
class AppFacts:
    """What the Dify app offers around answers (``GET /parameters``, cached)."""

    opening_statement: str = ""
    starter_questions: tuple[str, ...] = ()
    suggestions_after_answer: bool = False


# ---- answer events, as the Dify client yields them -------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    """More answer text (Dify ``message`` / ``agent_message`` / ``text_chunk``)."""

    text: str


@dataclass(frozen=True, slots=True)
class TextReplace:
    """The whole answer so far is replaced (``message_replace``; New Agent's last ``message``)."""

    text: str


@dataclass(frozen=True, slots=True)
class AgentThought:
    """An agent step; the same ``id`` repeats as the step is updated (upsert by id)."""

    id: str
    position: int
    thought: str
    tool: str
    tool_input: str
    observation: str


@dataclass(frozen=True, slots=True)
class Progress:
    """Workflow or node progress: ``kind`` is ``workflow``/``node``/``iteration``/``loop``."""

    kind: str
    status: str
    title: str = ""
    node_type: str = ""


@dataclass(frozen=True, slots=True)
class FileOut:
    """A file Dify produced (``message_file`` event or a ``files`` entry of the end event)."""

    url: str
    type: str = "file"
    id: str = ""
    filename: str = ""
    mime_type: str = ""


@dataclass(frozen=True, slots=True)
class Reasoning:
    """Separated reasoning of an LLM node (``reasoning_chunk``): a delta beside the answer,
    never part of it; ``final`` closes one node's reasoning (its text may be empty)."""

    text: str
    final: bool = False
    node_id: str = ""


# ---- Human Input forms (Dify 1.14+, Chatflow and Workflow apps) -----------------------------


@dataclass(frozen=True, slots=True)
class FormField:
    """One input of a Human Input form, named by its ``output_variable_name``.

    ``type`` is ``paragraph`` (multi-line text), ``select`` (one of ``options``), ``file`` or
    ``file-list`` (at most ``max_files``, 0 = no limit) taking file mappings; an unknown type is
    kept as Dify sent it. ``default`` is the constant default or the one Dify resolved.
    """

    name: str
    type: str
    default: str = ""
    options: tuple[str, ...] = ()
    file_types: tuple[str, ...] = ()
    file_extensions: tuple[str, ...] = ()
    upload_methods: tuple[str, ...] = ()
    max_files: int = 0

    @property
    def is_file(self) -> bool:
        return self.type in ("file", "file-list")


@dataclass(frozen=True, slots=True)
class FormAction:
    """A button of a form; ``style`` is ``primary``, ``default``, ``accent`` or ``ghost``."""

    id: str
    title: str
    style: str = "default"


@dataclass(frozen=True, slots=True)
class FormRequest:
    """A Human Input node waits for a person (``human_input_required``).

    ``token`` answers it through ``/form/human_input/{token}``; it is empty when the node is
    delivered only by e-mail or in the console, and then the Service API cannot answer it.
    ``content`` is Markdown with the run's variables filled in and ``{{#$output.<field>#}}``
    marking where each field's value goes (``text()`` shows it without them). ``expires_at`` is
    Unix seconds. ``workflow_run_id`` is the run to follow once it is answered.
    """

    token: str
    form_id: str
    node_id: str
    node_title: str
    content: str
    fields: tuple[FormField, ...] = ()
    actions: tuple[FormAction, ...] = ()
    expires_at: int | None = None
    workflow_run_id: str = ""
    display_in_ui: bool = True

    @property
    def answerable(self) -> bool:
        return bool(self.token)

    def is_expired(self, now: float) -> bool:
        """Dify refuses a form from its expiry second on (``expiration_time <= now``)."""
        return self.expires_at is not None and self.expires_at <= now

    def text(self, blank: str = "") -> str:
        """The content with each field placeholder replaced by ``blank``."""
        text = self.content
        for item in self.fields:
            text = text.replace("{{#$output." + item.name + "#}}", blank)
        return text


@dataclass(frozen=True, slots=True)
class FormFilled:
    """A form was answered and the run resumed (``human_input_form_filled``).
    ``content`` is the form text with the submitted values in place."""

    node_id: str
    node_title: str
    action_id: str
    action_text: str
    content: str = ""


@dataclass(frozen=True, slots=True)
class FormTimedOut:
    """Nobody answered in time; the run resumed down the node's timeout branch."""

    node_id: str
    node_title: str
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class AnswerEnd:
    """The answer is final (``message_end`` or ``workflow_finished``, whichever came first), or
    the run paused for a person (``workflow_paused``).

    ``status`` is ``succeeded``, ``stopped`` (user stop), ``failed`` (Chatflow run failed; no
    ``error`` event follows on Dify 1.13.2) or ``paused``: then ``forms`` are the forms it waits
    for and the answer continues, in the same message, on ``DifyClient.run_events`` of
    ``workflow_run_id`` once one is submitted.
    """

    message_id: str = ""
    conversation_id: str = ""
    status: str = "succeeded"
    error: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    retriever_resources: tuple[dict[str, Any], ...] = ()
    files: tuple[FileOut, ...] = ()
    outputs: dict[str, Any] = field(default_factory=dict)
    workflow_run_id: str = ""
    forms: tuple[FormRequest, ...] = ()

    @property
    def paused(self) -> bool:
        return self.status == "paused"


AnswerEvent = (
    TextDelta
    | TextReplace
    | AgentThought
    | Progress
    | FileOut
    | Reasoning
    | FormRequest
    | FormFilled
    | FormTimedOut
    | AnswerEnd
)


@dataclass(frozen=True, slots=True)
class Answer:
    """What a finished answer carries besides its text, for the platform's final touches."""

    message_id: str = ""
    conversation_id: str = ""
    task_id: str = ""
    dify_user: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    retriever_resources: tuple[dict[str, Any], ...] = ()
    files: tuple[FileOut, ...] = ()
    complete: bool = True
    trace_id: str = ""
    app: str = "default"  # the route name of the app that answered (feedback goes back to it)


# ---- records: a message as JSON-safe data, for the inbound journal ----------------------------


def to_record(message: IncomingMessage) -> dict[str, Any]:
    """The message as plain data (the journal keeps it so any replica can answer it)."""
    record = asdict(message)
    record["key"]["scope"] = message.key.scope.value
    return record


def from_record(record: dict[str, Any]) -> IncomingMessage:
    """The inverse of ``to_record``."""
    data = dict(record)
    key = dict(data.pop("key"))
    key["scope"] = Scope(key["scope"])
    attachments = tuple(Attachment(**item) for item in data.pop("attachments", ()))
    return IncomingMessage(key=ConversationKey(**key), attachments=attachments, **data)
