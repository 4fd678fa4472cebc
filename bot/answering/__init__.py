"""Answering one message: the gate, the conversation, the Dify run, the progressive reply."""
