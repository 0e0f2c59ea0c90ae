"""The token of a password reset link: the reset id and its HMAC-SHA256 under PASSWORD_RESET_KEY.

The notifier makes it when it mails the link, identity checks it when the link is used; the key is
shared by those two alone. Events carry only the reset id, which without the key opens nothing.
Whether the reset is still open (not used, superseded or expired) is the account aggregate's to say.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid

_CONTEXT = b"mfaplane password reset v1\n"
_FORM = re.compile(r"([0-9a-f]{32})\.([A-Za-z0-9_-]{43})")
MAX_LENGTH = 76  # 32 hex digits, a dot, 43 characters of base64url


def _mac(key: str, reset_id: uuid.UUID) -> str:
    digest = hmac.new(key.encode(), _CONTEXT + reset_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def token(key: str, reset_id: uuid.UUID) -> str:
    return f"{reset_id.hex}.{_mac(key, reset_id)}"


def reset_id_of(key: str, text: str) -> uuid.UUID | None:
    """The reset id `text` carries, if its MAC is right under `key` (compared in constant time)."""
    form = _FORM.fullmatch(text)
    if form is None:
        return None
    reset_id = uuid.UUID(hex=form[1])
    return reset_id if hmac.compare_digest(_mac(key, reset_id), form[2]) else None
