"""The core of difybot: one message from a platform to Dify and back. It names no platform."""
