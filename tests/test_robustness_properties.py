"""Property-based checks (hypothesis) of the loaders, the canonical-orientation round trip and manifests."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from lorkd_core.data.manifest import DatasetItem, read_manifest, write_manifest
from lorkd_core.io import Scan, from_canonical, labels_to_canonical, load_scan, to_canonical
from lorkd_core.regions import REGION_NAMES

# no example database, and hypothesis' constants cache outside the working tree
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "lorkd-hypothesis"))
SETTINGS = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
TOL = 1e-5
# tmpfs where there is one: the atomic writers fsync, which costs ~0.3 s per file on a busy disk
FAST_TMP = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None

sizes = st.tuples(*[st.integers(1, 5)] * 3)  # (x, y, z), one-slice volumes included
# multiples of 1/64 mm: exact in the float32 NIfTI header, so a difference is the loader's, not rounding's
spacings = st.tuples(*[st.integers(4, 512).map(lambda k: k / 64)] * 3)
origins = st.tuples(*[st.integers(-32768, 32768).map(lambda k: k / 64)] * 3)


@st.composite
def signed_permutations(draw) -> np.ndarray:
    """An axis-aligned direction: each index axis along a world axis, either way (flips and axis swaps)."""
    perm = draw(st.permutations([0, 1, 2]))
    signs = draw(st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3))
    m = np.zeros((3, 3))
    for index_axis, world_axis in enumerate(perm):
        m[world_axis, index_axis] = signs[index_axis]
    return m


@st.composite
def directions(draw) -> np.ndarray:
    """Orthonormal: a signed permutation, sometimes composed with a rotation about a random axis."""
    m = draw(signed_permutations())
    if draw(st.booleans()):
        angle = draw(st.floats(-np.pi, np.pi, allow_nan=False))
        axis = np.asarray(draw(st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 3))) + [0, 0, 1e-3]
        k = axis / np.linalg.norm(axis)
        cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        m = (np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross) @ m
    return m


@SETTINGS
@given(size=sizes, spacing=spacings, origin=origins, direction=directions(), seed=st.integers(0, 2**16),
       suffix=st.sampled_from([".nii.gz", ".nrrd", ".mha"]))
def test_saved_volumes_load_back_with_their_geometry(size, spacing, origin, direction, seed, suffix):
    rng = np.random.default_rng(seed)
    array = rng.normal(0, 300, size[::-1]).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection([float(v) for v in direction.reshape(-1)])
    with tempfile.TemporaryDirectory(dir=FAST_TMP) as tmp:
        path = Path(tmp) / f"scan{suffix}"
        sitk.WriteImage(image, str(path), useCompression=suffix == ".nii.gz")
        scan = load_scan(path, modality="CT")
    assert scan.array.dtype == np.float32 and scan.array.shape == array.shape
    assert np.array_equal(scan.array, array)
    assert np.allclose(scan.spacing, spacing, rtol=0, atol=TOL)
    assert np.allclose(scan.origin, origin, rtol=0, atol=TOL)
    assert np.allclose(scan.direction, direction.reshape(-1), rtol=0, atol=TOL)


@SETTINGS
@given(size=sizes, spacing=spacings, origin=origins, direction=signed_permutations(), seed=st.integers(0, 2**16))
def test_canonical_round_trip_is_the_identity_on_labels(size, spacing, origin, direction, seed):
    rng = np.random.default_rng(seed)
    shape = size[::-1]
    labels = rng.integers(0, 6, shape).astype(np.int16)
    scan = Scan(labels.astype(np.float32), spacing, origin, tuple(direction.reshape(-1)), "CT")
    canonical, grid = to_canonical(scan)
    assert np.allclose(grid.grid.matrix, np.eye(3))  # LPS
    # every canonical voxel holds the scan voxel at the same world point
    assert np.array_equal(canonical, scan.array.reshape(-1)[_canonical_sources(scan, grid)].reshape(grid.shape))
    moved = labels_to_canonical(labels, grid)
    assert moved.dtype == labels.dtype and np.array_equal(moved, canonical.astype(np.int16))
    back = from_canonical(moved, grid)
    assert back.dtype == labels.dtype and np.array_equal(back, labels)


def _canonical_sources(scan: Scan, grid) -> np.ndarray:
    """For each canonical voxel (flat, C order), the flat index of the scan voxel at the same world point."""
    z, y, x = grid.shape
    idx = np.stack(np.meshgrid(np.arange(x), np.arange(y), np.arange(z), indexing="ij"), -1).reshape(-1, 3)
    world = grid.grid.index_to_physical(idx.astype(float))
    g = scan.geometry
    source = np.linalg.solve(g.matrix * np.asarray(g.spacing), (world - np.asarray(g.origin)).T).T
    rounded = np.round(source).astype(int)
    assert np.allclose(source, rounded, atol=1e-6)  # every canonical voxel sits on a scan voxel centre
    flat_scan = np.ravel_multi_index((rounded[:, 2], rounded[:, 1], rounded[:, 0]), scan.array.shape)
    # idx enumerates (x, y, z) with x slowest; reorder to the canonical array's C order (z, y, x)
    order = np.ravel_multi_index((idx[:, 2], idx[:, 1], idx[:, 0]), grid.shape)
    out = np.empty(len(order), dtype=int)
    out[order] = flat_scan
    return out


names = st.text(alphabet="abcXYZ019 _-.äöüÜ患者", min_size=1, max_size=12).filter(lambda s: s.strip(". ") != "")
label_maps = st.dictionaries(st.integers(1, 40), st.text(min_size=1, max_size=10), max_size=4)
json_values = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8)


@SETTINGS
@given(cases=st.lists(st.tuples(names, st.booleans(), st.sampled_from(REGION_NAMES),
                                st.sampled_from(["CT", "MR", "XR", "OT"]), st.none() | label_maps,
                                st.none() | st.text(min_size=1, max_size=8),
                                st.sampled_from(["train", "val", "test"]),
                                st.dictionaries(st.sampled_from(["site", "note", "age_band"]), json_values,
                                                max_size=2)),
                      max_size=6))
def test_manifest_round_trip(cases):
    with tempfile.TemporaryDirectory(dir=FAST_TMP) as tmp:
        root = Path(tmp).resolve()
        items = [
            DatasetItem(image=root / "cases" / f"c{n}_{name}" / "ct.nii.gz",
                        label=(root / "cases" / f"c{n}_{name}" / "seg.nii.gz") if has_label else None,
                        region=region, modality=modality, labels=labels, finding=finding, split=split,
                        case_id=f"case {n} {name}", extra=extra)
            for n, (name, has_label, region, modality, labels, finding, split, extra) in enumerate(cases)
        ]
        manifest = write_manifest(root / "sub" / "manifest.jsonl", items)
        text = manifest.read_text(encoding="utf-8")
        assert str(root) not in text  # paths are relative to the manifest's folder
        back = read_manifest(manifest)
    assert back == items
    assert [b.extra for b in back] == [i.extra for i in items]
