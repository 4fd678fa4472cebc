"""Peer: PyPI dify-client 0.1.10, the official sync SDK (requests), parsed as its README shows.

The SDK returns the raw streaming response; the caller reads lines and decodes ``data:`` ones.
"""

from __future__ import annotations

import json
import sys
import time

from dify_client import ChatClient


def main(url: str, runs: int) -> None:
    client = ChatClient("app-bench")
    client.base_url = url  # the constructor takes only the key
    best, events = float("inf"), 0
    for _ in range(runs):
        start, events = time.process_time(), 0
        response = client.create_chat_message({}, "bench", "bench", response_mode="streaming")
        for line in response.iter_lines():
            if line.startswith(b"data:"):
                json.loads(line[5:])
                events += 1
        best = min(best, time.process_time() - start)
    print(json.dumps({"events": events, "cpu": best}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
