"""Tencent's shared protocol pieces for WeChat and WeCom: crypto, XML, callbacks, the API client."""
