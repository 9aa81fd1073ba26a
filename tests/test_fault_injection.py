"""Fault injection (issue 7): kill a real ``lorkd decompose`` process at random points, resume it, and check
that no output file is ever half-written and that the resumed result equals an uninterrupted run.

One chain of child processes on one output folder (tiny blobs, tiny networks, a checkpoint after every step
so that kills often land inside a checkpoint write):

1. ``python -m lorkd_core decompose`` is SIGKILLed from outside after it reports a (seeded) random step,
   as soon as the temp folder of that step's checkpoint appears (so: while the checkpoint is written).
2. ``--resume`` under a write hook that SIGKILLs the process in the middle of its N-th file write into the
   output folder (seeded random N), after putting half of the file's bytes on disk, as a kill during a
   real write would.
3. ``--resume`` killed the same way in the middle of the teacher copy, the last output a job writes.
4. A resume to completion (in this process).

``LORKD_FAULT_SEED=N`` picks other kill points (for a soak run: a loop over seeds).

After every kill, each file in the output folder that is not a hidden ``.*.tmp-*`` temp must be complete
(every ``.safetensors`` loads, every ``.json`` parses, every model folder loads with its weights' SHA-256,
the latest checkpoint loads), and the model catalog must ignore the temps. At the end the folder must hold
exactly the files of an uninterrupted run (no temps left), with the same weights.

Tolerance of the weight comparison: the run is on the CPU with the same thread count, batches are a pure
function of (seed, step) and the checkpoint restores model, AdamW state and step exactly (float32 tensors
in safetensors), so the result is expected to be bit-identical; ``rtol=1e-5, atol=1e-6`` only leaves room
for a different reduction order should a library pick another kernel. A resume bug (a step repeated or
skipped, optimizer moments or the learning-rate schedule lost) moves weights by about lr = 5e-3 per step,
three orders of magnitude more.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_engine_train_helpers import make_blob_dataset

from lorkd_core.atomic import is_temp_name
from lorkd_core.engine.catalog import read_catalog
from lorkd_core.engine.checkpoint import latest_checkpoint, load_checkpoint
from lorkd_core.engine.config import DecomposeConfig, FoundationConfig
from lorkd_core.engine.model_io import load_model
from lorkd_core.engine.train import decompose, train_foundation

SEED = int(os.environ.get("LORKD_FAULT_SEED", "20240917"))  # picks the kill points; every seed must pass
TINY_TEACHER = {"name": "monai.UNet", "kwargs": {"channels": [8, 16], "strides": [2], "num_res_units": 0}}
TINY_STUDENT = {"name": "monai.UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}
EXPERT_STEPS, BASELINE_STEPS = 8, 4
TOTAL = EXPERT_STEPS + BASELINE_STEPS
CHILD_TIMEOUT_S = 240

# Run in the child before the CLI: SIGKILL the process in the middle of the N-th write into OUT
# (LORKD_TEST_KILL_IN_WRITE = "<kind>:<N>", kind "any" or one of save_file / write_bytes / write_text /
# copyfile), after writing half of the bytes, so the half-written file is on disk as after a real kill.
_WRITE_KILLER = r"""
import os, pathlib, shutil, signal, sys
import safetensors.torch as st

_kind, _nth = os.environ["LORKD_TEST_KILL_IN_WRITE"].split(":")
_nth, _count = int(_nth), 0
_out = os.path.realpath(os.environ["LORKD_TEST_KILL_OUT"]) + os.sep


def _due(kind, path):
    global _count
    if _kind not in ("any", kind) or not os.path.realpath(path).startswith(_out):
        return False
    _count += 1
    return _count == _nth


def _die_halfway(path, data):
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        os.fsync(fh.fileno())
    os.write(2, f"FAULT-INJECTION killed while writing {os.path.realpath(path)}\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)


_save_file = st.save_file
def save_file(tensors, filename, metadata=None):
    if _due("save_file", filename):
        _save_file(tensors, filename, metadata=metadata)
        _die_halfway(filename, pathlib.Path(filename).read_bytes())
    return _save_file(tensors, filename, metadata=metadata)
st.save_file = save_file

_write_bytes = pathlib.Path.write_bytes
def write_bytes(self, data):
    if _due("write_bytes", self):
        _die_halfway(self, bytes(data))
    return _write_bytes(self, data)
pathlib.Path.write_bytes = write_bytes

_write_text = pathlib.Path.write_text
def write_text(self, data, encoding=None, errors=None, newline=None):
    if _due("write_text", self):
        _die_halfway(self, data.encode(encoding or "utf-8"))
    return _write_text(self, data, encoding=encoding, errors=errors, newline=newline)
pathlib.Path.write_text = write_text

_copyfile = shutil.copyfile
def copyfile(src, dst, *, follow_symlinks=True):
    if _due("copyfile", dst):
        _die_halfway(dst, pathlib.Path(src).read_bytes())
    return _copyfile(src, dst, follow_symlinks=follow_symlinks)
shutil.copyfile = copyfile

from lorkd_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A tiny dataset and teacher, the job config, and the uninterrupted run's output folder."""
    root = tmp_path_factory.mktemp("fault")
    manifest = make_blob_dataset(root / "data", cases_per_region=1)
    train_foundation(FoundationConfig(data=str(manifest), out=str(root / "teacher"), steps=2, batch_size=3,
                                      patch_size=(12, 12, 12), network=TINY_TEACHER, checkpoint_every=0,
                                      warmup_steps=1))
    cfg = DecomposeConfig(data=str(manifest), out=str(root / "uninterrupted"), teacher=str(root / "teacher"),
                          steps=EXPERT_STEPS, baseline=True, baseline_steps=BASELINE_STEPS, batch_size=3,
                          patch_size=(12, 12, 12), student=TINY_STUDENT, feature_channels=4, ranks=2,
                          lam=1.0, tau=2.0, checkpoint_every=1, warmup_steps=1, lr=5e-3)
    decompose(cfg)  # in this process: the same code as the CLI, and no interpreter start to wait for
    return root, cfg


# ---------------------------------------------------------------------- running and killing the CLI


class ChildRun:
    """What one child process did: exit code, the steps it reported, the events and its stderr."""

    def __init__(self, returncode: int, steps: list[int], events: list[str], stderr: str) -> None:
        self.returncode, self.steps, self.events, self.stderr = returncode, steps, events, stderr

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    def __repr__(self) -> str:
        return (f"ChildRun(rc={self.returncode}, steps={self.steps}, events={sorted(set(self.events))}, "
                f"stderr tail={self.stderr[-1500:]!r})")


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # the same intra-op thread count as this process (which made the uninterrupted run): same kernels
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    env.update(extra)
    return env


def run_cli(argv: list[str], cwd: Path, *, kill_at_step: int | None = None, in_checkpoint: Path | None = None,
            write_killer: str | None = None, out: Path | None = None) -> ChildRun:
    """Run ``lorkd`` in a child process with ``--progress-json``. SIGKILL it once it has reported step
    ``kill_at_step``: at once, or with ``in_checkpoint`` (the checkpoint folder) as soon as the temp folder of
    that step's checkpoint appears, i.e. while the checkpoint is being written. Or let ``write_killer``
    ("kind:N") kill it from inside, in the middle of a write into ``out``."""
    if write_killer is None:
        cmd = [sys.executable, "-m", "lorkd_core", *argv]
        env = _child_env()
    else:
        cmd = [sys.executable, "-c", _WRITE_KILLER, *argv]
        env = _child_env(LORKD_TEST_KILL_IN_WRITE=write_killer, LORKD_TEST_KILL_OUT=str(out))
    err_path = cwd / f"stderr-{time.monotonic_ns()}.txt"
    steps: list[int] = []
    events: list[str] = []
    with open(err_path, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                                encoding="utf-8")
        watchdog = threading.Timer(CHILD_TIMEOUT_S, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                events.append(event.get("event", "?"))
                if event.get("event") != "step":
                    continue
                steps.append(int(event["step"]))
                if kill_at_step is not None and event["step"] >= kill_at_step:
                    if in_checkpoint is not None:
                        _wait_for_checkpoint_write(in_checkpoint, event["step"], proc)
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            proc.stdout.close()
            returncode = proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return ChildRun(returncode, steps, events, err_path.read_text(encoding="utf-8", errors="replace"))


def _wait_for_checkpoint_write(folder: Path, step: int, proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Spin until the temp folder of step ``step``'s checkpoint exists (it is being written), the finished
    step folder exists (too late: kill anyway), the process ends, or ``timeout_s`` passes."""
    prefix, done = f".step-{step:06d}.tmp-", folder / f"step-{step:06d}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None and not done.exists():
        try:
            if any(name.startswith(prefix) for name in os.listdir(folder)):
                return
        except FileNotFoundError:
            pass
        time.sleep(0)


# ---------------------------------------------------------------------- what a killed job may leave


def check_outputs_complete(out: Path) -> list[str]:
    """Fail on any output that is not complete; return the hidden temp leftovers (relative paths)."""
    temps, problems = [], []
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out)
        if any(is_temp_name(part) for part in rel.parts):
            if path.is_file() or not any(path.iterdir()):
                temps.append(rel.as_posix() + ("" if path.is_file() else "/"))
            continue
        if any(part.startswith(".") for part in rel.parts):
            problems.append(f"{rel}: a hidden file that is not a temp file")
            continue
        if path.is_dir():
            continue
        try:
            if path.suffix == ".safetensors":
                load_file(str(path))
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            else:
                problems.append(f"{rel}: not an output a job writes")
        except Exception as exc:  # noqa: BLE001 - every kind of unreadable file is the failure we look for
            problems.append(f"{rel}: {type(exc).__name__}: {exc}")
    catalog = read_catalog([out], include_bundled=False)
    problems += [f"model folder {p.folder}: {p.error}" for p in catalog.problems]
    for folder in sorted({e.path for e in catalog.entries}):
        rel = folder.relative_to(out)
        if any(part.startswith(".") for part in rel.parts):
            problems.append(f"the catalog lists the temp folder {rel}")
            continue
        try:
            load_model(folder)  # checks the weights against the card's SHA-256
        except Exception as exc:  # noqa: BLE001
            problems.append(f"model folder {rel}: {type(exc).__name__}: {exc}")
    if not (out / "job.json").is_file():
        ckpt = latest_checkpoint(out / "checkpoint")
        if ckpt is not None:
            if any(part.startswith(".") for part in ckpt.relative_to(out).parts):
                problems.append(f"latest_checkpoint picked the temp folder {ckpt}")
            else:
                try:
                    load_checkpoint(ckpt)
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"checkpoint {ckpt.relative_to(out)}: {exc}")
    assert not problems, "incomplete outputs after a kill:\n" + "\n".join(problems)
    return temps


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------- the test


def test_killed_decomposition_resumes_to_the_uninterrupted_result(job, tmp_path):
    root, cfg = job
    rng = random.Random(SEED)
    out = tmp_path / "out"
    job_json = tmp_path / "job.json"
    cfg.replace(out=str(out)).save(job_json)
    resume = ["decompose", "--out", str(out), "--resume", "--progress-json"]
    log: list[tuple[str, ChildRun, list[str]]] = []

    def after(what: str, run: ChildRun) -> list[str]:
        assert run.killed, f"{what}: the child was not killed: {run!r}"
        temps = check_outputs_complete(out)
        log.append((what, run, temps))
        return temps

    # 1. SIGKILL from outside after a random step, as soon as that step's checkpoint is being written
    k1 = rng.randint(2, EXPERT_STEPS - 1)
    first = run_cli(["decompose", "--config", str(job_json), "--progress-json"], tmp_path, kill_at_step=k1,
                    in_checkpoint=out / "checkpoint")
    after(f"SIGKILL after step {k1}", first)
    assert first.steps == list(range(1, k1 + 1)), first

    # 2. SIGKILL in the middle of a random file write (a checkpoint file, latest.json, config.json, a card...)
    nth = rng.randint(2, 12)
    second = run_cli(resume, tmp_path, write_killer=f"any:{nth}", out=out)
    temps = after(f"SIGKILL inside write {nth}", second)
    assert "FAULT-INJECTION killed while writing" in second.stderr, second
    assert temps, "the half-written file should be a hidden temp, and left behind by the kill"
    assert second.steps and second.steps[0] <= first.steps[-1] + 1, (first, second)

    # 3. SIGKILL in the middle of copying the teacher, the last output (all training done by then)
    third = run_cli(resume, tmp_path, write_killer="copyfile:1", out=out)
    temps = after("SIGKILL inside the teacher copy", third)
    assert third.steps and third.steps[-1] == TOTAL and third.steps[0] <= second.steps[-1] + 1, third
    assert any(t.startswith(".teacher.tmp-") for t in temps), temps

    # 4. resume to the end (in this process: one interpreter start less; the same Job code as the CLI)
    steps: list[int] = []
    decompose(DecomposeConfig.load(out / "config.json"), progress=lambda p: p.step and steps.append(p.step),
              resume=True)
    assert not steps or steps[-1] == TOTAL, steps  # (today: step 12 is redone from the checkpoint of step 11)

    reference = Path(cfg.out)
    assert _files(out) == _files(reference), "the resumed folder must hold exactly an uninterrupted run's files"
    for folder in ("experts", "baseline"):
        a = load_file(str(reference / folder / "model.safetensors"))
        b = load_file(str(out / folder / "model.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=f"{folder}: {key}")
    teacher = "teacher/model.safetensors"
    assert (out / teacher).read_bytes() == (reference / teacher).read_bytes()
    done = json.loads((out / "job.json").read_text())
    assert done["status"] == "done" and done["steps"] == TOTAL
    print("\n".join(f"{what}: steps {run.steps[:1]}..{run.steps[-1:]}, temps left {temps}"
                    for what, run, temps in log))
