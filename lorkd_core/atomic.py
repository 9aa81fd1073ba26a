"""Write files so that a reader never sees half of one: write a temp file beside it, then rename.

Temp files are hidden and carry ``.tmp-`` in their name (``.card.json.tmp-k3x9q2ab.json``), like the
checkpoint's ``.step-000120.tmp-<pid>`` folders, so no loader mistakes one for an output (safetensors'
``save_file`` adds its own hidden ``.tmpXXXXXX``). A process that is killed (SIGKILL, power loss) cannot
remove its temp files; :func:`remove_stale_temps` clears them when the folder's owner (e.g. a resumed
training job) starts again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMP_MARK = ".tmp-"
_RUST_TEMP = re.compile(r"\.tmp[0-9A-Za-z]{6}")


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path in the target's folder; on success rename it over ``target``.

    On any exception the temp file is removed and ``target`` is left untouched.
    ``suffix`` matters for writers that pick the format from the extension (e.g. ``.nii.gz``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARK}", suffix=suffix or ".tmp",
                               dir=target.parent)
    mode = 0o666 & ~_current_umask()
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600, and some writers (safetensors' save_file) replace the temp file with their own
        # 0600 one: saved label maps and models get the permissions a plain open() would, set at the end.
        os.chmod(tmp_path, mode)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def is_temp_name(name: str) -> bool:
    """True for the hidden temp names of :func:`atomic_path` and of checkpoint step folders being written,
    and for the ``.tmpXXXXXX`` file safetensors' ``save_file`` writes through (Rust ``tempfile``)."""
    return name.startswith(".") and (TEMP_MARK in name or _RUST_TEMP.fullmatch(name) is not None)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temp files (and temp folders) that killed writers left directly in ``folder``.

    Only for a folder that no other process is writing to at the moment (its owner calls this when it
    starts): a live writer's temp file would be removed under it. Returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        if not is_temp_name(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | Path, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))


def write_json_atomic(target: str | Path, obj: Any) -> None:
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")
