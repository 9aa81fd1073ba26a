"""The "New decomposition" dialog: dataset, teacher, student, ranks, optimisation, device and where to run.

"Check data" imports the dataset on the worker and shows the per-region case counts and problems;
"Start" prepares the data (phantoms are generated into the job folder, a TotalSegmentator / nnU-Net /
MSD folder is imported into a manifest there), runs the engine's preflight, and only starts the job
when preflight finds no problem (else the problems are shown and the dialog stays open).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lorkd_core.engine.config import DecomposeConfig, default_student_network

from .manager import JobManager

DATA_SOURCES = {"phantoms": "Bundled phantoms (generated into the job folder)",
                "folder": "Folder (TotalSegmentator / nnU-Net / MSD)", "manifest": "Manifest (JSONL)"}
STUDENTS = {
    "tiny": {"name": "monai.UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
    "small": {"name": "monai.UNet", "kwargs": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 0}},
    "default": default_student_network(),
}
RANK_MODES = ("uniform", "per region", "proportional")


def bundled_teacher() -> Path | None:
    try:
        from lorkd_core.engine.catalog import bundled_models_dir

        folder = bundled_models_dir() / "teacher"
    except Exception:  # noqa: BLE001 - no bundled models at all
        return None
    return folder if (folder / "card.json").is_file() else None


def prepare_data(source: str, path: str, out: Path, *, phantom_cases: int = 4, phantom_size: int = 64,
                 ctx=None) -> tuple[str, dict[str, int], list[str]]:
    """worker: (manifest path, cases per region, problems) for a data source."""
    from lorkd_core.data.datasets import import_dataset, summarize
    from lorkd_core.data.manifest import write_manifest

    progress = ctx.progress if ctx is not None else None
    cancel = ctx.cancel if ctx is not None else None
    if source == "phantoms":
        from lorkd_core.data.phantoms import write_phantom_dataset

        manifest = out / "data" / "manifest.jsonl"
        if not manifest.is_file():
            manifest = Path(write_phantom_dataset(out / "data", phantom_cases, size=phantom_size,
                                                  progress=progress, cancel=cancel))
        path = str(manifest)
    result = import_dataset(path, progress=progress, cancel=cancel)
    problems = [str(p) for p in result.problems]
    counts = summarize(result.items)
    if source == "folder" and result.items:
        path = str(write_manifest(out / "data" / "manifest.jsonl", result.items))
    return path, counts, problems


class JobDialog(QDialog):
    def __init__(self, manager: JobManager, default_out: str | Path | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New decomposition")
        self.setObjectName("jobDialog")
        self.manager = manager
        self.started = None  # the JobRecord once started

        self.source = QComboBox()
        for key, text in DATA_SOURCES.items():
            self.source.addItem(text, key)
        self.data_path = QLineEdit()
        self.data_path.setPlaceholderText("folder or manifest.jsonl")
        self.phantom_cases = QSpinBox(minimum=1, maximum=200, value=4)
        self.teacher = QLineEdit(str(bundled_teacher() or ""))
        self.teacher.setPlaceholderText("teacher model folder (card.json), MONAI bundle, TorchScript…")
        self.student = QComboBox()
        self.student.addItems(list(STUDENTS))
        self.student.setCurrentText("default")
        self.feature_channels = QSpinBox(minimum=1, maximum=256, value=16)
        self.rank_mode = QComboBox()
        self.rank_mode.addItems(list(RANK_MODES))
        self.rank = QSpinBox(minimum=0, maximum=256, value=4)
        self.per_region = QLineEdit()
        self.per_region.setPlaceholderText("abdomen=4,thorax=2,…")
        self.steps = QSpinBox(minimum=1, maximum=1_000_000, value=200)
        self.batch = QSpinBox(minimum=1, maximum=512, value=4)
        self.patch = QSpinBox(minimum=8, maximum=512, value=64, singleStep=8)
        self.lr = QDoubleSpinBox(decimals=5, minimum=1e-5, maximum=1.0, value=2e-3, singleStep=1e-4)
        self.lam = QDoubleSpinBox(decimals=3, minimum=0.0, maximum=100.0, value=1.0, singleStep=0.1)
        self.tau = QDoubleSpinBox(decimals=2, minimum=0.1, maximum=100.0, value=2.0, singleStep=0.5)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.where = QComboBox()
        self.where.addItem("In the app (worker thread)", "inprocess")
        self.where.addItem("Subprocess (torchrun with N processes)", "subprocess")
        self.processes = QSpinBox(minimum=1, maximum=64, value=1)
        self.baseline = QCheckBox("Also train the no-expert baseline")
        self.baseline.setChecked(True)
        self.evaluate = QCheckBox("Evaluate when done (experts vs teacher vs baseline)")
        self.out = QLineEdit(str(default_out or ""))
        self.report = QPlainTextEdit()
        self.report.setObjectName("jobDialogReport")
        self.report.setReadOnly(True)
        self.report.setMinimumHeight(110)

        form = QFormLayout()
        form.addRow("Dataset", self.source)
        form.addRow("", self._with_browse(self.data_path, folder=True))
        form.addRow("Phantom cases / region", self.phantom_cases)
        form.addRow("Teacher", self._with_browse(self.teacher, folder=True))
        form.addRow("Student size", self.student)
        form.addRow("Feature channels", self.feature_channels)
        form.addRow("Ranks", self.rank_mode)
        form.addRow("Rank (uniform / mean)", self.rank)
        form.addRow("Per-region ranks", self.per_region)
        form.addRow("Steps", self.steps)
        form.addRow("Batch size", self.batch)
        form.addRow("Patch (voxels, cube)", self.patch)
        form.addRow("Learning rate", self.lr)
        form.addRow("λ (distillation)", self.lam)
        form.addRow("τ (temperature)", self.tau)
        form.addRow("Device", self.device)
        form.addRow("Run", self.where)
        form.addRow("Processes", self.processes)
        form.addRow("", self.baseline)
        form.addRow("", self.evaluate)
        form.addRow("Output folder", self._with_browse(self.out, folder=True))
        self.check_button = QPushButton("Check data")
        self.check_button.clicked.connect(self.check_data)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.start_button = self.buttons.addButton("Start", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.check_button)
        layout.addWidget(self.report)
        layout.addWidget(self.buttons)
        self.source.currentIndexChanged.connect(self._sync)
        self.rank_mode.currentIndexChanged.connect(self._sync)
        self.where.currentIndexChanged.connect(self._sync)
        self._sync()

    def _with_browse(self, edit: QLineEdit, folder: bool) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        button = QPushButton("…")
        button.setFixedWidth(28)

        def browse() -> None:
            if edit is self.data_path and self.source.currentData() == "manifest":
                path, _ = QFileDialog.getOpenFileName(self, "Manifest", "", "Manifest (*.jsonl)")
            else:
                path = QFileDialog.getExistingDirectory(self, "Folder")
            if path:
                edit.setText(path)

        button.clicked.connect(browse)
        row.addWidget(button)
        return box

    def _sync(self) -> None:
        phantoms = self.source.currentData() == "phantoms"
        self.data_path.setEnabled(not phantoms)
        self.phantom_cases.setEnabled(phantoms)
        self.per_region.setEnabled(self.rank_mode.currentText() == "per region")
        self.processes.setEnabled(self.where.currentData() == "subprocess")

    # ---------------------------------------------------------------- config

    def config(self, data: str = "") -> DecomposeConfig:
        """The DecomposeConfig the fields describe (raises ConfigError for impossible values)."""
        from lorkd_core.commands.decompose import parse_ranks

        mode = self.rank_mode.currentText()
        ranks: Any = self.rank.value() if mode == "uniform" else "proportional" if mode == "proportional" \
            else parse_ranks(self.per_region.text().strip())
        return DecomposeConfig(
            data=data or self.data_path.text().strip(), out=self.out.text().strip(),
            teacher=self.teacher.text().strip(), student=dict(STUDENTS[self.student.currentText()]),
            feature_channels=self.feature_channels.value(), ranks=ranks, rank=max(1, self.rank.value()),
            steps=self.steps.value(), batch_size=self.batch.value(), patch_size=(self.patch.value(),) * 3,
            lr=self.lr.value(), lam=self.lam.value(), tau=self.tau.value(), device=self.device.currentText(),
            baseline=self.baseline.isChecked())

    # ---------------------------------------------------------------- actions

    def _prepare(self, then) -> None:
        source = self.source.currentData()
        out = Path(self.out.text().strip() or ".")
        path = self.data_path.text().strip()
        if source != "phantoms" and not path:
            self.report.setPlainText("Choose a dataset folder or manifest first.")
            return
        if source == "phantoms" and not self.out.text().strip():
            self.report.setPlainText("Choose an output folder first (the phantoms are generated into it).")
            return
        self._busy(True)
        self.report.setPlainText("Reading the dataset…")
        cases = self.phantom_cases.value()

        def fail(exc: BaseException) -> None:
            self._busy(False)
            self.report.setPlainText(f"The dataset could not be read: {exc}")

        self.manager.worker.submit("Reading the dataset",
                                   lambda ctx: prepare_data(source, path, out, phantom_cases=cases, ctx=ctx),
                                   key="job-dialog", on_result=then, on_error=fail)

    def _busy(self, busy: bool) -> None:
        self.check_button.setEnabled(not busy)
        self.start_button.setEnabled(not busy)

    def check_data(self) -> None:
        def show(result) -> None:
            self._busy(False)
            _, counts, problems = result
            self.report.setPlainText(_data_text(counts, problems))

        self._prepare(show)

    def start(self) -> None:
        if not self.out.text().strip():
            self.report.setPlainText("Choose an output folder.")
            return
        mode = self.where.currentData()
        world = self.processes.value() if mode == "subprocess" else 1

        def checked(result) -> None:
            manifest, counts, data_problems = result
            try:
                cfg = self.config(manifest)
            except Exception as exc:  # noqa: BLE001 - a ConfigError to show, not to raise
                self._busy(False)
                self.report.setPlainText(f"Settings problem: {exc}")
                return

            def run_preflight(ctx):
                from lorkd_core.engine.preflight import preflight

                return preflight(cfg, world=world)

            def decided(pf) -> None:
                self._busy(False)
                too_big = memory_problem(pf.memory_bytes, cfg.device)
                if too_big:
                    pf.problems.append(too_big)
                text = _data_text(counts, data_problems) + "\n" + _preflight_text(pf)
                self.report.setPlainText(text)
                if pf.problems:
                    return
                self.started = self.manager.start(cfg, mode=mode, processes=world,
                                                  evaluate=self.evaluate.isChecked())
                self.accept()

            self.manager.worker.submit("Checking the job", run_preflight, key="job-dialog", on_result=decided,
                                       on_error=lambda exc: (self._busy(False),
                                                             self.report.setPlainText(f"Preflight failed: {exc}")))

        self._prepare(checked)


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 when unknown)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def memory_problem(estimate: int, device: str) -> str:
    """A problem when the estimate exceeds 80% of the memory the job would run in ("" when it fits)."""
    available, where = machine_memory(), "this machine's memory"
    if device in ("cuda", "auto"):
        try:
            import torch

            if torch.cuda.is_available():
                available, where = int(torch.cuda.get_device_properties(0).total_memory), "the GPU's memory"
        except Exception:  # noqa: BLE001 - no usable CUDA: keep the machine's memory
            pass
    if available and estimate > 0.8 * available:
        return (f"the job needs about {estimate / 2**30:.1f} GiB but {where} is {available / 2**30:.1f} GiB: "
                "lower the batch size or the patch size")
    return ""


def _data_text(counts: dict[str, int], problems: list[str]) -> str:
    lines = ["Cases per region: " + (", ".join(f"{r} {n}" for r, n in sorted(counts.items())) or "none")]
    if problems:
        lines.append(f"{len(problems)} problem(s) in the data:")
        lines += [f"  • {p}" for p in problems[:20]]
    return "\n".join(lines)


def _preflight_text(pf) -> str:
    gib = pf.memory_bytes / 2**30
    lines = [f"Memory estimate: {gib:.2f} GiB"]
    if pf.problems:
        lines.append("Cannot start:")
        lines += [f"  • {p}" for p in pf.problems]
    else:
        lines.append("Preflight: no problems.")
    return "\n".join(lines)
