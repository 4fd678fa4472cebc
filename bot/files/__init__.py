"""Files both ways: attachments into Dify, files in answers out, type rules, guarded downloads."""
