"""Credentials in URIs (`https://user:token@host`) hidden before anything is logged, recorded in
MLflow or a report, or printed: a tracking URI often carries a token."""

from __future__ import annotations

import logging
import re

# scheme://userinfo@ : everything between `//` and `@` before the host is a credential. Hydra
# prints and records an override's value with its colons escaped (`http\://user\:token@host`).
USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*\\?://)[^/\s@]+@")


def redact(text: str) -> str:
    """`https://user:token@host/x` → `https://***@host/x`, anywhere in `text`."""
    return USERINFO.sub(r"\g<scheme>***@", text)


def without_credentials(url: str) -> str:
    """`https://user:token@host/x` → `https://host/x`: a link a browser can open."""
    return USERINFO.sub(r"\g<scheme>", url)


class RedactingFilter(logging.Filter):
    """Redacts every record a handler emits, whoever logged it (MLflow's own warnings too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if USERINFO.search(message):
            record.msg, record.args = redact(message), None
        return True
