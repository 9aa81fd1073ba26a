"""DICOM series: discovery, sorting, series choice, HU, de-identified metadata, and DICOM SEG output."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from lorkd_core.errors import LabelError, ScanError
from lorkd_core.io import load_scan, save_dicom_seg

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-12345"


def write_series(
    folder: Path,
    shape=(6, 32, 40),
    spacing=(0.8, 0.7, 2.5),
    modality="CT",
    series_uid=None,
    seed=0,
    z_positions=None,
) -> np.ndarray:
    """Write a synthetic series (files in random order, random names); return the HU volume (z, y, x)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study, series, frame = generate_uid(), series_uid or generate_uid(), generate_uid()
    nz, ny, nx = shape
    values = rng.integers(-200, 300, size=shape).astype(np.int16)
    values[:, :4, :] = -1000
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    positions = z_positions if z_positions is not None else [100.0 + k * spacing[2] for k in range(nz)]
    for k in rng.permutation(nz):
        meta = FileMetaDataset()
        sop = generate_uid()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = (
            PATIENT_NAME,
            PATIENT_ID,
            "19700101",
            "F",
        )
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 2, int(k) + 1
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240101", "120000", "ACC1", "1"
        ds.ReferringPhysicianName = ""
        ds.Manufacturer, ds.SeriesDescription = "Synthetic", "test series"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-20.0, -30.0, positions[k]]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = [40, 400], [400, 1800]
        ds.WindowCenterWidthExplanation = ["SOFT", "BONE"]
        ds.PixelData = (values[k].astype(np.int32) + 1024).astype(np.uint16).tobytes()
        ds.save_as(folder / f"{rng.integers(1e9):09d}", enforce_file_format=True)
    return values.astype(np.float32)


def test_unsorted_series_loads_sorted_in_hu_with_geometry(tmp_path):
    hu = write_series(tmp_path / "ct")
    scan = load_scan(tmp_path / "ct")
    assert scan.modality == "CT" and scan.meta["modality_source"] == "dicom"
    np.testing.assert_array_equal(scan.array, hu)  # rescale applied, slices in position order
    np.testing.assert_allclose(scan.spacing, (0.8, 0.7, 2.5))
    np.testing.assert_allclose(scan.origin, (-20.0, -30.0, 100.0))
    assert scan.orientation == "LPS"
    assert scan.meta["windows"] == [
        {"width": 400.0, "level": 40.0, "name": "SOFT"},
        {"width": 1800.0, "level": 400.0, "name": "BONE"},
    ]
    assert scan.meta["n_slices"] == 6 and len(scan.meta["dicom_files"]) == 6


def test_metadata_holds_no_patient_identifiers(tmp_path):
    write_series(tmp_path / "ct")
    scan = load_scan(tmp_path / "ct")
    text = repr(scan.meta)
    for secret in (PATIENT_NAME, "Doe", PATIENT_ID, "19700101", "ACC1"):
        assert secret not in text
    assert not {k for k in scan.meta if "patient_name" in k or "birth" in k or k == "patient_id"}


def test_series_with_most_slices_or_by_uid(tmp_path):
    small_uid = generate_uid()
    write_series(tmp_path / "mixed", shape=(4, 16, 16), series_uid=small_uid, seed=1)
    write_series(tmp_path / "mixed", shape=(7, 16, 16), seed=2, modality="MR")
    default = load_scan(tmp_path / "mixed")
    assert default.array.shape[0] == 7 and default.modality == "MR"
    assert default.meta["series_in_folder"] == 2
    chosen = load_scan(tmp_path / "mixed", series_uid=small_uid)
    assert chosen.array.shape[0] == 4 and chosen.meta["series_uid"] == small_uid
    with pytest.raises(ScanError, match="no series with SeriesInstanceUID 1.2.3"):
        load_scan(tmp_path / "mixed", series_uid="1.2.3")


def test_nested_folder_and_single_file(tmp_path):
    write_series(tmp_path / "study" / "series1", shape=(3, 16, 16))
    scan = load_scan(tmp_path / "study")
    assert scan.array.shape == (3, 16, 16)
    one = load_scan(Path(scan.meta["dicom_files"][0]))
    assert one.array.shape == (1, 16, 16) and one.meta["is_2d"] and one.modality == "CT"


def test_series_with_a_missing_slice_is_refused(tmp_path):
    write_series(tmp_path / "gap", shape=(5, 16, 16), z_positions=[0.0, 2.5, 5.0, 10.0, 12.5])
    with pytest.raises(ScanError, match="unevenly spaced"):
        load_scan(tmp_path / "gap")
    write_series(tmp_path / "dup", shape=(4, 16, 16), z_positions=[0.0, 2.5, 2.5, 5.0])
    with pytest.raises(ScanError, match="share a position"):
        load_scan(tmp_path / "dup")


def test_dicom_seg_round_trip(tmp_path):
    write_series(tmp_path / "ct", shape=(6, 32, 40))
    scan = load_scan(tmp_path / "ct")
    labels = np.zeros(scan.array.shape, np.int16)
    labels[1:4, 5:20, 5:20] = 5  # liver
    labels[2:6, 22:30, 25:38] = 1  # spleen
    labels[0, 0:3, 0:3] = 32  # vertebrae_T12, one frame
    names = {1: "spleen", 5: "liver", 32: "vertebrae_T12", 7: "pancreas"}
    start = time.perf_counter()
    out = save_dicom_seg(tmp_path / "seg.dcm", labels, scan, names)
    seconds = time.perf_counter() - start
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG"
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["spleen", "liver", "vertebrae_T12"]
    assert len(ds.SegmentSequence) == 3
    assert int(ds.NumberOfFrames) == 4 + 3 + 1  # non-empty frames only
    assert ds.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Liver"
    assert PATIENT_NAME == str(ds.PatientName)  # a SEG belongs to the patient of its source series
    assert seconds < 10
    # the series folder works as the source too
    save_dicom_seg(tmp_path / "seg2.dcm", labels, tmp_path / "ct", names)
    assert len(pydicom.dcmread(tmp_path / "seg2.dcm").SegmentSequence) == 3


def test_dicom_seg_colours_are_the_viewers(tmp_path):
    """Liver and stomach are 7 RGB units apart in the anatomical colours; the SEG carries the viewer's
    distinct ones (lorkd_core.regions.distinct_colors of the whole label set)."""
    import highdicom as hd

    from lorkd_core.regions import distinct_colors

    write_series(tmp_path / "ct", shape=(4, 16, 16))
    scan = load_scan(tmp_path / "ct")
    labels = np.zeros(scan.array.shape, np.int16)
    labels[0:2, 2:6, 2:6] = 1
    labels[2:4, 8:12, 8:12] = 2
    names = {1: "liver", 2: "stomach"}
    ds = pydicom.dcmread(save_dicom_seg(tmp_path / "seg.dcm", labels, scan, names))
    lab = [tuple(s.RecommendedDisplayCIELabValue) for s in ds.SegmentSequence]
    expected = distinct_colors(names)
    assert lab == [tuple(hd.color.CIELabColor.from_rgb(*expected[k]).value) for k in (1, 2)]
    assert lab[0] != lab[1]


def test_dicom_seg_refuses_bad_input(tmp_path, ct_dicom_dir):
    write_series(tmp_path / "ct", shape=(3, 16, 16))
    scan = load_scan(tmp_path / "ct")
    with pytest.raises(LabelError, match="empty"):
        save_dicom_seg(tmp_path / "s.dcm", np.zeros(scan.array.shape, np.int16), scan, {})
    with pytest.raises(LabelError, match="shape"):
        save_dicom_seg(tmp_path / "s.dcm", np.ones((2, 16, 16), np.int16), scan, {1: "liver"})
    # the bundled real series was anonymised down to empty UIDs: a SEG cannot reference it
    labels = np.zeros((20, 512, 512), np.int16)
    labels[10, 100:110, 100:110] = 1
    with pytest.raises(ScanError, match="lacks SOPInstanceUID"):
        save_dicom_seg(tmp_path / "real.dcm", labels, ct_dicom_dir, {1: "liver"})
    assert not (tmp_path / "real.dcm").exists()


def test_dicom_seg_at_full_size_with_the_real_label_map(tmp_path, ct_seg_path, real_data_dir):
    # the real series has no UIDs, so its 31-structure label map goes onto a synthetic 512 x 512 x 20 series
    import json

    from lorkd_core.io import load_label_map

    write_series(tmp_path / "ct", shape=(20, 512, 512))
    scan = load_scan(tmp_path / "ct")
    labels = load_label_map(ct_seg_path).array  # any 20 x 512 x 512 map of 31 structures will do
    names = {
        int(k): v
        for k, v in json.loads((real_data_dir / "totalsegmentator_v2_labels.json").read_text()).items()
    }
    start = time.perf_counter()
    save_dicom_seg(tmp_path / "seg.dcm", labels, scan, names)
    assert time.perf_counter() - start < 15
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    present = [int(v) for v in np.unique(labels) if v]
    assert len(ds.SegmentSequence) == len(present) == 31
    assert int(ds.NumberOfFrames) == sum(int(np.any(labels[z] == v)) for v in present for z in range(20))
