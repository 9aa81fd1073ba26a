"""The interpreter policies (GC, GIL hand-over) that keep work on other threads from freezing the UI."""

from __future__ import annotations

import gc
import sys

import pytest
from lorkd_studio.jobs.manager import JobManager
from lorkd_studio.runtime_policy import JobSetupGuard
from lorkd_studio.services import jobs as job_service
from lorkd_studio.services.worker import TorchWorker

from lorkd_core.engine.config import DecomposeConfig
from lorkd_core.progress import Progress


def test_guard_pauses_collection_until_the_first_step_then_freezes():
    gc.unfreeze()
    with JobSetupGuard() as guard:
        assert not gc.isenabled() and guard.in_setup
        guard.step(0)  # loading reports are still set-up
        assert not gc.isenabled()
        junk = [[] for _ in range(1000)]  # alive at the freeze: out of the collector's reach afterwards
        guard.step(1)
        assert gc.isenabled() and not guard.in_setup
        assert gc.get_freeze_count() >= 1000
        guard.step(2)  # later steps change nothing
        assert gc.isenabled()
    assert gc.isenabled()
    del junk


def test_guard_restores_the_collector_when_set_up_fails():
    with pytest.raises(RuntimeError), JobSetupGuard():
        assert not gc.isenabled()
        raise RuntimeError("set-up failed")
    assert gc.isenabled()


def test_guard_leaves_a_disabled_collector_disabled():
    gc.disable()
    try:
        with JobSetupGuard() as guard:
            guard.step(1)
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_inprocess_job_sets_up_without_collection_and_trains_with_it(tmp_path, qtbot, monkeypatch):
    """What the manager's worker sees: collector off before the first step, on (after a freeze) from it."""
    seen: dict[str, object] = {}

    def fake_train(job_type, cfg, progress, cancel, *, resume=False):
        seen["setup"] = gc.isenabled()
        progress(Progress(0, 3, "loading data"))
        seen["loading"] = gc.isenabled()
        progress(Progress(1, 3, "training"))
        seen["training"] = gc.isenabled()
        seen["frozen"] = gc.get_freeze_count()
        return {"out": str(cfg.out), "experts": "", "steps": 3, "seconds": 0.0}

    monkeypatch.setattr(job_service, "train", fake_train)
    gc.unfreeze()
    worker = TorchWorker("cpu")
    try:
        manager = JobManager(worker, tmp_path / "jobs.json")
        rec = manager.start(DecomposeConfig(data=str(tmp_path / "m.jsonl"), out=str(tmp_path / "job"), steps=3))
        qtbot.waitUntil(lambda: manager.get(rec.id).state in ("done", "failed"), timeout=30_000)
        assert manager.get(rec.id).state == "done", manager.get(rec.id).log
    finally:
        worker.shutdown()
    assert seen["setup"] is False and seen["loading"] is False
    assert seen["training"] is True and seen["frozen"] > 0
    assert gc.isenabled()


def test_gil_switch_interval_is_shortened_but_never_lengthened():
    from lorkd_studio.runtime_policy import UI_SWITCH_INTERVAL_S, responsive_gil_switching

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        responsive_gil_switching()
        assert sys.getswitchinterval() == pytest.approx(UI_SWITCH_INTERVAL_S, rel=0.01)
        sys.setswitchinterval(0.0002)
        responsive_gil_switching()
        assert sys.getswitchinterval() == pytest.approx(0.0002, rel=0.01)
    finally:
        sys.setswitchinterval(before)
