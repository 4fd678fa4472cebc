"""The terminal chat: `difybot chat`, questions from a TTY or a pipe, answers streamed."""
