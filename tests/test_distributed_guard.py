"""torchrun with more processes per machine than CUDA devices fails with a clear message (NCCL would hang)."""

from __future__ import annotations

import pytest
import torch

from lorkd_core.engine import distributed
from lorkd_core.errors import ConfigError


def test_more_ranks_than_gpus_is_refused_before_joining_the_group(monkeypatch):
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999", "TORCHELASTIC_RUN_ID": "x"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(distributed, "launched_by_torchrun", lambda: True)
    monkeypatch.setattr(distributed, "select_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    joined = []
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *a, **k: joined.append(k))
    with pytest.raises(ConfigError, match="2 processes per machine but only 1 CUDA device"):
        distributed.init_from_env("cuda")
    assert not joined
