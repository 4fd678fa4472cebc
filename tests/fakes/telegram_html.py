"""Telegram's parse_mode=HTML, as the Bot API server parses it: text and entities, or the error.

Built from the documented rules (core.telegram.org/bots/api#html-style) and the behaviour of the
server's parser (tdlib td/telegram/MessageEntity.cpp, parse_html; read, not copied):
- only b/strong, i/em, u/ins, s/strike/del, span class="tg-spoiler", tg-spoiler, a href,
  tg-emoji emoji-id, tg-time, code, pre, blockquote [expandable] are tags; anything else after a
  ``<`` is ``Unsupported start tag "x" at byte offset N`` (offsets count UTF-8 bytes);
- ``&lt; &gt; &amp; &quot;`` and numeric references are decoded; any other ``&`` stays literal;
- ``</>`` closes the innermost tag; a mismatched end tag is an error naming both tags;
- entity offsets and lengths count UTF-16 code units; empty entities are dropped.
The Bot API prefixes these messages: "Bad Request: can't parse entities: <message>".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUPPORTED_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "tg-time",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
SIMPLE_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
NAMED_REFERENCES = {b"lt": "<", b"gt": ">", b"amp": "&", b"quot": '"'}
SPACES = b" \t\r\n\v"  # tdlib is_space (plus the end of the text)


class EntityParseError(ValueError):
    """The text is not HTML Telegram accepts; ``str(error)`` is the server's own message."""


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclass
class _Open:
    tag: str
    argument: str
    offset: int  # UTF-16 offset in the output where the tag's content starts
    text_start: int  # index in the output characters, for <a> without href


@dataclass
class _Parser:
    raw: bytes
    pos: int = 0
    out: list[str] = field(default_factory=list)
    utf16: int = 0
    stack: list[_Open] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)

    def peek(self, at: int | None = None) -> int:
        at = self.pos if at is None else at
        return self.raw[at] if at < len(self.raw) else 0

    def emit(self, text: str) -> None:
        self.out.append(text)
        self.utf16 += utf16_len(text)

    def run(self) -> tuple[str, list[dict[str, Any]]]:
        while self.pos < len(self.raw):
            byte = self.raw[self.pos]
            if byte == ord("&"):
                self.reference()
            elif byte == ord("<"):
                self.tag()
            else:
                self.literal()
        if self.stack:
            raise EntityParseError(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1].tag}"'
            )
        text = "".join(self.out)
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            raise EntityParseError(
                "Text contains invalid Unicode characters after decoding HTML entities, "
                "check for unmatched surrogate code units"
            )
        for entity in self.entities:
            entity.pop("lang", None)  # a language only survives on a pre entity
        self.entities.sort(key=lambda e: (e["offset"], -e["length"]))
        return text, self.entities

    def literal(self) -> None:
        end = self.pos + 1
        while end < len(self.raw) and self.raw[end] not in (ord("&"), ord("<")):
            end += 1
        self.emit(self.raw[self.pos : end].decode("utf-8", errors="replace"))
        self.pos = end

    def reference(self) -> None:
        decoded, end = decode_reference(self.raw, self.pos)
        if decoded is None:  # an unknown or broken reference is kept as text
            self.emit("&")
            self.pos += 1
            return
        self.emit(decoded)
        self.pos = end

    def tag(self) -> None:
        begin = self.pos
        self.pos += 1
        if self.peek() == ord("/"):
            self.end_tag(begin)
        else:
            self.start_tag(begin)

    def start_tag(self, begin: int) -> None:
        while self.pos < len(self.raw) and self.peek() not in SPACES and self.peek() != ord(">"):
            self.pos += 1
        if self.pos >= len(self.raw):
            raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
        name = self.raw[begin + 1 : self.pos].decode("utf-8", errors="replace").lower()
        if name not in SUPPORTED_TAGS:
            raise EntityParseError(f'Unsupported start tag "{name}" at byte offset {begin}')
        argument = self.attributes(name, begin)
        self.pos += 1  # the '>'
        if name == "span" and argument != "spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {begin}'
            )
        self.stack.append(_Open(name, argument, self.utf16, len(self.out)))

    def attributes(self, tag: str, begin: int) -> str:
        """Read attributes up to the closing '>' and return the one the tag uses."""
        argument = ""
        while self.peek() != ord(">"):
            while self.pos < len(self.raw) and self.peek() in SPACES:
                self.pos += 1
            if self.peek() == ord(">"):
                break
            start = self.pos
            while self.pos < len(self.raw) and self.peek() not in SPACES + b"=>/\"'":
                self.pos += 1
            name = self.raw[start : self.pos].decode("utf-8", errors="replace")
            if not name:
                raise EntityParseError(
                    f'Empty attribute name in the tag "{tag}" at byte offset {begin}'
                )
            while self.pos < len(self.raw) and self.peek() in SPACES:
                self.pos += 1
            if self.peek() != ord("="):
                if self.pos >= len(self.raw):
                    raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if tag == "blockquote" and name == "expandable":
                    argument = "1"
                continue
            self.pos += 1
            while self.pos < len(self.raw) and self.peek() in SPACES:
                self.pos += 1
            if self.pos >= len(self.raw):
                raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
            value = self.attribute_value()
            if self.pos >= len(self.raw):
                raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
            argument = _argument(tag, name, value, argument)
        return argument

    def attribute_value(self) -> str:
        quote = self.peek()
        if quote not in (ord('"'), ord("'")):  # an unquoted name token: [A-Za-z0-9.-]+
            start = self.pos
            while (chr(self.peek()).isalnum() and self.peek() < 128) or self.peek() in b".-":
                self.pos += 1
            if self.pos < len(self.raw) and self.peek() not in SPACES and self.peek() != ord(">"):
                raise EntityParseError(f"Unexpected end of name token at byte offset {start}")
            return self.raw[start : self.pos].decode().lower()
        self.pos += 1
        parts: list[str] = []
        start = self.pos
        while self.pos < len(self.raw) and self.peek() != quote:
            if self.peek() == ord("&"):
                decoded, end = decode_reference(self.raw, self.pos)
                if decoded is not None:
                    parts.append(self.raw[start : self.pos].decode("utf-8", errors="replace"))
                    parts.append(decoded)
                    self.pos = start = end
                    continue
            self.pos += 1
        parts.append(self.raw[start : self.pos].decode("utf-8", errors="replace"))
        if self.peek() == quote:
            self.pos += 1
        return "".join(parts)

    def end_tag(self, begin: int) -> None:
        if not self.stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {begin}")
        self.pos += 1  # the '/'
        start = self.pos
        while self.pos < len(self.raw) and self.peek() not in SPACES and self.peek() != ord(">"):
            self.pos += 1
        name = self.raw[start : self.pos].decode("utf-8", errors="replace").lower()
        while self.pos < len(self.raw) and self.peek() in SPACES:
            self.pos += 1
        if self.peek() != ord(">"):
            raise EntityParseError(f"Unclosed end tag at byte offset {begin}")
        self.pos += 1
        opened = self.stack[-1]
        if name and name != opened.tag:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {begin}, expected "</{opened.tag}>", '
                f'found "</{name}>"'
            )
        self.stack.pop()
        if self.utf16 > opened.offset:
            self.close(opened)

    def close(self, opened: _Open) -> None:
        offset, length = opened.offset, self.utf16 - opened.offset
        span = {"offset": offset, "length": length}
        tag, argument = opened.tag, opened.argument
        last = self.entities[-1] if self.entities else None
        same_span = last is not None and last["offset"] == offset and last["length"] == length
        if tag in SIMPLE_TYPES:
            self.entities.append({"type": SIMPLE_TYPES[tag], **span})
        elif tag == "tg-emoji":
            if not argument.isdigit() or int(argument) == 0:
                raise EntityParseError("Invalid custom emoji identifier specified")
            self.entities.append({"type": "custom_emoji", **span, "custom_emoji_id": argument})
        elif tag == "tg-time":
            self.time_entity(argument, span)
        elif tag == "a":
            self.link(opened, span)
        elif tag == "blockquote":
            kind = "expandable_blockquote" if argument else "blockquote"
            self.entities.append({"type": kind, **span})
        elif tag == "pre" and same_span and last and last["type"] == "code" and last.get("lang"):
            last.update(type="pre", language=last.pop("lang"))  # <pre><code class=...>
        elif tag == "pre":
            self.entities.append({"type": "pre", **span})
        elif tag == "code" and same_span and last and last["type"] == "pre" and argument:
            last["language"] = argument  # <code class=...> around a whole <pre>
        else:  # code; a language on a standalone <code> is dropped
            self.entities.append(
                {"type": "code", **span, **({"lang": argument} if argument else {})}
            )

    def time_entity(self, argument: str, span: dict[str, int]) -> None:
        unix, _, fmt = argument.partition("|")
        if fmt not in ("r", "R") and any(c not in "tTdDwW" for c in fmt):
            raise EntityParseError("Invalid date format used")
        if unix.isdigit() and int(unix) > 0:
            entity = {"type": "date_time", **span, "unix_time": int(unix)}
            if fmt:
                entity["date_time_format"] = fmt
            self.entities.append(entity)

    def link(self, opened: _Open, span: dict[str, int]) -> None:
        url = opened.argument or "".join(self.out[opened.text_start :])
        if url.startswith("tg://user?id="):
            user_id = url.removeprefix("tg://user?id=")
            if user_id.isdigit():
                user = {"id": int(user_id), "is_bot": False, "first_name": ""}
                self.entities.append({"type": "text_mention", **span, "user": user})
            return
        checked = checked_link(url)
        if checked:  # the server silently drops a link it cannot make sense of
            self.entities.append({"type": "text_link", **span, "url": checked})


def _argument(tag: str, name: str, value: str, current: str) -> str:
    if tag == "a" and name == "href":
        return value
    if tag == "code" and name == "class" and value.startswith("language-"):
        return value.removeprefix("language-")
    if tag == "span" and name == "class" and value.startswith("tg-"):
        return value.removeprefix("tg-")
    if tag == "tg-emoji" and name == "emoji-id":
        return value
    if tag == "blockquote" and name == "expandable":
        return "1"
    if tag == "tg-time" and name in ("unix", "format"):
        unix, _, fmt = current.partition("|")
        return f"{value}|{fmt}" if name == "unix" else f"{unix}|{value}"
    return current


def decode_reference(raw: bytes, pos: int) -> tuple[str | None, int]:
    """Decode the reference at ``raw[pos] == '&'``: (text, end) or (None, pos)."""
    end = pos + 1
    if raw[end : end + 1] == b"#":
        end += 1
        hexadecimal = raw[end : end + 1] == b"x"
        digits = b"0123456789abcdefABCDEF" if hexadecimal else b"0123456789"
        end += hexadecimal
        start = end
        while end < len(raw) and raw[end] in digits:
            end += 1
        digits_text = raw[start:end].decode()
        code = int(digits_text, 16 if hexadecimal else 10) if digits_text else 0
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return None, pos
        decoded = chr(code)
    else:
        while end < len(raw) and chr(raw[end]).isalpha() and raw[end] < 128:
            end += 1
        named = NAMED_REFERENCES.get(raw[pos + 1 : end])
        if named is None:
            return None, pos
        decoded = named
    return decoded, end + 1 if raw[end : end + 1] == b";" else end


def checked_link(url: str) -> str:
    """A link the server keeps, normalized like tdlib's LinkManager::get_checked_link: an
    http(s)/tg/ton/tonsite URL or a bare host (given http://), with "/" when it has no path;
    anything with whitespace is dropped ("" means no entity)."""
    if not url or any(c.isspace() for c in url):
        return ""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "http", url
    scheme = scheme.lower()
    if scheme not in ("http", "https", "tg", "ton", "tonsite") or not rest:
        return ""
    host, slash, _ = rest.partition("/")
    head, query_mark, query = host.partition("?")
    if scheme in ("http", "https") and ("." not in head or head.startswith(".")):
        return ""
    if scheme in ("http", "https") and not slash:
        return f"{scheme}://{head}/" + (f"?{query}" if query_mark else "")
    return f"{scheme}://{rest}"


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """(plain text, MessageEntity dicts) exactly as Telegram would store them, before trimming."""
    return _Parser(text.encode("utf-8")).run()


def trim(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The server trims trailing whitespace, and leading spaces/newlines before the first entity
    (tdlib fix_formatted_text); entities past the end are cut."""
    stripped = text.rstrip()
    end16 = utf16_len(stripped)
    kept = []
    for entity in entities:
        if entity["offset"] >= end16:
            continue
        length = min(entity["length"], end16 - entity["offset"])
        kept.append({**entity, "length": length})
    first = min((e["offset"] for e in kept), default=end16)
    lead = 0
    while (
        lead < len(stripped)
        and stripped[lead] in " \n"
        and utf16_len(stripped[: lead + 1]) <= first
    ):
        lead += 1
    shift = utf16_len(stripped[:lead])
    return stripped[lead:], [{**e, "offset": e["offset"] - shift} for e in kept]
