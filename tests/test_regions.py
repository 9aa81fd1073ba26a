"""The region taxonomy (resources/regions.json via lorkd_core.regions)."""

from __future__ import annotations

import json

import pytest

from lorkd_core.regions import (
    REGION_NAMES,
    color_of,
    load_taxonomy,
    normalize_name,
    region_of,
    totalseg_label_to_region,
)

CONTRACT_ORDER = ("abdomen", "brain", "head_neck", "lower_limb", "pelvis", "spine", "thorax", "upper_limb")


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


@pytest.fixture(scope="module")
def ts_labels(real_data_dir):
    raw = json.loads((real_data_dir / "totalsegmentator_v2_labels.json").read_text())
    return {int(k): v for k, v in raw.items()}


def test_regions_in_contract_order_with_display_names(taxonomy):
    assert REGION_NAMES == CONTRACT_ORDER
    assert tuple(taxonomy.regions) == CONTRACT_ORDER
    assert taxonomy.regions["head_neck"].display_name == "Head & neck"
    assert taxonomy.regions["lower_limb"].display_name == "Lower limb"
    assert [r.index for r in taxonomy.regions.values()] == list(range(8))
    assert load_taxonomy() is taxonomy  # cached


def test_every_totalsegmentator_v2_class_maps_to_a_region(taxonomy, ts_labels):
    assert len(ts_labels) == 117
    mapping = totalseg_label_to_region()
    assert set(mapping) == set(ts_labels.values())
    assert taxonomy.totalseg_ids == ts_labels
    for name in ts_labels.values():
        region = region_of(name)
        assert region in REGION_NAMES, name
        assert name in taxonomy.regions[region].structures, f"{name} missing from its primary region {region}"


@pytest.mark.parametrize(
    "name, region",
    [
        ("liver", "abdomen"),
        ("kidney_left", "abdomen"),
        ("vertebrae_L1", "spine"),
        ("vertebrae_C3", "spine"),
        ("lung_upper_lobe_left", "thorax"),
        ("rib_right_7", "thorax"),
        ("urinary_bladder", "pelvis"),
        ("femur_left", "lower_limb"),
        ("humerus_right", "upper_limb"),
        ("brain", "brain"),
        ("thyroid_gland", "head_neck"),
    ],
)
def test_primary_regions(name, region):
    assert region_of(name) == region


def test_region_label_sets_and_shared_structures(taxonomy):
    for region in taxonomy.regions.values():
        assert len(region.structures) == len(set(region.structures)), region.name
        assert region.label_map() == {i + 1: s for i, s in enumerate(region.structures)}
        for s in region.structures:
            assert s in taxonomy.structures, f"{region.name}: unknown structure {s}"
        for s in region.shared:
            assert taxonomy.structures[s].region != region.name
            assert s in region.structures
    # structures the issue asks for, including ones TotalSegmentator "total" lacks
    expected = {
        "brain": {"brain", "ventricles", "skull", "eye_left", "eye_right"},
        "head_neck": {"thyroid_gland", "trachea", "mandible"},
        "thorax": {"heart", "aorta", "trachea", "esophagus", "vertebrae_T5", "rib_left_3"},
        "abdomen": {"liver", "spleen", "kidney_left", "stomach", "pancreas", "aorta", "vertebrae_L1"},
        "pelvis": {"urinary_bladder", "hip_left", "femur_left", "sacrum", "rectum"},
        "upper_limb": {"humerus_left", "radius", "ulna"},
        "lower_limb": {"femur_right", "tibia", "fibula", "patella", "quadriceps_femoris_left"},
        "spine": {"vertebrae_C1", "vertebrae_L5", "spinal_cord"},
    }
    for region, names in expected.items():
        assert names <= set(taxonomy.regions[region].structures), region
    assert taxonomy.regions_of("aorta") == ["thorax", "abdomen"]
    assert "primary region" in taxonomy.notes


def test_colours_are_valid_rgb_and_follow_slicer(taxonomy):
    for s in taxonomy.structures.values():
        assert len(s.color) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in s.color), s.name
    for r in taxonomy.regions.values():
        assert len(r.color) == 3 and all(0 <= c <= 255 for c in r.color)
    slicer = {
        "liver": (221, 130, 101),
        "spleen": (157, 108, 162),
        "kidney_left": (185, 102, 83),
        "kidney_right": (185, 102, 83),
        "heart": (206, 110, 84),
        "aorta": (224, 97, 76),
        "brain": (250, 250, 225),
        "lung_upper_lobe_left": (197, 165, 145),
    }
    for name, rgb in slicer.items():
        assert color_of(name) == rgb, name
    assert color_of("vertebrae_L1") != color_of("vertebrae_L2")  # neighbours stay distinguishable
    unknown = color_of("my_tumour")
    assert unknown == color_of("my_tumour") and all(0 <= c <= 255 for c in unknown)


def test_window_presets(taxonomy):
    assert taxonomy.windows == {
        "soft_tissue": (350.0, 40.0),
        "lung": (1400.0, -500.0),
        "bone": (1000.0, 400.0),
        "brain": (100.0, 50.0),
    }
    for region in taxonomy.regions.values():
        assert region.default_window == taxonomy.windows[region.default_window_name]
    assert taxonomy.regions["brain"].default_window == (100.0, 50.0)
    assert taxonomy.regions["thorax"].default_window == (1400.0, -500.0)
    assert taxonomy.regions["abdomen"].default_window == (350.0, 40.0)


def test_names_and_aliases(taxonomy):
    assert normalize_name("Left Kidney") == "left_kidney"
    assert normalize_name("vertebrae_l1") == "vertebrae_L1"
    assert taxonomy.canonical_name("Left Kidney") == "kidney_left"
    assert taxonomy.canonical_name("Bladder") == "urinary_bladder"
    assert taxonomy.canonical_name("Liver") == "liver"
    assert taxonomy.canonical_name("cancer") is None
    assert region_of("no_such_thing") is None


def test_distinct_colors_keep_a_label_set_apart():
    """Slicer's anatomical colours make liver and stomach 7 RGB units apart; an overlay needs them distinct."""
    from lorkd_core.regions import MIN_COLOR_DISTANCE, _distance, _twins, color_of, distinct_colors

    abdomen = {1: "liver", 2: "spleen", 3: "kidney_left", 4: "kidney_right", 5: "stomach", 6: "pancreas",
               7: "inferior_vena_cava", 8: "aorta", 9: "vertebrae"}
    thorax = {1: "lung_left", 2: "lung_right", 3: "trachea", 4: "esophagus", 5: "heart", 6: "aorta", 7: "ribs",
              8: "sternum", 9: "vertebrae"}
    assert _distance(color_of("liver"), color_of("stomach")) < MIN_COLOR_DISTANCE  # the problem
    for names in (abdomen, thorax):
        colors = distinct_colors(names)
        assert set(colors) == set(names)
        for a in names:
            for b in names:
                if a < b and not _twins(names[a], names[b]):
                    assert _distance(colors[a], colors[b]) >= MIN_COLOR_DISTANCE, (names[a], names[b])
        # a pure function of the set: the order the labels come in does not matter
        assert distinct_colors(dict(reversed(list(names.items())))) == colors
    colors = distinct_colors(abdomen)
    assert colors[1] == color_of("liver")  # the first label keeps its anatomical colour
    assert colors[3] == colors[4]  # left/right twins share one
    red = distinct_colors(thorax)[6]
    assert red[0] > 2 * red[1]  # the aorta, moved off the heart's colour, stays red
