"""Atomic writes replace the target only on success and give files the usual (umask) permissions."""

from __future__ import annotations

import os
import stat

import pytest

from lorkd_core.atomic import atomic_path, write_text_atomic


def test_written_file_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_saved_model_weights_follow_the_umask(tmp_path):
    """safetensors writes through its own 0600 temp file; before the fix saved weights stayed 0600."""
    import torch

    from lorkd_core.engine.model_card import WEIGHTS_NAME, save_weights

    old = os.umask(0o022)
    try:
        save_weights(tmp_path, {"w": torch.zeros(3)})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / WEIGHTS_NAME).stat().st_mode) == 0o644


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "seg.nii.gz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target, suffix=".nii.gz") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.nii.gz"]
