"""Every corpus entry (tests/corpus, docs/robustness.md) through the Python API, the CLI and the app's loader.

Each bad input gives its documented error type and a one-line message naming the file and the problem;
the CLI exits non-zero with that line on stderr and no traceback; the app's service layer raises the same
error. Writers interrupted half-way leave what was saved before byte-identical, and no temp files.

The CLI runs in-process (``lorkd_core.cli.main`` + capfd, which also sees native stderr) for every entry,
plus a few real ``python -m lorkd_core`` processes started together.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from corpus import CorpusEntry, build_corpus
from corpus.generate import LABELS, ct_volume, write_image, write_tiny_model

from lorkd_core.cli import main
from lorkd_core.errors import LorkdError, ModelError
from lorkd_core.io import load_label_map, load_scan, save_label_map

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, CorpusEntry]:
    entries = build_corpus(tmp_path_factory.mktemp("corpus"))
    names = [e.name for e in entries]
    assert len(names) == len(set(names))
    return {e.name: e for e in entries}


def of_kind(corpus: dict[str, CorpusEntry], kind: str) -> list[CorpusEntry]:
    return [e for e in corpus.values() if e.kind == kind]


def check_error(entry: CorpusEntry, exc: BaseException) -> list[str]:
    """Problems with a raised error: wrong type, several lines, no file name, no phrase."""
    if entry.expected_error is None:
        return [f"{entry.name}: must load, raised {type(exc).__name__}: {exc}"]
    text = str(exc)
    problems = []
    if type(exc) is not entry.expected_error:
        problems.append(f"{entry.name}: expected {entry.expected_error.__name__}, got {type(exc).__name__}: {text}")
    if "\n" in text:
        problems.append(f"{entry.name}: message has several lines: {text!r}")
    if str(entry.path) not in text:
        problems.append(f"{entry.name}: message does not name {entry.path}: {text}")
    if entry.expected_phrase not in text:
        problems.append(f"{entry.name}: message lacks {entry.expected_phrase!r}: {text}")
    return problems


def check_scan(entry: CorpusEntry, scan) -> list[str]:
    """Problems with a scan that loaded: the entry's ``checks`` (shape, spacing, modality, ...)."""
    problems = []
    for key, want in entry.checks.items():
        if key == "shape":
            got = tuple(scan.array.shape)
        elif key in ("spacing", "direction"):
            got = getattr(scan, key)
            if np.allclose(got, want, rtol=1e-6, atol=1e-12):
                continue
        elif key == "modality":
            got = scan.modality
        else:
            got = scan.meta.get(key)
        if got != want:
            problems.append(f"{entry.name}: {key} is {got}, expected {want}")
    if not np.all(np.isfinite(scan.array)):
        problems.append(f"{entry.name}: non-finite voxels came through")
    return problems


def check_cli_failure(entry: CorpusEntry, command: str, code: int, out: str, err: str) -> list[str]:
    lines = err.strip().splitlines()
    problems = []
    if code == 0:
        problems.append(f"{entry.name}: lorkd {command} exited 0")
    if "Traceback" in err or len(lines) != 1:
        problems.append(f"{entry.name}: stderr is not one line: {err!r}")
    elif not lines[0].startswith(f"lorkd {command}: error: "):
        problems.append(f"{entry.name}: unexpected stderr {lines[0]!r}")
    elif str(entry.path) not in lines[0] or entry.expected_phrase not in lines[0]:
        problems.append(f"{entry.name}: stderr lacks the file or {entry.expected_phrase!r}: {lines[0]}")
    return problems


# ------------------------------------------------------------------------------------------------ scans


def test_corpus_covers_the_documented_entries(corpus):
    """docs/robustness.md lists every entry, with its error type and phrase."""
    doc = (REPO / "docs" / "robustness.md").read_text(encoding="utf-8")
    for entry in corpus.values():
        assert f"`{entry.name}`" in doc, entry.name
        error = entry.expected_error.__name__ if entry.expected_error else "loads"
        row = next(line for line in doc.splitlines() if f"`{entry.name}`" in line)
        assert error in row and entry.expected_phrase in row, row


def test_scans_python_api(corpus):
    problems = []
    for entry in of_kind(corpus, "scan"):
        try:
            scan = load_scan(entry.path)
        except Exception as exc:  # any type is reported, not a crash of the loop
            problems += check_error(entry, exc)
            continue
        if entry.expected_error is not None:
            problems.append(f"{entry.name}: loaded, expected {entry.expected_error.__name__}")
        problems += check_scan(entry, scan)
    assert not problems, "\n".join(problems)


def test_scans_cli_info(corpus, capfd):
    problems = []
    for entry in of_kind(corpus, "scan"):
        code = main(["info", str(entry.path)])
        out, err = capfd.readouterr()
        if entry.expected_error is None:
            if code != 0 or "Traceback" in err or f"file:            {entry.path}" not in out:
                problems.append(f"{entry.name}: lorkd info failed ({code}): {err or out}")
        else:
            problems += check_cli_failure(entry, "info", code, out, err)
            if out:
                problems.append(f"{entry.name}: stdout not empty: {out!r}")
    assert not problems, "\n".join(problems)


def test_scans_app_loader(corpus):
    """The app's scan-loading entry point (worker side, no window) raises the very same error."""
    from lorkd_studio.services.backend import Backend

    backend = Backend(include_bundled=False)
    problems = []
    for entry in of_kind(corpus, "scan"):
        api_error = None
        try:
            load_scan(entry.path)
        except LorkdError as exc:
            api_error = exc
        try:
            loaded = backend.load(entry.path)
        except Exception as exc:
            problems += check_error(entry, exc)
            if api_error is not None and (type(exc) is not type(api_error) or str(exc) != str(api_error)):
                problems.append(f"{entry.name}: app says {exc!r}, the API {api_error!r}")
            continue
        if entry.expected_error is not None:
            problems.append(f"{entry.name}: the app loaded it, expected {entry.expected_error.__name__}")
        problems += check_scan(entry, loaded.scan)
    assert not problems, "\n".join(problems)


def test_unreadable_file_follows_the_platform(corpus):
    """chmod 000: ScanError where permissions are enforced; as root (CI) they are not, and the file loads."""
    entry = corpus["unreadable_chmod_000"]
    assert (entry.path.stat().st_mode & 0o777) == 0
    readable = os.access(entry.path, os.R_OK)
    assert (entry.expected_error is None) == readable, entry.note
    if not readable:
        with pytest.raises(entry.expected_error, match=entry.expected_phrase):
            load_scan(entry.path)


def test_real_processes_print_one_line_and_no_traceback(corpus):
    """A few real interpreter runs, started together (each start imports the stack): exit codes and stderr."""
    runs = {
        "nifti_corrupt_gzip": ["info", str(corpus["nifti_corrupt_gzip"].path)],
        "non_ascii_path": ["info", "--json", str(corpus["non_ascii_path"].path)],
        "weights_pickle": ["segment", "--input", str(corpus["weights_pickle"].scan), "--region", "abdomen",
                           "--model", str(corpus["weights_pickle"].path), "--device", "cpu", "--quiet",
                           "--output", str(corpus["weights_pickle"].path.parent / "never.nii.gz")],
    }
    # LC_ALL=C: the non-ASCII path must survive an ASCII locale (Python coerces it to UTF-8)
    env = dict(os.environ, LC_ALL="C")
    procs = {name: subprocess.Popen([sys.executable, "-m", "lorkd_core", *argv], cwd=REPO, env=env, text=True,
                                    encoding="utf-8", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, argv in runs.items()}
    problems = []
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        entry = corpus[name]
        if entry.expected_error is None:
            if proc.returncode != 0 or err.strip():
                problems.append(f"{name}: exit {proc.returncode}, stderr {err!r}")
            elif json.loads(out)["path"] != str(entry.path):
                problems.append(f"{name}: path printed as {json.loads(out)['path']!r}")
        else:
            problems += check_cli_failure(entry, runs[name][0], proc.returncode, out, err)
            if proc.returncode != entry.expected_error.exit_code:
                problems.append(f"{name}: exit code {proc.returncode}, expected {entry.expected_error.exit_code}")
    assert not problems, "\n".join(problems)
    assert not (corpus["weights_pickle"].path.parent / "never.nii.gz").exists()


# ----------------------------------------------------------------------------------------------- labels


def test_label_maps_api_app_and_validation(corpus):
    from lorkd_studio.services.backend import Backend
    from lorkd_studio.services.types import LoadedScan

    from lorkd_core.data.datasets import validate_items
    from lorkd_core.data.manifest import DatasetItem

    backend = Backend(include_bundled=False)
    problems = []
    for entry in of_kind(corpus, "label"):
        scan = load_scan(entry.scan)
        for route, load in (("api", lambda e=entry, s=scan: load_label_map(e.path, like=s)),
                            ("app", lambda e=entry, s=scan: backend.load_label_map(e.path, LoadedScan(s, None, e.scan)))):
            try:
                loaded = load()
            except Exception as exc:
                problems += [f"{route}: {p}" for p in check_error(entry, exc)]
                continue
            if entry.expected_error is not None:
                problems.append(f"{route}: {entry.name} loaded, expected {entry.expected_error.__name__}")
                continue
            array = loaded.array if route == "api" else loaded[0]
            names = loaded.names if route == "api" else loaded[1]
            values = sorted(int(v) for v in np.unique(array) if v)
            if values != entry.checks["values"] or names != LABELS or array.shape != scan.array.shape:
                problems.append(f"{route}: {entry.name} loaded as values {values}, names {names}")
        item = DatasetItem(image=entry.scan, label=entry.path, region="abdomen", labels=dict(LABELS), case_id="c")
        found = validate_items([item]).problems
        if not entry.expected_phrase:
            if found:
                problems.append(f"validate: {entry.name}: {found}")
        elif len(found) != 1 or entry.expected_phrase not in found[0].reason or found[0].path != entry.path:
            problems.append(f"validate: {entry.name}: expected one problem with {entry.expected_phrase!r}, got {found}")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------------- models


def _load_model_api(entry: CorpusEntry):
    from lorkd_core.engine.model_io import load_model

    return load_model(entry.path)  # read_card, then load_weights + load_state_checked


def test_models_python_api(corpus):
    problems = []
    for entry in of_kind(corpus, "model"):
        try:
            model, card = _load_model_api(entry)
        except Exception as exc:
            problems += check_error(entry, exc)
            continue
        if entry.expected_error is not None:
            problems.append(f"{entry.name}: loaded, expected {entry.expected_error.__name__}")
        elif card.kind != entry.checks["kind"]:
            problems.append(f"{entry.name}: card kind {card.kind}")
    assert not problems, "\n".join(problems)


def test_models_cli_segment(corpus, capfd, tmp_path):
    problems = []
    for entry in of_kind(corpus, "model"):
        out_file = tmp_path / f"{entry.name}.nii.gz"
        code = main(["segment", "--input", str(entry.scan), "--region", "abdomen", "--model", str(entry.path),
                     "--output", str(out_file), "--device", "cpu", "--quiet"])
        out, err = capfd.readouterr()
        if entry.expected_error is None:
            if code != 0 or err.strip():
                problems.append(f"{entry.name}: segment failed ({code}): {err}")
            else:
                load_label_map(out_file, like=load_scan(entry.scan))
        else:
            problems += check_cli_failure(entry, "segment", code, out, err)
            if out_file.exists() or (tmp_path / f"{entry.name}.json").exists():
                problems.append(f"{entry.name}: an output was written")
    assert not problems, "\n".join(problems)


def test_models_app_services(corpus):
    """The app lists models through the catalog and runs them through the Predictor: a folder whose card is
    broken is left out of the list (never a crash) and reported with the card's error; broken weights raise
    the same ModelError on run."""
    from lorkd_studio.services.backend import Backend

    from lorkd_core.engine.model_card import read_card

    loaded = Backend(include_bundled=False).load(corpus["model_good_control"].scan)
    problems = []
    for entry in of_kind(corpus, "model"):
        backend = Backend([entry.path], include_bundled=False)
        models, skipped = backend.read_catalog()
        try:
            read_card(entry.path)
        except ModelError as exc:
            if models:
                problems.append(f"{entry.name}: broken card listed as {[m.id for m in models]}")
            # a folder without card.json is no model folder at all: nothing to report
            reported = [(entry.path, exc.problem)] if (entry.path / "card.json").exists() else []
            if [(p.folder, p.problem) for p in skipped] != reported:
                problems.append(f"{entry.name}: broken card reported as {skipped}, expected {reported}")
            continue
        if skipped:
            problems.append(f"{entry.name}: good card reported as broken: {skipped}")
        if len(models) != 1:
            problems.append(f"{entry.name}: {len(models)} models listed")
            continue
        try:
            result = backend.run_model(loaded, models[0])
        except Exception as exc:
            problems += check_error(entry, exc)
            try:
                _load_model_api(entry)
            except ModelError as api_exc:
                if str(api_exc) != str(exc):
                    problems.append(f"{entry.name}: app says {exc}, the API {api_exc}")
            continue
        if entry.expected_error is not None:
            problems.append(f"{entry.name}: the app ran it, expected {entry.expected_error.__name__}")
        elif result.labels.shape != loaded.array.shape:
            problems.append(f"{entry.name}: label map {result.labels.shape} on a {loaded.array.shape} scan")
    assert not problems, "\n".join(problems)


def test_pickle_weights_are_never_unpickled(corpus, capfd, tmp_path):
    """A pickle named model.safetensors is refused by every route, and its payload never runs (the canary
    it would create stays absent; unpickling it here shows the canary works)."""
    from lorkd_studio.services.backend import Backend

    for name in ("weights_pickle", "weights_pickle_unsigned"):
        entry = corpus[name]
        canary = entry.checks["canary"]
        with pytest.raises(ModelError, match="not a readable safetensors file"):
            _load_model_api(entry)
        assert main(["segment", "--input", str(entry.scan), "--region", "abdomen", "--model", str(entry.path),
                     "--output", str(tmp_path / "x.nii.gz"), "--device", "cpu", "--quiet"]) != 0
        backend = Backend([entry.path], include_bundled=False)
        loaded = backend.load(entry.scan)
        with pytest.raises(ModelError, match="not a readable safetensors file"):
            backend.run_model(loaded, backend.list_models()[0])
        assert not canary.exists()
    capfd.readouterr()
    pickle.loads((entry.path / "model.safetensors").read_bytes())  # the payload is live ...
    assert canary.exists()  # ... so its absence above means nothing unpickled it
    canary.unlink()


@pytest.mark.parametrize("name", ["nifti_2d", "one_slice", "non_ascii_path", "spacing_1e-6mm"])
def test_unusual_scans_segment_on_their_own_grid(corpus, tmp_path, capfd, name):
    """Inputs that load also segment: the label map lies on the input's grid (a 2D image becomes one slice)."""
    scan_entry, model = corpus[name], corpus["model_good_control"].path
    out = tmp_path / "out" / "seg.nii.gz"
    code = main(["segment", "--input", str(scan_entry.path), "--region", "abdomen", "--model", str(model),
                 "--output", str(out), "--device", "cpu", "--quiet"])
    assert code == 0, capfd.readouterr().err
    scan = load_scan(scan_entry.path)
    labels = load_label_map(out, like=scan)
    assert labels.array.shape == scan.array.shape


def test_implausible_spacing_is_refused_before_allocating(corpus, capfd, tmp_path):
    """1e6 mm voxels: the scan loads and `info` works, but resampling it for a network would need ~1e18 voxels;
    that is a one-line ScanError, not a memory error (before: RuntimeError out of `segment` and the app)."""
    entry = corpus["spacing_1e6mm"]
    assert main(["info", str(entry.path)]) == 0
    assert "suggested region: n/a (ScanError" in capfd.readouterr().out
    code = main(["segment", "--input", str(entry.path), "--region", "abdomen", "--output", str(tmp_path / "s"),
                 "--model", str(corpus["model_good_control"].path), "--device", "cpu", "--quiet"])
    out, err = capfd.readouterr()
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(entry.path) in err and "above the limit" in err and "voxel spacing" in err


# ------------------------------------------------------------------------------------- interrupted writers


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (temp files included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def half_then_fail(obj, filename, *args, **kwargs):
    """Stands in for ``sitk.WriteImage(image, path)`` / ``save_file(tensors, path)``: part of the file, then a
    full disk."""
    Path(filename).write_bytes(b"\x1f\x8b partial")
    raise OSError(28, "No space left on device")


@pytest.fixture
def saved_label_map(tmp_path):
    scan = load_scan(write_image(tmp_path / "scan.nii.gz", ct_volume()))
    labels = np.zeros(scan.array.shape, np.int16)
    labels[1:3, 1:3, 1:3] = 1
    out = save_label_map(tmp_path / "out" / "seg.nii.gz", labels, scan, dict(LABELS), model="first", region="abdomen")
    return scan, labels, out


@pytest.mark.parametrize("failure", ["image write", "sidecar write", "sidecar content", "rename"])
def test_interrupted_save_label_map_keeps_the_saved_pair(saved_label_map, monkeypatch, failure):
    import lorkd_core.atomic as atomic
    import lorkd_core.io.writers as writers

    scan, labels, out = saved_label_map
    before = snapshot(out.parent)
    provenance = {"model": "second", "region": "abdomen"}
    if failure == "image write":
        monkeypatch.setattr(writers.sitk, "WriteImage", half_then_fail)
    elif failure == "sidecar write":
        real = Path.write_text

        def write_text(self, data, *args, **kwargs):
            if self.name.endswith(".json"):
                real(self, data[: len(data) // 2], *args, **kwargs)
                raise OSError(28, "No space left on device")
            return real(self, data, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)
    elif failure == "sidecar content":
        provenance["model_folder"] = Path("/models/x")  # not JSON: fails before any file changes
    else:
        monkeypatch.setattr(atomic.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(18, "Cross-device link")))
    with pytest.raises((OSError, TypeError)):
        save_label_map(out, labels + 1, scan, {1: "liver", 2: "spleen"}, **provenance)
    monkeypatch.undo()
    assert snapshot(out.parent) == before  # byte-identical, and no temp file left
    assert json.loads(out.with_name("seg.json").read_text())["model"] == "first"


def test_interrupted_manifest_write_keeps_the_old_manifest(tmp_path, monkeypatch):
    import lorkd_core.atomic as atomic
    from lorkd_core.data.manifest import DatasetItem, read_manifest, write_manifest

    items = [DatasetItem(tmp_path / "a" / "ct.nii.gz", tmp_path / "a" / "seg.nii.gz", "abdomen", case_id="a")]
    manifest = write_manifest(tmp_path / "manifest.jsonl", items)
    before = snapshot(tmp_path)
    more = items + [DatasetItem(tmp_path / "b" / "ct.nii.gz", None, "thorax", case_id="b")]
    real = Path.write_bytes

    def write_bytes(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    with pytest.raises(OSError):
        write_manifest(manifest, more)
    monkeypatch.setattr(Path, "write_bytes", real)
    monkeypatch.setattr(atomic.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(13, "Permission denied")))
    with pytest.raises(OSError):
        write_manifest(manifest, more)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    assert read_manifest(manifest) == items


def test_interrupted_card_and_weights_writes_keep_the_model(tmp_path, monkeypatch):
    import lorkd_core.atomic as atomic
    from lorkd_core.engine import model_card as mc

    folder = write_tiny_model(tmp_path / "model")
    before = snapshot(folder)
    card = mc.read_card(folder)
    card.metrics = {"dice": {"abdomen": 0.5}}
    real = Path.write_bytes

    def write_bytes(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    with pytest.raises(OSError):
        mc.write_card(folder, card)
    with pytest.raises(OSError):
        mc.update_metrics(folder, {"dice": {"abdomen": 0.7}})
    monkeypatch.setattr(Path, "write_bytes", real)
    card.regions = ["abdomen", "tail"]  # an invalid card is refused before anything is written
    with pytest.raises(ModelError, match="unknown region"):
        mc.write_card(folder, card)
    state = mc.load_weights(folder)
    monkeypatch.setattr("safetensors.torch.save_file", half_then_fail)
    with pytest.raises(OSError):
        mc.save_weights(folder, state)
    monkeypatch.undo()
    monkeypatch.setattr(atomic.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(13, "Permission denied")))
    with pytest.raises(OSError):
        mc.save_weights(folder, state)
    monkeypatch.undo()
    assert snapshot(folder) == before
    mc.read_card(folder)
    assert set(mc.load_weights(folder)) == set(state)


def test_save_model_with_an_invalid_card_keeps_the_saved_model(tmp_path):
    from lorkd_core.engine import model_card as mc

    folder = write_tiny_model(tmp_path / "model")
    before = snapshot(folder)
    card = mc.read_card(folder)
    state = mc.load_weights(folder)
    card.regions = ["abdomen", "tail"]
    with pytest.raises(ModelError, match="unknown region"):
        mc.save_model(folder, {k: v * 2 for k, v in state.items()}, card)
    assert snapshot(folder) == before
    assert all(mc.load_weights(folder)[k].equal(v) for k, v in state.items())
