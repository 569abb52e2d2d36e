"""Is a hub id usable here? One quick look, before anything downloads.

Loading a hub id that does not exist, or any hub id on a machine without network access, makes
``from_pretrained`` / ``load_dataset`` retry for about a minute before failing. :func:`hub_status`
answers first, with a single request: the id is in the local cache, exists on the hub, is not
there, or the hub cannot be reached (and why).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: Seconds the one request may take.
TIMEOUT = 10.0


@dataclass(frozen=True)
class HubStatus:
    """``state``: "cached" (usable offline), "found", "missing" (no such repository, or private
    or gated), "offline" (hub unreachable or ``HF_HUB_OFFLINE``); ``detail``: what was seen."""

    state: str
    detail: str = ""


def _cached(repo_id: str, repo_type: str) -> bool:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, repo_type=repo_type, local_files_only=True)
    except Exception:  # not in the cache (LocalEntryNotFoundError), or an unreadable cache
        return False
    return True


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _network_error(exc: BaseException) -> bool:
    """A failure to reach the hub (DNS, refused, timeout, proxy), as opposed to an answer from it."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectError", "ConnectTimeout", "NetworkError", "TimeoutException", "ProxyError",
                         "TransportError", "ConnectionError", "Timeout"})  # fmt: skip


def hub_status(repo_id: str, repo_type: str = "model") -> HubStatus:
    """Where ``repo_id`` (``"model"`` or ``"dataset"``) can come from, after at most one request."""
    if _cached(repo_id, repo_type):
        return HubStatus("cached")
    if _offline_env():
        return HubStatus("offline", "HF_HUB_OFFLINE is set")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    api = HfApi()
    info = api.dataset_info if repo_type == "dataset" else api.model_info
    try:
        info(repo_id, timeout=TIMEOUT)
    except GatedRepoError:
        return HubStatus("missing", "it is gated: accept its terms on the hub and log in (hf auth login)")
    except RepositoryNotFoundError:
        return HubStatus(
            "missing", "no such repository on the hub (or it is private: log in with hf auth login)"
        )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if _network_error(exc):
            return HubStatus("offline", f"cannot reach the hub: {first}")
        return HubStatus("missing", f"the hub answered: {first}")
    return HubStatus("found")


def hub_problem(status: HubStatus, repo_id: str, flag: str) -> str | None:
    """One line saying why ``repo_id`` (of ``status``) cannot be loaded here, or None when it can."""
    if status.state in ("cached", "found"):
        return None
    if status.state == "offline":
        return (
            f"{flag} {repo_id}: this machine is offline ({status.detail}) and {repo_id!r} is not in the local "
            "Hugging Face cache; use a local folder, or load it once where there is network access"
        )
    return f"{flag} {repo_id}: the id looks wrong: {status.detail}"
