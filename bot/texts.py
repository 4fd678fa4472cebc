"""What the bot itself says (errors, notices) in English, Japanese and Chinese; overridable."""

from __future__ import annotations

import difflib
import string
from collections.abc import Iterable, Mapping

BUILT_IN: dict[str, dict[str, str]] = {
    "en": {
        "error": "Sorry, something went wrong while answering. Please try again.",
        "busy": "The assistant is busy right now. Please try again in a moment.",
        "unavailable": "The assistant can't be reached right now. Please try again later.",
        "quota": "The assistant has reached its usage limit. Please try again later.",
        "interrupted": "(The answer was interrupted.)",
        "restarted": "(The answer was interrupted and is starting again.)",
        "stopped": "(Stopped.)",
        "paused": "(This step needs input that can't be given here.)",
        "form_choose": "Reply with the number of your choice:",
        "form_field": "Please reply with “{name}”:",
        "form_already": "This form was already answered.",
        "form_expired": "This form has expired.",
        "form_invalid": "The answer was not accepted: {reason} Please try again.",
        "form_not_allowed": "Sorry, only the person who asked can answer this form.",
        "form_failed": "The answer could not be sent just now. Please try again.",
        "form_filled": "{title}: {action}",
        "form_timed_out": "{title}: no answer in time",
        "thinking": "Thinking…",
        "empty": "(No answer.)",
        "reset": "Started a new conversation.",
        "denied": "Sorry, this assistant isn't available to you here.",
        "rate_limited": "You are sending messages too fast. Please wait a moment.",
        "voice_failed": "Sorry, I couldn't make out that voice message. Please type it instead.",
        # attachments
        "file_only_query": "Please take a look at the attached file.",
        "files_disabled": "Sorry, this assistant can't take files. Please ask in text.",
        "file_not_allowed": "Sorry, this assistant can't take “{name}”. It accepts: {allowed}.",
        "file_not_allowed_here": "Sorry, the assistant refused “{name}” (type not allowed).",
        "file_too_large": "Sorry, “{name}” is too large: this assistant takes files up to {mb} MB.",
        "file_too_large_dify": "Sorry, “{name}” is larger than the assistant accepts.",
        "too_many_files": "Please send at most {limit} files at once.",
        "file_failed": "Sorry, I couldn't fetch “{name}”. Please try sending it again.",
        "file_refused": "(Left out “{names}”: files are only taken from this chat's own storage.)",
    },
    "ja": {
        "error": "申し訳ありません。回答中にエラーが発生しました。もう一度お試しください。",
        "busy": "ただいま混み合っています。少し時間をおいてお試しください。",
        "unavailable": "現在アシスタントに接続できません。しばらくしてからお試しください。",
        "quota": "アシスタントの利用上限に達しました。しばらくしてからお試しください。",
        "interrupted": "(回答が途中で中断されました)",
        "restarted": "(回答が中断されたため、最初からやり直しています)",
        "stopped": "(停止しました)",
        "paused": "(この手順にはここでは入力できない情報が必要です)",
        "form_choose": "番号で返信してください：",
        "form_field": "「{name}」を返信してください：",
        "form_already": "このフォームはすでに回答済みです。",
        "form_expired": "このフォームは期限切れです。",
        "form_invalid": "回答は受け付けられませんでした：{reason} もう一度お試しください。",
        "form_not_allowed": "このフォームには質問した本人だけが回答できます。",
        "form_failed": "回答を送信できませんでした。もう一度お試しください。",
        "form_filled": "{title}：{action}",
        "form_timed_out": "{title}：期限内に回答がありませんでした",
        "thinking": "考えています…",
        "empty": "(回答がありません)",
        "reset": "新しい会話を始めました。",
        "denied": "申し訳ありません。ここではこのアシスタントをご利用いただけません。",
        "rate_limited": "メッセージの送信が速すぎます。少し待ってからお試しください。",
        "voice_failed": "音声メッセージを認識できませんでした。テキストで送ってください。",
        "file_only_query": "添付ファイルを確認してください。",
        "files_disabled": "このアシスタントはファイルを受け付けません。テキストでどうぞ。",
        "file_not_allowed": "「{name}」は受け付けられません。受け付ける形式: {allowed}",
        "file_not_allowed_here": "「{name}」はアシスタントに拒否されました（未対応の形式）。",
        "file_too_large": "「{name}」は大きすぎます。{mb} MB までのファイルを送ってください。",
        "file_too_large_dify": "「{name}」はアシスタントが受け付けるサイズを超えています。",
        "too_many_files": "一度に送れるファイルは {limit} 個までです。",
        "file_failed": "「{name}」を取得できませんでした。もう一度送ってください。",
        "file_refused": "(「{names}」は除外: このチャットの保存先のファイルのみ受け付けます)",
    },
    "zh": {
        "error": "抱歉，回答时出错了，请重试。",
        "busy": "助手正忙，请稍后再试。",
        "unavailable": "暂时无法连接助手，请稍后再试。",
        "quota": "助手已达到使用上限，请稍后再试。",
        "interrupted": "（回答被中断。）",
        "restarted": "（回答被中断，正在重新生成。）",
        "stopped": "（已停止。）",
        "paused": "（此步骤需要在这里无法提供的输入。）",
        "form_choose": "请回复选项的编号：",
        "form_field": "请回复“{name}”：",
        "form_already": "此表单已有人回答。",
        "form_expired": "此表单已过期。",
        "form_invalid": "回答未被接受：{reason} 请重试。",
        "form_not_allowed": "抱歉，只有提问的人可以回答此表单。",
        "form_failed": "暂时无法提交回答，请重试。",
        "form_filled": "{title}：{action}",
        "form_timed_out": "{title}：未在期限内回答",
        "thinking": "思考中…",
        "empty": "（没有回答。）",
        "reset": "已开始新的对话。",
        "denied": "抱歉，您无法在此使用该助手。",
        "rate_limited": "您发送消息太快了，请稍等片刻再试。",
        "voice_failed": "抱歉，没能识别这条语音，请改用文字。",
        "file_only_query": "请查看附件。",
        "files_disabled": "抱歉，该助手不接收文件，请用文字提问。",
        "file_not_allowed": "抱歉，该助手无法接收“{name}”。支持的类型：{allowed}。",
        "file_not_allowed_here": "抱歉，“{name}”被助手拒收（不允许的文件类型）。",
        "file_too_large": "抱歉，“{name}”太大了：该助手接收的文件最大为 {mb} MB。",
        "file_too_large_dify": "抱歉，“{name}”超出了助手接收的大小。",
        "too_many_files": "一次最多只能发送 {limit} 个文件。",
        "file_failed": "抱歉，没能获取“{name}”，请重新发送。",
        "file_refused": "（未采用“{names}”：只接收本聊天平台自己存储的文件。）",
    },
}


Table = Mapping[str, Mapping[str, str]]  # locale -> key -> text


def check_overrides(overrides: Mapping[str, str], table: Table = BUILT_IN) -> list[str]:
    """What is wrong with BOT_TEXTS against ``table``: an unknown key (with the closest real
    one), a placeholder the text does not have, a brace that does not parse."""
    known = table.get("en", {})
    problems = []
    for key, text in overrides.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            problems.append(f"unknown key {key!r} ({hint})")
            continue
        allowed = _placeholders(known[key])
        if not allowed:  # shown as written, never formatted
            continue
        try:
            used = _placeholders(text)
        except ValueError as exc:
            problems.append(f"{key!r} is not a valid template ({exc})")
            continue
        if used - allowed:
            names = ", ".join(sorted("{" + name + "}" for name in used - allowed))
            have = ", ".join(sorted("{" + name + "}" for name in allowed)) or "none"
            problems.append(f"{key!r} uses {names}, which it does not have (it has: {have})")
    return problems


def _placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


class Texts:
    """Looks up a text by key for a locale: override, then the locale, then English.

    Platforms bring their own texts under their name (Slack's button labels, WeChat's "send any
    message"): ``tables`` are added to the core's, so the core's table names no platform."""

    def __init__(
        self,
        default_locale: str = "en",
        overrides: Mapping[str, str] | None = None,
        *,
        tables: Iterable[Table] = (),
    ) -> None:
        self.default_locale = default_locale if default_locale in BUILT_IN else "en"
        self._overrides = dict(overrides or {})
        self._tables = merged(BUILT_IN, *tables)

    def get(self, key: str, locale: str | None = None) -> str:
        if key in self._overrides:
            return self._overrides[key]
        lang = (locale or self.default_locale).split("-")[0].split("_")[0].lower()
        table = self._tables.get(lang) or self._tables[self.default_locale]
        return table.get(key) or self._tables["en"][key]


def merged(*tables: Table) -> dict[str, dict[str, str]]:
    """One table of several, later ones adding to (and overriding) earlier ones per locale."""
    out: dict[str, dict[str, str]] = {}
    for table in tables:
        for lang, texts in table.items():
            out.setdefault(lang, {}).update(texts)
    return out
