"""Checkpoint helpers shared by every task model: older checkpoints' parameter names mapped to today's."""
from __future__ import annotations

from typing import Any, Dict, Sequence


def rename_legacy_keys(state_dict: Dict[str, Any], prefix: str, legacy: Sequence) -> None:
    """Rename, in place, the keys of an older checkpoint's ``state_dict`` under ``prefix`` to today's names
    (``legacy``: ``(old, new)`` pairs; an old name ending in ``.`` renames a whole sub-module)."""
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        for old, new in legacy:
            if rest == old or (old.endswith(".") and rest.startswith(old)):
                state_dict[prefix + new + rest[len(old):]] = state_dict.pop(key)
                break
