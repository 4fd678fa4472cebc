"""The Dify Service API: client, HTTP errors, SSE frames, typed events, the answer stream."""
