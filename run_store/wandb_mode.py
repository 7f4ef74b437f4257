"""Whether W&B goes online, offline or nowhere: decided the same way by the trainer and by
`griffin-figures --wandb`, without ever hanging a run.

Mode 'auto' goes online only if an API key is present (WANDB_API_KEY, an identity token file,
or a netrc entry for the W&B host: read locally, never sent anywhere by us) and the host
answers an HTTP request within the probe's deadline (name lookup, connect and the answer
together, in a daemon thread); otherwise offline (`wandb sync` the folder later). It lives in
the bottom package because both `experiments/` and `analysis/` log to W&B. Standard library
only: no wandb import.
"""

from __future__ import annotations

import netrc
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

MODES = ("auto", "online", "offline", "disabled")
DEFAULT_BASE_URL = "https://api.wandb.ai"


def wandb_base_url() -> str:
    return os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL


def has_api_key(base_url: str | None = None) -> bool:
    """Whether credentials for the W&B host are available locally (no network, no writes):
    WANDB_API_KEY, WANDB_IDENTITY_TOKEN_FILE, or a netrc entry (NETRC, ~/.netrc, ~/_netrc)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(base_url or wandb_base_url()).netloc
    if not host:
        return False
    candidates = [os.environ["NETRC"]] if os.environ.get("NETRC") else []
    home = Path(os.path.expanduser("~"))
    candidates += [str(home / ".netrc"), str(home / "_netrc")]
    for path in candidates:
        if not os.path.isfile(path):
            continue
        try:
            entry = netrc.netrc(path).authenticators(host)
        except (OSError, netrc.NetrcParseError):
            continue
        if entry and entry[2]:
            return True
    return False


def host_reachable(base_url: str | None = None, timeout_s: float = 2.0) -> bool:
    """True if the W&B host accepts a TCP connection within `timeout_s`, name lookup
    included (done in a daemon thread, so a stuck resolver cannot hold the caller)."""
    parts = urlsplit(base_url or wandb_base_url())
    if not parts.hostname:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ok = threading.Event()

    def probe() -> None:
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout_s):
                ok.set()
        except OSError:
            pass

    thread = threading.Thread(target=probe, name="wandb-host-probe", daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    return ok.is_set()


def resolve_mode(mode: str = "auto", connect_timeout_s: float = 2.0) -> str:
    """'online', 'offline' or 'disabled' for a requested mode (see the module doc). In
    'auto', WANDB_MODE=offline/dryrun/disabled and WANDB_DISABLED=true are honoured."""
    if mode not in MODES:
        raise ValueError(f"wandb mode {mode!r} is not one of {list(MODES)}")
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
        return "disabled"
    env_mode = os.environ.get("WANDB_MODE", "").lower()
    if env_mode == "disabled":
        return "disabled"
    if env_mode in ("offline", "dryrun"):
        return "offline"
    if not has_api_key():
        return "offline"
    if not host_reachable(timeout_s=connect_timeout_s):
        return "offline"
    return "online"
