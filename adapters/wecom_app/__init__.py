"""The WeCom (企业微信) self-built app at `GET/POST /wecom`."""
