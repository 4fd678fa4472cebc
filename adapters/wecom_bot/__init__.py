"""The WeCom AI bot (智能机器人) at `GET/POST /wecom/bot`, streamed answers."""
