"""Whether W&B goes online, offline or nowhere: decided the same way by the trainer and by
`griffin-figures --wandb`, without ever hanging a run.

Mode 'auto' goes online only if an API key is present (WANDB_API_KEY, an identity token file,
or a netrc entry for the W&B host: read locally, never sent anywhere by us) and the host
answers: `host_answers` sends `HEAD` to WANDB_BASE_URL (its scheme, host and path; proxies
from the environment as wandb uses them) and needs an HTTP status line back, any status, within
the deadline (2 s for name lookup, connect, TLS and the answer together). A host that accepts
the connection but never answers is offline. The request runs in a daemon thread, so nothing
holds the caller past the deadline plus a small margin. Otherwise offline (`wandb sync` the
folder later). It lives in the bottom package because both `experiments/` and `analysis/` log
to W&B. Standard library only: no wandb import.
"""

from __future__ import annotations

import netrc
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

MODES = ("auto", "online", "offline", "disabled")
DEFAULT_BASE_URL = "https://api.wandb.ai"
_JOIN_MARGIN_S = 0.1  # how long past the deadline the caller waits for the probe thread to report


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer too: report its status instead of following it."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def host_answers(base_url: str | None = None, timeout_s: float = 2.0) -> bool:
    """True if the W&B host answers an HTTP request (`HEAD` on the base URL) with any status
    line (200, 401, 404, a redirect, ...) within `timeout_s`, counted from the call: name
    lookup, connect, TLS and the answer together. The request runs in a daemon thread and the
    caller waits at most `timeout_s` + `_JOIN_MARGIN_S`; a later answer counts for nothing."""
    url = base_url or wandb_base_url()
    try:
        parts = urlsplit(url)
        _ = parts.port  # a malformed port raises ValueError
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    deadline = time.monotonic() + timeout_s
    # No certificate check: the probe sends nothing secret and reads no body, it only asks
    # whether the host talks HTTP. A CA store that differs from wandb's must not send a
    # working setup offline; wandb.init verifies the certificate itself (and the logger
    # falls back to offline if that fails).
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler(), urllib.request.HTTPSHandler(context=context), _NoRedirect())
    request = urllib.request.Request(urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", "")),
                                     method="HEAD", headers={"User-Agent": "griffin-wandb-probe"})
    answered = threading.Event()

    def probe() -> None:
        try:
            with opener.open(request, timeout=timeout_s):
                pass
        except urllib.error.HTTPError as e:  # a status line came back: 4xx, 5xx, 3xx
            e.close()
        except Exception:  # DNS, refused, reset, timeout, TLS, not HTTP: no answer
            return
        if time.monotonic() <= deadline:
            answered.set()

    thread = threading.Thread(target=probe, name="wandb-host-probe", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()) + _JOIN_MARGIN_S)
    return answered.is_set()


def resolve_mode(mode: str = "auto", probe_timeout_s: float = 2.0) -> str:
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
    if not host_answers(timeout_s=probe_timeout_s):
        return "offline"
    return "online"
