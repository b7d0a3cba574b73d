"""Time-limited TURN credentials, minted per caller: coturn's `use-auth-secret` (TURN REST) scheme.

The username is ``"<expiry unix time>:<user>"`` and the password base64(HMAC-SHA1(secret, username));
coturn, given the same `static-auth-secret`, checks both and refuses them after the expiry, so a
page's credentials are worthless once the call could have started.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any


def turn_rest_credentials(secret: str, user: str, expiry_unix_s: int) -> tuple[str, str]:
    """(username, credential) valid until `expiry_unix_s`."""
    username = f"{expiry_unix_s}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class TurnMinter:
    """Mints one caller's TURN server entry (browser JSON) from the shared secret."""

    secret: str
    urls: tuple[str, ...]
    ttl_s: int = 3600

    def __call__(self) -> list[dict[str, Any]]:
        # Wall-clock time on purpose: coturn compares the expiry with its own clock.
        expiry = int(time.time()) + self.ttl_s
        username, credential = turn_rest_credentials(self.secret, f"voxframe-{secrets.token_hex(4)}", expiry)
        return [{"urls": list(self.urls), "username": username, "credential": credential}]
