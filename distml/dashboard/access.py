"""Who may see the dashboard: a token derived from the cluster's shared secret, and the URL that
carries it.

Anyone holding the secret can derive the token (clients build the link themselves; the token
never travels on the cluster's connections), and the token reveals nothing about the secret
(HMAC-SHA256 with a fixed label). A browser presents it once as ``?token=``, then as a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
from typing import Any

from distml.comm import parse_address

#: Label mixed into the HMAC, so that the token is good for the dashboard only.
_LABEL = b"distml-dashboard-token-v1"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def dashboard_token(secret: str) -> str:
    """The dashboard token of the cluster whose shared secret is ``secret``."""
    if not secret:
        raise ValueError("the dashboard token is derived from the cluster's secret; none is set")
    return hmac.new(secret.encode(), _LABEL, hashlib.sha256).hexdigest()[:40]


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison (no timing hints about the token)."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def dashboard_url(scheme: str, host: str, port: int, token: str | None = None) -> str:
    """``http://host:port/`` (``?token=...`` appended when given); a wildcard listening host is
    replaced by this machine's name, IPv6 hosts are bracketed."""
    if host in WILDCARD_HOSTS:
        host = socket.gethostname()
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}:{port}/"
    return f"{url}?token={token}" if token else url


def link_for(scheduler_address: str, dashboard: dict[str, Any] | None, secret: str) -> str | None:
    """The dashboard link of the scheduler at ``scheduler_address``, reached through the same
    host name, from the ``dashboard`` part of its ``info`` (None: it serves no dashboard)."""
    if not dashboard:
        return None
    _, host, _ = parse_address(scheduler_address)
    return dashboard_url(dashboard["scheme"], host, dashboard["port"], dashboard_token(secret))
