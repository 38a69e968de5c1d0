"""Logging set-up: readable lines in development, JSON lines for a log collector in production."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_configured: tuple[str, str] | None = None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send the ``chatbot`` loggers to stdout once per process (Streamlit reruns call this often)."""
    global _configured
    if _configured == (level, fmt):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter() if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("chatbot")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    _configured = (level, fmt)
