"""CardKit card entities for the fake Feishu: create, stream text into an element, change the
settings (close streaming), replace the whole card.

Facts used (open.feishu.cn cardkit-v1 docs and real traffic reported against them):
- a card entity is created from card JSON (``{"type": "card_json", "data": "<json>"}``) and sent
  as a message whose content is ``{"type": "card", "data": {"card_id": ...}}``;
- ``PUT .../elements/{element_id}/content`` takes the *whole* text so far for a ``markdown`` or
  ``plain_text`` element; when the old text is a prefix of the new one the client types out the
  rest, otherwise it redraws;
- every operation on one card carries a ``sequence`` that must be larger than the last accepted
  one, shared by all endpoints (content, settings, full update), else ``300317 sequence number
  compare failed``;
- streaming mode closes itself 10 minutes after it was last opened: the first write after that
  gets ``200850 card streaming timeout``, and every later one (and any content write to a card
  whose streaming is off) ``300309 streaming mode is closed``;
- ``settings`` is a JSON string with ``config`` (``streaming_mode``, ``summary``…) and
  ``card_link``; a card entity takes at most 10 operations a second.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.feishu_store import FeishuError, card_texts, check_forms, invalid

STREAMING_TIMEOUT = 600.0
TEXT_TAGS = ("markdown", "plain_text")


@dataclass
class CardEntity:
    card_id: str
    card: dict[str, Any]
    sequence: int = 0
    streaming: bool = False
    opened_at: float | None = None
    operations: list[tuple[str, int]] = field(default_factory=list)  # (operation, sequence)
    contents: list[tuple[str, str]] = field(default_factory=list)  # (element_id, text) accepted

    @property
    def config(self) -> dict[str, Any]:
        config = self.card.setdefault("config", {})
        assert isinstance(config, dict)
        return config

    def element(self, element_id: str) -> dict[str, Any] | None:
        def walk(node: Any) -> dict[str, Any] | None:
            if isinstance(node, dict):
                if node.get("element_id") == element_id:
                    return node
                children = (walk(value) for key, value in node.items() if key != "config")
                return next((found for found in children if found is not None), None)
            if isinstance(node, list):
                return next((f for f in (walk(item) for item in node) if f is not None), None)
            return None

        return walk(self.card.get("body", {}))

    def text(self) -> str:
        return "\n".join(card_texts(self.card))


class CardKit:
    def __init__(
        self,
        *,
        clock: Callable[[], float],
        streaming_timeout: float = STREAMING_TIMEOUT,
        ops_per_second: int = 10,
    ) -> None:
        self._clock = clock
        self.streaming_timeout = streaming_timeout
        self.ops_per_second = ops_per_second
        self.cards: dict[str, CardEntity] = {}
        self._ops: dict[str, list[float]] = {}
        self._ids = itertools.count(7_355_372_766_134_157_313)

    def __getitem__(self, card_id: str) -> CardEntity:
        return self.cards[card_id]

    def create(self, body: dict[str, Any]) -> CardEntity:
        card = _card_json(body)
        entity = CardEntity(str(next(self._ids)), card)
        self._apply_streaming(entity, bool(entity.config.get("streaming_mode")))
        self.cards[entity.card_id] = entity
        return entity

    def content(self, card_id: str, element_id: str, body: dict[str, Any]) -> None:
        entity = self._entity(card_id)
        sequence = self._sequence(entity, body)
        content = body.get("content")
        if not isinstance(content, str) or not content:
            raise invalid("content must be a non-empty string")
        element = entity.element(element_id)
        if element is None or element.get("tag") not in TEXT_TAGS:
            raise FeishuError(300301, f"element {element_id} is not a text element of the card")
        self._check_streaming(entity)
        element["content"] = content
        self._accept(entity, "content", sequence)
        entity.contents.append((element_id, content))

    def settings(self, card_id: str, body: dict[str, Any]) -> None:
        entity = self._entity(card_id)
        sequence = self._sequence(entity, body)
        try:
            settings = json.loads(str(body.get("settings")))
        except ValueError:
            raise invalid("settings must be a JSON string") from None
        if not isinstance(settings, dict):
            raise invalid("settings must be a JSON object")
        config = settings.get("config")
        if isinstance(config, dict):
            if "streaming_mode" in config:
                self._apply_streaming(entity, bool(config["streaming_mode"]))
            entity.config.update(config)
        if isinstance(settings.get("card_link"), dict):
            entity.card["card_link"] = settings["card_link"]
        self._accept(entity, "settings", sequence)

    def update(self, card_id: str, body: dict[str, Any]) -> None:
        entity = self._entity(card_id)
        sequence = self._sequence(entity, body)
        card = body.get("card")
        if not isinstance(card, dict):
            raise invalid("card")
        entity.card = _card_json(card)
        self._apply_streaming(entity, bool(entity.config.get("streaming_mode")))
        self._accept(entity, "update", sequence)

    # ---- rules --------------------------------------------------------------------------------

    def _entity(self, card_id: str) -> CardEntity:
        entity = self.cards.get(card_id)
        if entity is None:
            raise FeishuError(300300, f"card {card_id} does not exist")
        now = self._clock()
        window = [t for t in self._ops.get(card_id, []) if t > now - 1.0]
        if len(window) >= self.ops_per_second:
            # The per-entity cap (10/s) is documented; its refusal shape is assumed to be the
            # gateway's, as for every other rate limit.
            limit = {
                "x-ogw-ratelimit-limit": str(self.ops_per_second),
                "x-ogw-ratelimit-reset": "1",
            }
            raise FeishuError(
                99991400, "request trigger frequency limit", status=429, headers=limit
            )
        self._ops[card_id] = [*window, now]
        return entity

    def _sequence(self, entity: CardEntity, body: dict[str, Any]) -> int:
        sequence = body.get("sequence")
        if not isinstance(sequence, int) or isinstance(sequence, bool):
            raise invalid("sequence")
        if sequence <= entity.sequence:
            raise FeishuError(300317, "sequence number compare failed")
        return sequence

    def _check_streaming(self, entity: CardEntity) -> None:
        if not entity.streaming:
            raise FeishuError(300309, "streaming mode is closed")
        assert entity.opened_at is not None
        if self._clock() - entity.opened_at >= self.streaming_timeout:
            entity.streaming = False
            entity.config["streaming_mode"] = False
            raise FeishuError(200850, "card streaming timeout")

    def _apply_streaming(self, entity: CardEntity, on: bool) -> None:
        if on:
            entity.opened_at = self._clock()  # reopening restarts the 10 minutes
        entity.streaming = on
        entity.config["streaming_mode"] = on

    @staticmethod
    def _accept(entity: CardEntity, operation: str, sequence: int) -> None:
        entity.sequence = sequence
        entity.operations.append((operation, sequence))


def _card_json(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("type") != "card_json":
        raise invalid("type must be card_json")
    try:
        card = json.loads(str(body.get("data")))
    except ValueError:
        raise FeishuError(230099, "Failed to create card content: data is not JSON") from None
    if not isinstance(card, dict):
        raise FeishuError(230099, "Failed to create card content: data is not an object")
    if card.get("schema") != "2.0" and card.get("config", {}).get("streaming_mode"):
        raise FeishuError(230099, "Failed to create card content: streaming needs schema 2.0")
    check_forms(card)
    return card
