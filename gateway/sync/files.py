"""Reading and writing agent config files: strict JSON in, atomic write with a backup out."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any


class SyncError(Exception):
    """The config file cannot be synced; nothing was written. The message says why."""


_JSONC_HINT = re.compile(r"(^|[\s,{\[])//|/\*|,\s*[}\]]", re.MULTILINE)


def read_config(path: Path) -> tuple[dict[str, Any], str | None]:
    """(parsed object, original text) — ({}, None) when the file does not exist yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError) as exc:
        raise SyncError(f"{path}: cannot read: {exc}") from None
    if not text.strip():
        return {}, text
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if _JSONC_HINT.search(text):
            raise SyncError(
                f"{path}: has comments or trailing commas (JSONC). Rewriting it would drop them, "
                "so it was left untouched: remove them, or sync into another file with --config"
            ) from None
        raise SyncError(f"{path}: not valid JSON ({exc}); left untouched") from None
    if not isinstance(data, dict):
        raise SyncError(f"{path}: top level is not a JSON object; left untouched")
    return data, text


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def diff(path: Path, old: str | None, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{path} (now)" if old is not None else "/dev/null",
            tofile=f"{path} (synced)",
        )
    )


def write_atomic(path: Path, text: str, old: str | None) -> Path | None:
    """Write `text` to `path` via a temp file + rename; keep the previous file as `<path>.bak`.
    Returns the backup path, if one was made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if old is not None:
        backup = path.with_name(path.name + ".bak")
        shutil.copy2(path, backup)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if old is not None:
            shutil.copymode(path, tmp)
        else:
            os.chmod(tmp, 0o600)  # it may hold the gateway key
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return backup
