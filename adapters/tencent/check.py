"""What a refused WeChat or WeCom token means (each product runs its own ``difybot check``)."""

from __future__ import annotations

from adapters.spec import Check
from adapters.tencent.errors import WeChatAPIError

# The errcodes a wrong setup gives, and what fixes each.
_FIXES = {
    40013: "the id is wrong: check WECHAT_APP_ID / WECOM_CORP_ID",
    40125: "the secret is wrong: check WECHAT_APP_SECRET",
    40001: "the secret is wrong: check WECHAT_APP_SECRET / WECOM_SECRET",
    40091: "the secret is wrong: check WECOM_SECRET",
    40164: "this server's IP is not on the account's IP allowlist: add it in the console",
    60020: "this server's IP is not on the WeCom app's trusted IP list: add it in the admin",
    -1: "cannot reach the API: check WECHAT_API_BASE / WECOM_API_BASE and the network",
}


def failed(name: str, account: str, exc: WeChatAPIError) -> Check:
    fix = _FIXES.get(exc.errcode, "see the errcode in the WeChat/WeCom error code list")
    return Check(name, False, f"{account}: token refused (errcode {exc.errcode})", fix)
