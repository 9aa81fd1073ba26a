"""Model cards (validation, tamper and truncation errors) and the model catalog."""

from __future__ import annotations

import json

import pytest
from test_inference_tiny import build_models

from lorkd_core.engine.catalog import ModelEntry, entries_for_folder, find_entry, list_models, read_catalog
from lorkd_core.engine.model_card import (
    ModelCard,
    load_weights,
    read_card,
    region_labels,
    teacher_channels,
    update_metrics,
    write_card,
)
from lorkd_core.errors import ModelError


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_models(tmp_path_factory.mktemp("catalog"), regions=["abdomen", "thorax"])


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_card_round_trip_keeps_unknown_fields(models, tmp_path):
    folder = _copy(models / "experts", tmp_path / "experts")
    data = json.loads((folder / "card.json").read_text())
    data["custom_note"] = {"kept": True}
    (folder / "card.json").write_text(json.dumps(data))
    card = read_card(folder)
    assert card.kind == "experts" and card.experts is not None and card.experts.ranks == {"abdomen": 2, "thorax": 2}
    assert card.label_names("abdomen") == {1: "liver", 2: "spleen"}
    write_card(folder, card)
    again = json.loads((folder / "card.json").read_text())
    assert again["custom_note"] == {"kept": True}
    assert again["experts"]["layers"] == data["experts"]["layers"]
    assert ModelCard.from_dict(again).to_dict() == again


@pytest.mark.parametrize("field, value, expect", [
    ("kind", "wizard", "'kind'"),
    ("regions", ["abdomen", "mars"], "'regions'"),
    ("format", "other/2", "'format'"),
    ("parameters", -3, "'parameters'"),
    ("labels", {"abdomen": {"x": "liver"}}, "'labels.abdomen'"),
])
def test_tampered_card_names_file_and_field(models, tmp_path, field, value, expect):
    folder = _copy(models / "baseline", tmp_path / "baseline")
    data = json.loads((folder / "card.json").read_text())
    data[field] = value
    (folder / "card.json").write_text(json.dumps(data))
    with pytest.raises(ModelError) as err:
        read_card(folder)
    assert str(folder / "card.json") in str(err.value) and expect in str(err.value)


def test_broken_json_and_missing_card(tmp_path):
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_card(tmp_path)
    with pytest.raises(ModelError, match="card.json is missing"):
        read_card(tmp_path / "nowhere")


def test_truncated_or_swapped_weights_name_the_file(models, tmp_path):
    folder = _copy(models / "experts", tmp_path / "experts")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelError) as err:
        load_weights(folder)
    assert str(weights) in str(err.value)
    # without the checksum the safetensors reader itself must refuse the truncated file
    data = json.loads((folder / "card.json").read_text())
    data.pop("weights_sha256")
    (folder / "card.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="truncated or corrupt") as err:
        load_weights(folder)
    assert str(weights) in str(err.value)


def test_shape_mismatch_names_the_tensor(models, tmp_path):
    from lorkd_core.engine.model_io import load_model

    folder = _copy(models / "baseline", tmp_path / "baseline")
    data = json.loads((folder / "card.json").read_text())
    data["architecture"]["heads"]["abdomen"] = 5  # the stored head has 3 outputs
    data.pop("weights_sha256")
    (folder / "card.json").write_text(json.dumps(data))
    with pytest.raises(ModelError) as err:
        load_model(folder)
    assert "heads.abdomen.weight" in str(err.value) and str(folder / "model.safetensors") in str(err.value)


def test_list_models_one_entry_per_region(models):
    entries = list_models([models], include_bundled=False)
    assert all(isinstance(e, ModelEntry) for e in entries)
    by_kind: dict[str, list[str]] = {}
    for e in entries:
        by_kind.setdefault(e.kind, []).append(e.region)
    assert sorted(by_kind["teacher"]) == ["abdomen", "thorax"]
    assert sorted(by_kind["user"]) == ["abdomen", "thorax"]  # an experts set outside the bundle
    assert len({e.id for e in entries}) == len(entries)
    teacher = next(e for e in entries if e.kind == "teacher" and e.region == "thorax")
    assert teacher.label_names == {1: "lung_upper_lobe_left", 2: "lung_lower_lobe_left"}
    assert teacher.parameters > 0 and teacher.task == "segmentation" and teacher.modality == "CT"


def test_broken_model_folders_are_skipped_and_reported(models, tmp_path):
    root = tmp_path / "models"
    _copy(models / "experts", root / "good")
    (root / "broken").mkdir()
    (root / "broken" / "card.json").write_text('{"format": "lorkd-model/1"')
    found = read_catalog([root], include_bundled=False)
    assert {e.region for e in found.entries} == {"abdomen", "thorax"}
    assert [p.folder for p in found.problems] == [root / "broken"]
    assert str(root / "broken" / "card.json") in str(found.problems[0].error)
    assert list_models([root], include_bundled=False) == found.entries
    with pytest.raises(ModelError, match="not valid JSON"):
        list_models([root], include_bundled=False, strict=True)


def test_bundled_experts_set_is_kind_experts_set(models, tmp_path, monkeypatch):
    import lorkd_core.engine.catalog as catalog

    bundle = tmp_path / "models"
    _copy(models / "experts", bundle / "demo" / "experts")
    monkeypatch.setattr(catalog, "bundled_models_dir", lambda: bundle)
    entries = list_models()
    assert {e.kind for e in entries} == {"experts-set"} and all(e.bundled for e in entries)
    assert find_entry("thorax").id == "bundled:demo/experts#thorax"


def test_newest_version_of_a_bundled_expert_is_the_default(models, tmp_path, monkeypatch):
    """An adapted expert (card version 2) is picked over its parent for its region, wherever it sorts."""
    import lorkd_core.engine.catalog as catalog
    from lorkd_core.engine.evaluate import find_models

    bundle = tmp_path / "models"
    _copy(models / "experts", bundle / "experts")
    adapted = _copy(models / "experts", bundle / "zz_abdomen_v2" / "experts")  # after "experts" in the walk
    card = read_card(adapted)
    card.extra["version"] = 2
    write_card(adapted, card)
    monkeypatch.setattr(catalog, "bundled_models_dir", lambda: bundle)
    assert find_entry("abdomen").id == "bundled:zz_abdomen_v2/experts#abdomen"
    chosen = {e.region: e.path.parent.name for e in find_models(bundle)["experts"]}
    assert chosen["abdomen"] == "zz_abdomen_v2"
    card.extra["version"] = 1  # equal versions: the order found decides, as before
    write_card(adapted, card)
    assert find_entry("abdomen").id == "bundled:experts#abdomen"


def test_missing_bundled_models_give_a_clear_error(tmp_path, monkeypatch):
    import lorkd_core.engine.catalog as catalog

    monkeypatch.setattr(catalog, "bundled_models_dir", lambda: tmp_path / "absent")
    with pytest.raises(ModelError, match="no bundled models"):
        find_entry("abdomen")


def test_find_entry_in_folder_and_region_errors(models):
    entry = find_entry("abdomen", model=models / "experts")
    assert entry.region == "abdomen" and entry.card.kind == "experts"
    with pytest.raises(ModelError, match="no segmentation model for region 'brain'"):
        find_entry("brain", model=models / "experts")
    with pytest.raises(ModelError, match="does not exist"):
        entries_for_folder(models / "nope")


def test_teacher_channels_follow_the_union(models):
    card = read_card(models / "teacher")
    channels, local = teacher_channels(card, "thorax")
    union = card.labels["union"]
    assert [union[c] for c in channels] == list(local.values())
    assert region_labels(card, "abdomen") == {1: "liver", 2: "spleen"}


def test_metrics_update_shows_in_catalog(models, tmp_path):
    folder = _copy(models / "experts", tmp_path / "experts")
    update_metrics(folder, {"dice": {"abdomen": 0.91}})
    entry = next(e for e in entries_for_folder(folder) if e.region == "abdomen")
    assert entry.dice == pytest.approx(0.91)
    load_weights(folder)  # the checksum still matches after a metrics update
