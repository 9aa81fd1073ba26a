"""The job dialog: a job type (decompose a teacher, or adapt one region's expert), its data, its settings,
the device and where to run.

A decomposition opens on the "Demo decomposition" preset (DEMO_PRESET): the bundled phantoms and the
bundled teacher, sized so that one click on Start finishes (phantoms, data loading, training, evaluation)
in about DEMO_MINUTES minutes on a 2-core CPU machine; docs/gui_decomposition_timing.md has the measured
run and tests/test_gui_demo_job.py keeps the two in step. Editing any of its fields turns the preset to
"Custom".

"Check data" imports the dataset on the worker and shows the per-region case counts and problems (for
an adapt job also the chosen region's cases and whether their labels match the expert's head);
"Start" prepares the data (phantoms are generated into the job folder, a TotalSegmentator / nnU-Net /
MSD folder is imported into a manifest there), runs the preflight, and only starts the job when it
finds no problem (else the problems are shown and the dialog stays open).
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
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..services import jobs as job_service
from ..services.core import (
    AdaptConfig,
    DecomposeConfig,
    JobConfig,
    LorkdError,
    Progress,
    default_student_network,
)
from ..services.jobs import DataCheck, ExpertsSource, bundled_experts, bundled_teacher
from .manager import JobManager

DATA_SOURCES = {"phantoms": "Bundled phantoms (generated into the job folder)",
                "folder": "Folder (TotalSegmentator / nnU-Net / MSD)", "manifest": "Manifest (JSONL)"}
STUDENTS = {
    "tiny": {"name": "monai.UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
    "small": {"name": "monai.UNet", "kwargs": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 0}},
    "default": default_student_network(),
    # the bundled experts' backbone (resources/models/experts): the demo preset trains the same architecture
    "demo": {"name": "monai.UNet",
             "kwargs": {"channels": [32, 48, 64, 96, 128], "strides": [2, 2, 2, 2], "num_res_units": 0}},
}
RANK_MODES = ("uniform", "per region", "proportional")
TITLES = {"decompose": "New decomposition", "adapt": "Adapt an expert"}
DEFAULT_STEPS = {"decompose": DecomposeConfig.steps, "adapt": AdaptConfig.steps}
DEFAULT_LR = {"decompose": DecomposeConfig.lr, "adapt": AdaptConfig.lr}
DEFAULT_PATCH = 64
DEFAULT_SPACING_MM = 3.0  # DecomposeConfig's default resolution

# The one-click demo: the bundled phantoms (generated into the job folder) and the bundled teacher (trained
# at 4 mm on 64^3 patches; it is fully convolutional, so the student can learn from it on 32^3 patches).
# Measured from the GUI on 2 CPU cores: docs/gui_decomposition_timing.md (keep both in step; a test checks).
DEMO_MINUTES = 11
DEMO_PRESET = {
    "dataset": "phantoms", "phantom_cases": 4, "phantom_size": 96, "teacher": "bundled",
    "student": "demo", "feature_channels": 16, "ranks": "uniform", "rank": 4, "lam": 1.0, "tau": 2.0,
    "baseline": False, "steps": 500, "batch_size": 8, "patch": 32, "spacing_mm": 4.0, "lr": 0.01,
    "device": "auto", "run": "inprocess", "evaluate": True,
}
PRESETS = {"demo": f"Demo decomposition: bundled phantoms + bundled teacher (about {DEMO_MINUTES} min on 2 CPU cores)",
           "custom": "Custom"}


class JobDialog(QDialog):
    def __init__(self, manager: JobManager, default_out: str | Path | None = None,
                 parent: QWidget | None = None, *, job_type: str = "decompose", region: str | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("jobDialog")
        self.manager = manager
        self.started = None  # the JobRecord once started
        self.experts_source: ExpertsSource | None = None

        self.job_type = QComboBox()
        self.job_type.setObjectName("jobType")
        for key, text in job_service.JOB_TITLES.items():
            self.job_type.addItem(text, key)
        self.source = QComboBox()
        for key, text in DATA_SOURCES.items():
            self.source.addItem(text, key)
        self.data_path = QLineEdit()
        self.data_path.setPlaceholderText("folder or manifest.jsonl")
        self.phantom_cases = QSpinBox(minimum=1, maximum=200, value=4)
        self.phantom_size = QSpinBox(minimum=32, maximum=256, value=96, singleStep=16)
        self.preset = QComboBox()
        self.preset.setObjectName("jobPreset")
        for key, text in PRESETS.items():
            self.preset.addItem(text, key)
        self._applying = False  # setting fields from a preset (not a user edit)

        # decompose
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
        self.lam = QDoubleSpinBox(decimals=3, minimum=0.0, maximum=100.0, value=1.0, singleStep=0.1)
        self.tau = QDoubleSpinBox(decimals=2, minimum=0.1, maximum=100.0, value=2.0, singleStep=0.5)
        self.spacing = QDoubleSpinBox(decimals=2, minimum=0.25, maximum=20.0, value=DEFAULT_SPACING_MM, singleStep=0.5)
        self.baseline = QCheckBox("Also train the no-expert baseline")
        self.baseline.setChecked(True)

        # adapt
        self.experts = QLineEdit(str(bundled_experts() or ""))
        self.experts.setObjectName("adaptExperts")
        self.experts.setPlaceholderText("experts model folder (a decomposition output or its experts/)")
        self.region = QComboBox()
        self.region.setObjectName("adaptRegion")
        self.adapt_rank = QLabel("")
        self.adapt_rank.setObjectName("adaptRank")
        self.adapt_rank.setWordWrap(True)
        self.train_head = QCheckBox("Train the region's head too (needed when the labels differ)")
        self.train_head.setChecked(True)
        self.adapt_teacher = QLineEdit("")
        self.adapt_teacher.setPlaceholderText("optional: a teacher for distillation")
        self.adapt_lam = QDoubleSpinBox(decimals=3, minimum=0.0, maximum=100.0, value=0.0, singleStep=0.1)

        # both
        self.steps = QSpinBox(minimum=1, maximum=1_000_000, value=200)
        self.batch = QSpinBox(minimum=1, maximum=512, value=4)
        self.patch = QSpinBox(minimum=8, maximum=512, value=DEFAULT_PATCH, singleStep=8)
        self.lr = QDoubleSpinBox(decimals=5, minimum=1e-5, maximum=1.0, value=2e-3, singleStep=1e-4)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.where = QComboBox()
        self.where.addItem("In the app (worker thread)", "inprocess")
        self.where.addItem("Subprocess (torchrun with N processes)", "subprocess")
        self.processes = QSpinBox(minimum=1, maximum=64, value=1)
        self.evaluate = QCheckBox("Evaluate when done (on the job's held-out cases)")
        self.out = QLineEdit(str(default_out or ""))
        self.report = QPlainTextEdit()
        self.report.setObjectName("jobDialogReport")
        self.report.setReadOnly(True)
        self.report.setMinimumHeight(110)
        self.progress = QProgressBar()
        self.progress.setObjectName("jobDialogProgress")
        self.progress.setRange(0, 1000)
        self.progress.setVisible(False)

        top = QFormLayout()
        top.addRow("Job", self.job_type)
        top.addRow("Preset", self.preset)
        self.preset_label = top.labelForField(self.preset)
        top.addRow("Dataset", self.source)
        top.addRow("", self._with_browse(self.data_path, folder=True))
        top.addRow("Phantom cases / region", self.phantom_cases)
        top.addRow("Phantom size (voxels)", self.phantom_size)
        self.decompose_page = QWidget()
        form = QFormLayout(self.decompose_page)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Teacher", self._with_browse(self.teacher, folder=True))
        form.addRow("Student size", self.student)
        form.addRow("Feature channels", self.feature_channels)
        form.addRow("Ranks", self.rank_mode)
        form.addRow("Rank (uniform / mean)", self.rank)
        form.addRow("Per-region ranks", self.per_region)
        form.addRow("λ (distillation)", self.lam)
        form.addRow("τ (temperature)", self.tau)
        form.addRow("Spacing (mm, cube)", self.spacing)
        form.addRow("", self.baseline)
        self.adapt_page = QWidget()
        form = QFormLayout(self.adapt_page)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Experts model", self._with_browse(self.experts, folder=True))
        form.addRow("Region", self.region)
        form.addRow("Rank", self.adapt_rank)
        form.addRow("", self.train_head)
        form.addRow("Teacher (optional)", self._with_browse(self.adapt_teacher, folder=True))
        form.addRow("λ (distillation)", self.adapt_lam)
        bottom = QFormLayout()
        bottom.addRow("Steps", self.steps)
        bottom.addRow("Batch size", self.batch)
        bottom.addRow("Patch (voxels, cube)", self.patch)
        bottom.addRow("Learning rate", self.lr)
        bottom.addRow("Device", self.device)
        bottom.addRow("Run", self.where)
        bottom.addRow("Processes", self.processes)
        bottom.addRow("", self.evaluate)
        bottom.addRow("Output folder", self._with_browse(self.out, folder=True))
        self.check_button = QPushButton("Check data")
        self.check_button.clicked.connect(self.check_data)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.start_button = self.buttons.addButton("Start", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.decompose_page)
        layout.addWidget(self.adapt_page)
        layout.addLayout(bottom)
        layout.addWidget(self.check_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.report)
        layout.addWidget(self.buttons)
        self.source.currentIndexChanged.connect(self._sync)
        self.rank_mode.currentIndexChanged.connect(self._sync)
        self.where.currentIndexChanged.connect(self._sync)
        self.job_type.currentIndexChanged.connect(self._on_job_type)
        self.experts.editingFinished.connect(self._read_experts)
        self.region.currentIndexChanged.connect(self._show_rank)
        self.preset.currentIndexChanged.connect(self._on_preset)
        for signal in self._preset_field_signals():
            signal.connect(self._edited)
        self._wanted_region = region
        self._read_experts()
        self.job_type.setCurrentIndex(max(0, self.job_type.findData(job_type)))
        self._on_job_type()

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
                if edit is self.experts:
                    self._read_experts()

        button.clicked.connect(browse)
        row.addWidget(button)
        return box

    @property
    def kind(self) -> str:
        return str(self.job_type.currentData())

    def set_job_type(self, job_type: str) -> None:
        self.job_type.setCurrentIndex(self.job_type.findData(job_type))

    def _on_job_type(self) -> None:
        kind = self.kind
        self.setWindowTitle(TITLES[kind])
        self.decompose_page.setVisible(kind == "decompose")
        self.adapt_page.setVisible(kind == "adapt")
        self.preset.setVisible(kind == "decompose")
        if self.preset_label is not None:
            self.preset_label.setVisible(kind == "decompose")
        if kind == "decompose" and self.preset.currentData() == "demo":
            self.apply_preset("demo")
            return
        self._applying = True
        try:
            self.steps.setValue(DEFAULT_STEPS[kind])
            self.lr.setValue(DEFAULT_LR[kind])
            if kind == "adapt" and self.experts_source is not None and self.experts_source.patch_size:
                self.patch.setValue(max(self.experts_source.patch_size))  # the patch the expert was trained with
            elif kind == "decompose":
                self.patch.setValue(DEFAULT_PATCH)
        finally:
            self._applying = False
        self._sync()

    # ---------------------------------------------------------------- presets

    def _preset_field_signals(self) -> list:
        """The change signals of every field a preset sets (a user edit turns the preset to "Custom")."""
        return [self.source.currentIndexChanged, self.phantom_cases.valueChanged, self.phantom_size.valueChanged,
                self.teacher.textChanged, self.student.currentIndexChanged, self.feature_channels.valueChanged,
                self.rank_mode.currentIndexChanged, self.rank.valueChanged, self.lam.valueChanged,
                self.tau.valueChanged, self.baseline.toggled, self.steps.valueChanged, self.batch.valueChanged,
                self.patch.valueChanged, self.spacing.valueChanged, self.lr.valueChanged,
                self.device.currentIndexChanged, self.where.currentIndexChanged, self.evaluate.toggled]

    def preset_values(self) -> dict[str, Any]:
        """The fields a preset sets, under DEMO_PRESET's keys ("teacher": "bundled" when it is the bundled one)."""
        teacher = self.teacher.text().strip()
        bundled = bundled_teacher()
        return {
            "dataset": self.source.currentData(), "phantom_cases": self.phantom_cases.value(),
            "phantom_size": self.phantom_size.value(),
            "teacher": "bundled" if bundled is not None and teacher == str(bundled) else teacher,
            "student": self.student.currentText(), "feature_channels": self.feature_channels.value(),
            "ranks": self.rank_mode.currentText(), "rank": self.rank.value(), "lam": self.lam.value(),
            "tau": self.tau.value(), "baseline": self.baseline.isChecked(), "steps": self.steps.value(),
            "batch_size": self.batch.value(), "patch": self.patch.value(), "spacing_mm": self.spacing.value(),
            "lr": self.lr.value(), "device": self.device.currentText(), "run": self.where.currentData(),
            "evaluate": self.evaluate.isChecked(),
        }

    def apply_preset(self, name: str = "demo") -> None:
        """Set the fields to a preset (only "demo" has values; "custom" keeps what is there)."""
        if name == "demo":
            p = DEMO_PRESET
            self._applying = True
            try:
                self.source.setCurrentIndex(self.source.findData(p["dataset"]))
                self.phantom_cases.setValue(p["phantom_cases"])
                self.phantom_size.setValue(p["phantom_size"])
                if p["teacher"] == "bundled":
                    self.teacher.setText(str(bundled_teacher() or ""))
                self.student.setCurrentText(p["student"])
                self.feature_channels.setValue(p["feature_channels"])
                self.rank_mode.setCurrentText(p["ranks"])
                self.rank.setValue(p["rank"])
                self.lam.setValue(p["lam"])
                self.tau.setValue(p["tau"])
                self.baseline.setChecked(p["baseline"])
                self.steps.setValue(p["steps"])
                self.batch.setValue(p["batch_size"])
                self.patch.setValue(p["patch"])
                self.spacing.setValue(p["spacing_mm"])
                self.lr.setValue(p["lr"])
                self.device.setCurrentText(p["device"])
                self.where.setCurrentIndex(self.where.findData(p["run"]))
                self.evaluate.setChecked(p["evaluate"])
            finally:
                self._applying = False
        self.preset.blockSignals(True)
        self.preset.setCurrentIndex(self.preset.findData(name))
        self.preset.blockSignals(False)
        self._sync()

    def _on_preset(self) -> None:
        self.apply_preset(str(self.preset.currentData()))

    def _edited(self, *_args) -> None:
        if not self._applying and self.kind == "decompose" and self.preset.currentData() != "custom":
            self.preset.blockSignals(True)
            self.preset.setCurrentIndex(self.preset.findData("custom"))
            self.preset.blockSignals(False)

    def _sync(self) -> None:
        phantoms = self.source.currentData() == "phantoms"
        self.data_path.setEnabled(not phantoms)
        self.phantom_cases.setEnabled(phantoms)
        self.phantom_size.setEnabled(phantoms)
        self.per_region.setEnabled(self.rank_mode.currentText() == "per region")
        self.processes.setEnabled(self.where.currentData() == "subprocess")

    # ---------------------------------------------------------------- the experts model (adapt)

    def _read_experts(self) -> None:
        """Read the experts model's card (JSON only, cheap): its regions fill the region list."""
        current = self.region.currentData() or self._wanted_region
        self.region.blockSignals(True)
        self.region.clear()
        path = self.experts.text().strip()
        try:
            self.experts_source = job_service.read_experts_source(path) if path else None
        except LorkdError as exc:
            self.experts_source = None
            self.adapt_rank.setText(f"Not usable: {exc}")
        if self.experts_source is not None:
            for r in self.experts_source.regions:
                self.region.addItem(r.replace("_", " ").title(), r)
            index = self.region.findData(current)
            self.region.setCurrentIndex(index if index >= 0 else 0)
            if self.kind == "adapt" and self.experts_source.patch_size:
                self.patch.setValue(max(self.experts_source.patch_size))
        elif not path:
            self.adapt_rank.setText("Choose an experts model (the output of a decomposition).")
        self.region.blockSignals(False)
        self._show_rank()

    def _show_rank(self) -> None:
        src, region = self.experts_source, self.region.currentData()
        if src is None or region is None:
            return
        self.adapt_rank.setText(f"{src.ranks.get(region, '?')}: the {region} expert keeps its rank "
                                f"(version {src.version} → {src.version + 1}); backbone and other experts stay frozen")

    # ---------------------------------------------------------------- config

    def config(self, data: str = "") -> JobConfig:
        """The config the fields describe (raises ConfigError for impossible values)."""
        common = dict(data=data or self.data_path.text().strip(), out=self.out.text().strip(),
                      steps=self.steps.value(), batch_size=self.batch.value(), patch_size=(self.patch.value(),) * 3,
                      lr=self.lr.value(), device=self.device.currentText())
        if self.kind == "adapt":
            src, region = self.experts_source, str(self.region.currentData() or "")
            extra: dict[str, Any] = {}
            if src is not None and src.spacing and len(src.spacing) == 3:
                extra["spacing"] = src.spacing  # keep the resolution the expert was trained at
            return AdaptConfig(**common, **extra, experts=self.experts.text().strip(), region=region,
                               regions=[region] if region else None, teacher=self.adapt_teacher.text().strip(),
                               lam=self.adapt_lam.value(), train_head=self.train_head.isChecked())
        mode = self.rank_mode.currentText()
        ranks: Any = self.rank.value() if mode == "uniform" else "proportional" if mode == "proportional" \
            else job_service.parse_ranks(self.per_region.text().strip())
        return DecomposeConfig(
            **common, spacing=(float(self.spacing.value()),) * 3, teacher=self.teacher.text().strip(),
            student=dict(STUDENTS[self.student.currentText()]),
            feature_channels=self.feature_channels.value(), ranks=ranks, rank=max(1, self.rank.value()),
            lam=self.lam.value(), tau=self.tau.value(), baseline=self.baseline.isChecked())

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
        if self.kind == "adapt" and not self.region.currentData():
            self.report.setPlainText("Choose an experts model and the region to adapt first.")
            return
        self._busy(True)
        self.report.setPlainText("Reading the dataset…")
        cases, size = self.phantom_cases.value(), self.phantom_size.value()
        regions = [self.region.currentData()] if self.kind == "adapt" else None

        def fail(exc: BaseException) -> None:
            self._busy(False)
            self.report.setPlainText(f"The dataset could not be read: {exc}")

        self.manager.worker.submit(
            "Reading the dataset",
            lambda ctx: job_service.prepare_data(source, path, out, phantom_cases=cases, phantom_size=size,
                                                 regions=regions, ctx=ctx),
            key="job-dialog", on_result=then, on_error=fail, on_progress=self._show_progress)

    def _show_progress(self, p: Progress) -> None:
        """A data-preparation report (phantom generation, dataset check) in the bar and the report text."""
        if not self.progress.isVisible():
            return  # the dialog has finished with this task
        self.progress.setRange(0, 1000)
        self.progress.setValue(int(1000 * p.step / p.total) if p.total else 0)
        self.report.setPlainText(f"Preparing the data: {p.message} ({p.step}/{p.total})" if p.total
                                 else f"Preparing the data: {p.message}")

    def _busy(self, busy: bool) -> None:
        self.check_button.setEnabled(not busy)
        self.start_button.setEnabled(not busy)
        self.progress.setVisible(busy)
        if busy:
            self.progress.setRange(0, 1000)
            self.progress.setValue(0)

    def _data_report(self, check: DataCheck) -> str:
        text = _data_text(check.counts, check.problems)
        if self.kind == "adapt":
            text += "\n" + _adapt_text(check, self.experts_source, str(self.region.currentData() or ""))
        return text

    def check_data(self) -> None:
        def show(check: DataCheck) -> None:
            self._busy(False)
            self.report.setPlainText(self._data_report(check))

        self._prepare(show)

    def start(self) -> None:
        if not self.out.text().strip():
            self.report.setPlainText("Choose an output folder.")
            return
        mode = self.where.currentData()
        world = self.processes.value() if mode == "subprocess" else 1

        def checked(check: DataCheck) -> None:
            try:
                cfg = self.config(check.manifest)
            except Exception as exc:  # noqa: BLE001 - a ConfigError to show, not to raise
                self._busy(False)
                self.report.setPlainText(f"Settings problem: {exc}")
                return

            def decided(pf: job_service.JobCheck) -> None:
                self._busy(False)
                too_big = memory_problem(pf.memory_bytes, cfg.device)
                if too_big:
                    pf.problems.append(too_big)
                self.report.setPlainText(self._data_report(check) + "\n" + _preflight_text(pf))
                if pf.problems:
                    return
                self.started = self.manager.start(cfg, mode=mode, processes=world,
                                                  evaluate=self.evaluate.isChecked())
                self.accept()

            self.report.setPlainText(self._data_report(check) + "\nChecking the job (settings, memory estimate)…")
            self.progress.setRange(0, 0)  # busy: the preflight builds the network once
            self.manager.worker.submit("Checking the job", lambda ctx: job_service.preflight(cfg, world=world),
                                       key="job-dialog", on_result=decided,
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


def _adapt_text(check: DataCheck, src: ExpertsSource | None, region: str) -> str:
    n = check.counts.get(region, 0)
    lines = [f"Cases for {region}: {n}" + ("" if n else " (nothing to adapt on)")]
    names = check.labels.get(region)
    if src is not None and names:
        same = names == src.labels.get(region)
        lines.append("Labels: the same as the expert's head" if same else
                     "Labels differ from the expert's head: " + ", ".join(names.values()) + " (the head is retrained)")
    return "\n".join(lines)


def _preflight_text(pf: job_service.JobCheck) -> str:
    lines = [f"Memory estimate: {pf.memory_bytes / 2**30:.2f} GiB" if pf.memory_bytes else
             "Memory estimate: not available for this job type"]
    lines += pf.notes
    if pf.problems:
        lines.append("Cannot start:")
        lines += [f"  • {p}" for p in pf.problems]
    else:
        lines.append("Preflight: no problems.")
    return "\n".join(lines)
