"""Phantom ``realism`` levels: level 1 is the original generator, level 2 moves towards real CT."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lorkd_core.data.phantom_tissues import T
from lorkd_core.data.phantoms import generate_case, write_phantom_dataset
from lorkd_core.errors import ConfigError

SEEDS = (0, 1, 2, 3)
LABELS = ("liver", "spleen", "stomach", "autochthon_left", "autochthon_right")


def _stats(realism: int, seed: int) -> dict[str, float]:
    c = generate_case("abdomen", seed, shape=48, labels=LABELS, realism=realism)
    spleen = c.labels == 2
    stomach = c.labels == 3
    muscle = np.isin(c.labels, (4, 5)) & (c.tissues == T.BACK_MUSCLE)
    return {"spleen_cm2": float(spleen.sum((1, 2)).max() * c.spacing[0] * c.spacing[1] / 100),
            "gas": float((c.image[stomach] < -500).mean()) if stomach.any() else 0.0,
            "muscle": float(c.image[muscle].mean()), "noise": c.meta["noise_hu"]}


@pytest.fixture(scope="module")
def stats() -> dict[int, list[dict[str, float]]]:
    return {r: [_stats(r, s) for s in SEEDS] for r in (1, 2)}


@pytest.mark.parametrize("region", ["abdomen", "thorax", "upper_limb"])
def test_realism_1_is_the_default_bit_for_bit(region: str) -> None:
    a = generate_case(region, 5, shape=40)
    b = generate_case(region, 5, shape=40, realism=1)
    for name in ("image", "labels", "finding_mask", "tissues"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.spacing == b.spacing and a.meta == b.meta and "realism" not in a.meta


def test_realism_2_differs_and_is_recorded() -> None:
    a = generate_case("abdomen", 5, shape=40)
    b = generate_case("abdomen", 5, shape=40, realism=2)
    assert not np.array_equal(a.image, b.image)
    assert b.meta["realism"] == 2


def test_realism_2_moves_the_statistics_towards_real_ct(stats) -> None:
    mean = {r: {k: np.mean([s[k] for s in stats[r]]) for k in stats[r][0]} for r in (1, 2)}
    assert mean[2]["spleen_cm2"] > 1.3 * mean[1]["spleen_cm2"]
    assert mean[2]["gas"] > mean[1]["gas"] + 0.02
    assert mean[2]["muscle"] < mean[1]["muscle"] - 10
    assert mean[2]["noise"] > mean[1]["noise"]


def test_unknown_realism_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError):
        generate_case("abdomen", 0, shape=32, realism=3)
    with pytest.raises(ConfigError):
        write_phantom_dataset(tmp_path, 1, ["abdomen"], size=32, realism=0)


def test_dataset_records_realism(tmp_path) -> None:
    write_phantom_dataset(tmp_path / "r2", 1, ["abdomen"], size=32, findings=False, realism=2)
    write_phantom_dataset(tmp_path / "r1", 1, ["abdomen"], size=32, findings=False)
    assert json.loads((tmp_path / "r2" / "dataset.json").read_text())["realism"] == 2
    assert json.loads((tmp_path / "r1" / "dataset.json").read_text())["realism"] == 1
    seg = json.loads((tmp_path / "r2" / "cases" / "abdomen_000" / "seg.json").read_text())
    assert seg["phantom"]["realism"] == 2
