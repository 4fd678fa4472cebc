"""Dify's file types and what an app accepts: ``files[].type`` and the ``/parameters`` limits.

Extension groups follow Dify's own (``core/file/constants`` and the Service API docs); the MIME
type decides when the extension is missing or ambiguous (``.webm`` is a Slack audio clip as often
as a video). ``FileRules`` reads ``file_upload`` (new keys and the legacy ``image`` block) and
``system_parameters`` (sizes in MB) so a file the app would silently drop is refused up front.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IMAGE = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".svg"})
AUDIO = frozenset({".mp3", ".m4a", ".wav", ".amr", ".mpga", ".webm", ".ogg"})
VIDEO = frozenset({".mp4", ".mov", ".mpeg", ".webm"})
DOCUMENT = frozenset(
    {".txt", ".md", ".markdown", ".mdx", ".pdf", ".html", ".htm", ".xlsx", ".xls", ".vtt",
     ".properties", ".doc", ".docx", ".csv", ".eml", ".msg", ".pptx", ".ppt", ".xml", ".epub"}
)  # fmt: skip
_DOCUMENT_MIMES = frozenset({"application/pdf", "application/msword", "application/xml"})
# Dify's defaults when an app's parameters say nothing (MB): documents/other, image, audio, video.
_DEFAULT_MB: dict[str, float] = {
    "document": 15,
    "custom": 15,
    "image": 10,
    "audio": 50,
    "video": 100,
}
_SIZE_KEYS = {"document": "file_size_limit", "custom": "file_size_limit",
              "image": "image_file_size_limit", "audio": "audio_file_size_limit",
              "video": "video_file_size_limit"}  # fmt: skip
MB = 1024 * 1024


def extension_of(name: str) -> str:
    """``".pdf"`` for ``"Report.PDF"``; ``""`` when the name has none."""
    stem, dot, ext = name.rpartition(".")
    return f".{ext.lower()}" if dot and stem and ext and "/" not in ext else ""


def file_type(mime_type: str, name: str) -> str:
    """Dify's ``type`` for a file: ``image``, ``audio``, ``video``, ``document`` or ``custom``."""
    major = mime_type.split("/", 1)[0].lower()
    ext = extension_of(name)
    if major in ("image", "audio", "video") and (not ext or ext in IMAGE | AUDIO | VIDEO):
        return major
    for kind, group in (("image", IMAGE), ("audio", AUDIO), ("video", VIDEO)):
        if ext in group:
            return kind
    if ext in DOCUMENT or major == "text" or mime_type.lower() in _DOCUMENT_MIMES:
        return "document"
    return "custom"


@dataclass(frozen=True, slots=True)
class FileRules:
    """What one Dify app takes through ``files[]`` (``local_file`` uploads, which is all we send).

    ``types`` empty with ``enabled`` means "any standard type" (older apps list none).
    ``number_limit`` 0 means no limit was given.
    """

    enabled: bool = False
    types: frozenset[str] = frozenset()
    extensions: frozenset[str] = frozenset()
    number_limit: int = 0
    image_number_limit: int = 0
    sizes_mb: dict[str, float] = field(default_factory=lambda: dict(_DEFAULT_MB))

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> FileRules:
        upload = _dict(parameters.get("file_upload"))
        image = _dict(upload.get("image"))
        sizes = _sizes(_dict(parameters.get("system_parameters")))
        if upload.get("enabled") and _local(upload.get("allowed_file_upload_methods")):
            return cls(
                enabled=True,
                types=frozenset(str(t) for t in upload.get("allowed_file_types") or ()),
                extensions=frozenset(
                    "." + str(e).lower().lstrip(".")
                    for e in upload.get("allowed_file_extensions") or ()
                ),
                number_limit=_int(upload.get("number_limits")),
                image_number_limit=_int(image.get("number_limits")) if image.get("enabled") else 0,
                sizes_mb=sizes,
            )
        if image.get("enabled") and _local(image.get("transfer_methods")):
            # The legacy block alone: an app that takes images and nothing else.
            limit = _int(image.get("number_limits"))
            return cls(
                enabled=True,
                types=frozenset({"image"}),
                number_limit=limit,
                image_number_limit=limit,
                sizes_mb=sizes,
            )
        return cls(sizes_mb=sizes)

    def type_for(self, kind: str, name: str) -> str | None:
        """The ``type`` to send a file as, or None when the app cannot take it."""
        if not self.enabled:
            return None
        if not self.types or kind in self.types:
            return kind
        if "custom" in self.types and extension_of(name) in self.extensions:
            return "custom"
        return None

    def accepts(self, kind: str) -> bool:
        return self.enabled and (not self.types or kind in self.types)

    def limit_bytes(self, kind: str) -> int:
        return int(self.sizes_mb.get(kind, _DEFAULT_MB["custom"]) * MB)

    def allowed_label(self) -> str:
        """What the app takes, for the refusal message: ``image, document, .zip``."""
        kinds = [t for t in sorted(self.types) if t != "custom"] or (
            [] if self.types else ["image", "document", "audio", "video"]
        )
        if "custom" in self.types:
            kinds += sorted(self.extensions)
        return ", ".join(kinds)


def _sizes(system: dict[str, Any]) -> dict[str, float]:
    sizes = dict(_DEFAULT_MB)
    for kind, key in _SIZE_KEYS.items():
        value = system.get(key)
        if isinstance(value, int | float) and value > 0:
            sizes[kind] = float(value)
    return sizes


def _local(methods: Any) -> bool:
    """We send ``local_file`` uploads: an app that allows only ``remote_url`` cannot take them."""
    return not isinstance(methods, list) or "local_file" in methods


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


# /audio-to-text takes audio/mp3, m4a, wav, amr, mpga, webm and rejects the common audio/mpeg
# (415 unsupported_audio_type, dify-api.md §9): name the types the way it wants them.
_SPEECH_MIMES = {"audio/mpeg": "audio/mp3", "audio/mp4": "audio/m4a", "audio/x-m4a": "audio/m4a",
                 "audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "video/webm": "audio/webm",
                 "audio/3gpp": "audio/amr"}  # fmt: skip
AUDIO_TO_TEXT_LIMIT = 30 * MB


def speech_mime_type(mime_type: str, name: str) -> str:
    """The MIME type ``/audio-to-text`` accepts for this recording."""
    mime = mime_type.split(";")[0].strip().lower()
    if mime in _SPEECH_MIMES:
        return _SPEECH_MIMES[mime]
    if mime.startswith("audio/"):
        return mime
    ext = extension_of(name)
    return f"audio/{ext[1:]}" if ext in AUDIO else "audio/mp3"
