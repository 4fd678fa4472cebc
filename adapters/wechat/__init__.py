"""The WeChat family: Official Account (公众号), WeCom (企业微信) self-built app and AI bot."""
