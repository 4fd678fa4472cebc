"""The WeChat Official Account (公众号) at `GET/POST /wechat`: the 5-second rule, push and fetch."""
