"""Card instances on the fake DingTalk: create, deliver, createAndDeliver, PUT data, and the AI
card's ``PUT /v1.0/card/streaming`` with its guid / isFull / isFinalize / isError semantics.

What a person sees is ``Card.data`` (the public ``cardParamMap``, all strings, streamed variables
included) in the spaces the card was delivered to. AI cards carry ``flowStatus``: 1 processing,
2 inputting, 3 finished, 4 executing, 5 failed (the values dingtalk-stream's ``AICardStatus``
uses); streaming moves a card to 2, ``isFinalize`` to 3, ``isError`` to 5.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.dingtalk_wire import json_response, openapi_error

PROCESSING, INPUTTING, FINISHED, FAILED = "1", "2", "3", "5"
SPACE_PREFIX = "dtv1.card//"


@dataclass(frozen=True)
class CardTemplate:
    """A template made in DingTalk's card builder. ``streaming_keys``: the variables the AI
    card may stream into (``PUT /v1.0/card/streaming`` with another key is refused)."""

    template_id: str
    streaming_keys: frozenset[str] = frozenset({"content"})


@dataclass
class Card:
    out_track_id: str
    template_id: str
    data: dict[str, str]
    callback_type: str = "STREAM"
    callback_route_key: str = ""
    private: dict[str, dict[str, str]] = field(default_factory=dict)  # by user id
    spaces: list[str] = field(default_factory=list)  # "IM_GROUP.<cid>", "IM_ROBOT.<userId>"
    finalized: set[str] = field(default_factory=set)  # streamed keys closed by isFinalize
    guids: set[str] = field(default_factory=set)
    history: list[str] = field(default_factory=list)  # the streamed text after each update
    at_users: dict[str, str] = field(default_factory=dict)
    created_at: int = 0  # the fake's sequence number, to order a chat's messages and cards

    @property
    def flow_status(self) -> str:
        return self.data.get("flowStatus", "")


class CardStore:
    """The card routes of the fake's api origin (mounted by ``FakeDingTalk``)."""

    def __init__(
        self, robot_code: str, notify: Callable[[], None], sequence: Callable[[], int]
    ) -> None:
        self.robot_code = robot_code
        self._sequence = sequence
        self.templates: dict[str, CardTemplate] = {}
        self.cards: dict[str, Card] = {}
        self._notify = notify
        self._carriers = itertools.count(1)

    def add_template(self, template: CardTemplate) -> None:
        self.templates[template.template_id] = template

    def in_space(self, space: str) -> list[Card]:
        return [card for card in self.cards.values() if space in card.spaces]

    # ---- handlers (the caller has checked the token and recorded the call) ---------------

    def create(self, body: dict[str, Any]) -> web.Response:
        error = self._created(body)
        if error is not None:
            return error
        return json_response({"success": True, "result": body["outTrackId"]})

    def deliver(self, body: dict[str, Any]) -> web.Response:
        card = self.cards.get(str(body.get("outTrackId", "")))
        if card is None:
            return openapi_error(400, "param.outTrackId.notExist", "卡片实例不存在")
        results = self._delivered(card, body)
        if isinstance(results, web.Response):
            return results
        return json_response({"success": True, "result": results})

    def create_and_deliver(self, body: dict[str, Any]) -> web.Response:
        if not body.get("openSpaceId"):
            return openapi_error(400, "param.openSpaceId.invalid", "openSpaceId 不能为空")
        error = self._created(body)
        if error is not None:
            return error
        card = self.cards[body["outTrackId"]]
        results = self._delivered(card, body)
        if isinstance(results, web.Response):
            del self.cards[card.out_track_id]
            return results
        result = {"outTrackId": card.out_track_id, "deliverResults": results}
        return json_response({"success": True, "result": result})

    def update(self, body: dict[str, Any]) -> web.Response:
        card = self.cards.get(str(body.get("outTrackId", "")))
        if card is None:
            return openapi_error(400, "param.outTrackId.notExist", "卡片实例不存在")
        params = _param_map(body.get("cardData"))
        if isinstance(params, web.Response):
            return params
        options = body.get("cardUpdateOptions") or {}
        if options.get("updateCardDataByKey"):
            card.data.update(params)
        elif params:  # without updateCardDataByKey the public data is replaced
            card.data = dict(params)
        self._notify()
        return json_response({"success": True, "result": True})

    def stream(self, body: dict[str, Any]) -> web.Response:
        missing = [name for name in ("outTrackId", "guid", "key") if not body.get(name)]
        if missing or not isinstance(body.get("content"), str):
            return openapi_error(400, "param.invalid", f"缺少参数：{missing or ['content']}")
        card = self.cards.get(body["outTrackId"])
        if card is None or not card.spaces:
            return openapi_error(400, "param.outTrackId.notExist", "卡片实例不存在或未投放")
        key = body["key"]
        template = self.templates[card.template_id]
        if key not in template.streaming_keys:
            return openapi_error(400, "param.key.invalid", f"{key} 不是模板的流式变量")
        if key in card.finalized:
            return openapi_error(400, "card.streaming.finished", "流式更新已结束")
        if body["guid"] not in card.guids:  # a repeated guid is a retry: applied once
            card.guids.add(body["guid"])
            self._apply_stream(card, key, body)
        self._notify()
        return json_response({"success": True, "result": True})

    # ---- state changes --------------------------------------------------------------------

    def _created(self, body: dict[str, Any]) -> web.Response | None:
        template_id = str(body.get("cardTemplateId", ""))
        out_track_id = str(body.get("outTrackId", ""))
        if template_id not in self.templates:
            return openapi_error(400, "param.cardTemplateId.invalid", "卡片模板不存在或未发布")
        if not out_track_id:
            return openapi_error(400, "param.outTrackId.invalid", "outTrackId 不能为空")
        if out_track_id in self.cards:
            return openapi_error(400, "param.outTrackId.duplicate", "outTrackId 已存在")
        params = _param_map(body.get("cardData"))
        if isinstance(params, web.Response):
            return params
        callback_type = str(body.get("callbackType") or "STREAM")
        if callback_type == "HTTP" and not body.get("callbackRouteKey"):
            return openapi_error(400, "param.callbackRouteKey.invalid", "HTTP 回调需要 routeKey")
        self.cards[out_track_id] = Card(
            out_track_id, template_id, dict(params), callback_type,
            str(body.get("callbackRouteKey") or ""), created_at=self._sequence(),
        )  # fmt: skip
        return None

    def _delivered(self, card: Card, body: dict[str, Any]) -> list[dict[str, Any]] | web.Response:
        spaces = [s for s in str(body.get("openSpaceId", "")).split(";") if s]
        if not spaces or not all(s.startswith(SPACE_PREFIX) for s in spaces):
            return openapi_error(400, "param.openSpaceId.invalid", "openSpaceId 格式不正确")
        results = []
        for raw in spaces:
            space_type, _, space_id = raw.removeprefix(SPACE_PREFIX).partition(".")
            error = self._deliver_model_error(space_type, body)
            if error is not None:
                return openapi_error(400, "param.deliverModel.invalid", error)
            card.spaces.append(f"{space_type}.{space_id}")
            group = body.get("imGroupOpenDeliverModel") or {}
            card.at_users.update(group.get("atUserIds") or {})
            results.append({"spaceType": space_type, "spaceId": space_id, "success": True,
                            "carrierId": f"carrier-{next(self._carriers)}"})  # fmt: skip
        self._notify()
        return results

    def _deliver_model_error(self, space_type: str, body: dict[str, Any]) -> str | None:
        if space_type == "IM_GROUP":
            model = body.get("imGroupOpenDeliverModel") or {}
            if model.get("robotCode") != self.robot_code:
                return "imGroupOpenDeliverModel.robotCode 必须是机器人的 robotCode"
            return None
        if space_type == "IM_ROBOT":
            model = body.get("imRobotOpenDeliverModel") or {}
            return None if model.get("spaceType") == "IM_ROBOT" else "缺少 imRobotOpenDeliverModel"
        return f"不支持的 spaceType {space_type}"

    def _apply_stream(self, card: Card, key: str, body: dict[str, Any]) -> None:
        content = body["content"]
        card.data[key] = content if body.get("isFull") else card.data.get(key, "") + content
        card.history.append(card.data[key])
        if body.get("isError"):
            card.data["flowStatus"] = FAILED
            card.finalized.add(key)
        elif body.get("isFinalize"):
            card.data["flowStatus"] = FINISHED
            card.finalized.add(key)
        elif card.flow_status in ("", PROCESSING):
            card.data["flowStatus"] = INPUTTING

    def apply_callback_answer(self, out_track_id: str, user_id: str, answer: Any) -> None:
        """A card callback's ack may carry an update (``cardData`` / ``userPrivateData``)."""
        card = self.cards.get(out_track_id)
        if card is None or not isinstance(answer, dict):
            return
        public = _param_map(answer.get("cardData"))
        if isinstance(public, dict):
            card.data.update(public)
        private = _param_map(answer.get("userPrivateData"))
        if isinstance(private, dict):
            card.private.setdefault(user_id, {}).update(private)
        self._notify()


def _param_map(card_data: Any) -> dict[str, str] | web.Response:
    """``cardData.cardParamMap`` is Map<String, String>: non-string values are refused (callers
    JSON-encode lists and objects themselves)."""
    if card_data is None:
        return {}
    params = card_data.get("cardParamMap") if isinstance(card_data, dict) else None
    if params is None:
        return {}
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        return openapi_error(400, "param.cardParamMap.invalid", "cardParamMap 的值必须是字符串")
    return dict(params)
