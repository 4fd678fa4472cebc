"""Operations: metrics, logs, and how busy this process is."""
