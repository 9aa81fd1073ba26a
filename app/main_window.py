"""The main window: viewer in the middle, case panels left, results right, progress in the status bar."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QStyle,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import dialogs
from .jobs.wiring import attach_jobs
from .panels.compare_panel import ComparePanel
from .panels.display_panel import DisplayPanel
from .panels.expert_panel import ExpertPanel
from .panels.job_panel import JobPanel
from .panels.outputs_panel import OutputsPanel
from .panels.region_panel import RegionPanel
from .panels.viewer_link import ViewerLink
from .screenshot import save_window_png
from .services.settings import DEVICES
from .services.types import ModelProblem
from .session import Session
from .viewer import ViewerWidget

SCAN_FILTER = "Scans (*.nii.gz *.nii *.nrrd *.mha *.mhd *.dcm *.png *.jpg);;All files (*)"


class MainWindow(QMainWindow):
    def __init__(self, session: Session, *, restore_layout: bool = True) -> None:
        super().__init__()
        self.session = session
        self.state = session.state
        self.setObjectName("lorkdMainWindow")
        self.setWindowTitle("LoRKD Studio")
        self.setAcceptDrops(True)
        self.show_errors_in_dialogs = True
        self.persist_layout = restore_layout
        self.confirm_quit_with_jobs = False  # lorkd-studio turns it on; tests and --screenshot runs do not ask
        self._quit_confirmed = False
        self._quit_box = None
        self.viewer = ViewerWidget(self)
        # The viewer is shown only once it has a volume: its 3D view must not start on an empty scene
        # (under Xvfb/Mesa that crashes Qt's compositor), and an empty state with actions reads better.
        self.welcome = self._welcome_page()
        self.central = QStackedWidget()
        self.central.addWidget(self.welcome)
        self.central.addWidget(self.viewer)
        self.setCentralWidget(self.central)
        self._build_panels()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        self.jobs = attach_jobs(self)  # Jobs menu + dock (app/jobs)
        session.failed.connect(self._on_failed)
        session.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        session.loading.connect(lambda path: self.welcome_status.setText(f"Opening {Path(path).name}…"))
        session.no_model.connect(self._on_no_model)
        session.demo_unavailable.connect(lambda _why: self.welcome_status.setText(
            "No demo case is installed: open one of your scans to start."))
        self.state.scan_changed.connect(self._on_scan_changed)
        self.state.model_problems_changed.connect(self._on_model_problems)
        self.state.result_changed.connect(lambda _r: self._update_actions())
        self.state.model_changed.connect(lambda _m: self._update_actions())
        self.resize(1560, 940)
        if restore_layout:
            self._restore_layout()
        self._update_actions()

    # ---------------------------------------------------------------- construction

    def _build_panels(self) -> None:
        backend, state = self.session.backend, self.state
        self.region_panel = RegionPanel(state, backend.regions())
        self.expert_panel = ExpertPanel(state, self.session.run_model)
        self.display_panel = DisplayPanel(self.viewer)
        self.outputs_panel = OutputsPanel(state, backend.colors_for, backend.structure_display_name)
        self.compare_panel = ComparePanel(state, self.session.compare_with, backend.structure_display_name)
        self.viewer_link = ViewerLink(state, backend, self.viewer, self.display_panel, self)
        self.outputs_panel.structure_visibility_changed.connect(self.viewer_link.set_structure_visible)
        self.outputs_panel.surface_visibility_changed.connect(self.viewer_link.set_surface_visible)
        self.outputs_panel.saliency_toggled.connect(self.viewer_link.set_saliency)
        self.compare_panel.difference_toggled.connect(self.viewer_link.set_difference)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(6, 6, 6, 6)
        left_layout.addWidget(self.region_panel)
        left_layout.addWidget(self.expert_panel)
        left_layout.addWidget(self.display_panel)
        left_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(left)
        self.case_dock = self._dock("Case", "caseDock", scroll, Qt.DockWidgetArea.LeftDockWidgetArea, 330)

        self.results_tabs = QTabWidget()
        self.results_tabs.addTab(self.outputs_panel, "Structures")
        self.results_tabs.addTab(self.compare_panel, "Compare")
        self.results_dock = self._dock("Results", "resultsDock", self.results_tabs,
                                       Qt.DockWidgetArea.RightDockWidgetArea, 440)

    def _welcome_page(self) -> QWidget:
        page = QWidget()
        page.setObjectName("welcomePage")
        layout = QVBoxLayout(page)
        layout.addStretch(2)
        title = QLabel("LoRKD Studio")
        title.setObjectName("welcomeTitle")
        hint = QLabel("Open a CT or MR scan, or drop a file or DICOM folder here.\n"
                      "Pick the body region, and its low-rank expert segments the scan on your machine.")
        hint.setObjectName("hint")
        self.welcome_status = QLabel("")
        self.welcome_status.setObjectName("muted")
        for label in (title, hint, self.welcome_status):
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            layout.addWidget(label)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for text, slot, primary in (("Open scan…", self.open_file_dialog, True),
                                    ("Open DICOM folder…", self.open_dicom_dialog, False),
                                    ("Open demo case", self.session.open_demo, False)):
            button = QPushButton(text)
            if primary:
                button.setObjectName("primaryButton")
            button.clicked.connect(lambda _c=False, f=slot: f())
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout.addSpacing(12)
        layout.addLayout(buttons)
        layout.addStretch(3)
        return page

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea, width: int) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        widget.setMinimumWidth(width - 20)
        self.addDockWidget(area, dock)
        self.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
        return dock

    def _action(self, text: str, slot, shortcut: QKeySequence | str | None = None, tip: str = "",
                icon: QStyle.StandardPixmap | None = None) -> QAction:
        action = QAction(text, self)
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        action.triggered.connect(lambda _checked=False: slot())
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        return action

    def _build_actions(self) -> None:
        self.open_action = self._action("Open scan…", self.open_file_dialog, QKeySequence.StandardKey.Open,
                                        "Open a NIfTI, NRRD, MHA or DICOM file",
                                        QStyle.StandardPixmap.SP_DialogOpenButton)
        self.open_dicom_action = self._action("Open DICOM folder…", self.open_dicom_dialog, "Ctrl+Shift+O",
                                              "Open the DICOM series in a folder",
                                              QStyle.StandardPixmap.SP_DirOpenIcon)
        self.demo_action = self._action("Open demo case", self.session.open_demo, tip="The bundled demo scan")
        self.save_labels_action = self._action("Save label map…", self.save_label_map, QKeySequence.StandardKey.Save,
                                               "NIfTI on the scan's grid plus its label JSON",
                                               QStyle.StandardPixmap.SP_DialogSaveButton)
        self.save_seg_action = self._action("Save DICOM SEG…", self.save_dicom_seg,
                                            tip="DICOM segmentation object referencing the source series")
        self.save_report_action = self._action("Save report…", self.save_report, "Ctrl+R",
                                               "Structures, volumes, model, region and geometry as CSV or JSON",
                                               QStyle.StandardPixmap.SP_FileDialogDetailedView)
        self.screenshot_action = self._action("Save screenshot…", self.save_screenshot, "Ctrl+Shift+S",
                                              "PNG of the whole window", QStyle.StandardPixmap.SP_DesktopIcon)
        self.quit_action = self._action("Quit", self.close, QKeySequence.StandardKey.Quit)
        self.run_action = self._action("Run expert", self.session.run_model, "Ctrl+Return",
                                       "Run the selected expert on the scan", QStyle.StandardPixmap.SP_MediaPlay)
        self.cancel_action = self._action("Cancel task", self.session.cancel_current, "Esc",
                                          "Stop the running task after its current step",
                                          QStyle.StandardPixmap.SP_BrowserStop)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.open_action, self.open_dicom_action, self.demo_action])
        self.recent_menu = QMenu("Open recent", self)
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addMenu(self.recent_menu)
        file_menu.addSeparator()
        file_menu.addActions([self.save_labels_action, self.save_seg_action, self.save_report_action,
                              self.screenshot_action])
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

        analysis = bar.addMenu("&Analysis")
        analysis.addActions([self.run_action, self.cancel_action])

        view = bar.addMenu("&View")
        view.addActions([self.case_dock.toggleViewAction(), self.results_dock.toggleViewAction()])

        settings = bar.addMenu("&Settings")
        device_menu = settings.addMenu("Device")
        self.device_group = QActionGroup(self)
        for name in DEVICES:
            action = QAction({"auto": "Automatic", "cpu": "CPU", "cuda": "CUDA GPU"}[name], self, checkable=True)
            action.setData(name)
            action.setChecked(name == self.session.settings.device)
            action.triggered.connect(lambda _c=False, n=name: self.session.set_device(n))
            self.device_group.addAction(action)
            device_menu.addAction(action)
        settings.addAction(self._action("Add model folder…", self.add_model_folder,
                                        tip="Offer the models in a folder (e.g. a decomposition output)"))
        settings.addAction(self._action("Forget model folders", self.clear_model_folders))

        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self._action("About LoRKD Studio", self._about))

    def _build_toolbar(self) -> None:
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.setIconSize(QSize(16, 16))
        tb.addActions([self.open_action, self.open_dicom_action])
        tb.addSeparator()
        tb.addActions([self.run_action])
        tb.addSeparator()
        tb.addActions([self.save_labels_action, self.save_report_action, self.screenshot_action])

    def _build_status_bar(self) -> None:
        self.cursor_label = QLabel("")
        self.cursor_label.setObjectName("cursorLabel")
        self.cursor_label.setMinimumWidth(340)
        self.statusBar().addWidget(self.cursor_label)
        self.job_panel = JobPanel(self.session.worker)
        self.statusBar().addPermanentWidget(self.job_panel)
        self.scan_label = QLabel("")
        self.scan_label.setObjectName("muted")
        self.statusBar().addPermanentWidget(self.scan_label)
        # Model folders whose card cannot be read: left out of the expert list, but never silently.
        self.model_problems_button = QToolButton()
        self.model_problems_button.setObjectName("modelProblemsButton")
        self.model_problems_button.setAutoRaise(True)
        self.model_problems_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))
        self.model_problems_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.model_problems_button.clicked.connect(self.show_model_problems)
        self.model_problems_button.hide()
        self.statusBar().addPermanentWidget(self.model_problems_button)
        self.viewer_link.cursor_text.connect(self.cursor_label.setText)
        self.statusBar().showMessage("Open a scan: File > Open, Open DICOM folder, or drop it on the window")

    # ---------------------------------------------------------------- opening

    def open_path(self, path: str | Path) -> None:
        self.session.open_path(path)

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open scan", str(self.session.settings.last_dir), SCAN_FILTER)
        if path:
            self.open_path(path)

    def open_dicom_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open DICOM folder", str(self.session.settings.last_dir))
        if folder:
            self.open_path(folder)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.session.settings.recent_files
        for path in recent:
            action = self.recent_menu.addAction(path.name + ("/" if path.is_dir() else ""))
            action.setToolTip(str(path))
            action.setStatusTip(str(path))
            action.triggered.connect(lambda _c=False, p=path: self.open_path(p))
        if not recent:
            self.recent_menu.addAction("No recent files").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list").triggered.connect(self.session.settings.clear_recent)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_path(paths[0])

    # ---------------------------------------------------------------- saving

    def _ask_save(self, title: str, suggested: str, filters: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self, title, str(self.session.settings.last_dir / suggested), filters)
        return path or None

    def _stem(self) -> str:
        scan, model = self.state.scan, self.state.model
        base = scan.source.name.split(".")[0] if scan is not None else "scan"
        return f"{base}_{model.region}" if model is not None else base

    def save_label_map(self, path: str | Path | None = None) -> None:
        path = path or self._ask_save("Save label map", f"{self._stem()}_seg.nii.gz", "NIfTI (*.nii.gz *.nii)")
        if path:
            self.session.save_label_map(path)

    def save_dicom_seg(self, path: str | Path | None = None) -> None:
        path = path or self._ask_save("Save DICOM SEG", f"{self._stem()}_seg.dcm", "DICOM SEG (*.dcm)")
        if path:
            self.session.save_label_map(path, dicom_seg=True)

    def save_report(self, path: str | Path | None = None) -> None:
        path = path or self._ask_save("Save report", f"{self._stem()}_report.csv", "CSV (*.csv);;JSON (*.json)")
        if path:
            self.session.save_report(path)

    def save_screenshot(self, path: str | Path | None = None) -> None:
        path = path or self._ask_save("Save screenshot", f"{self._stem()}.png", "PNG image (*.png)")
        if path:
            try:
                save_window_png(self, path)
            except OSError as exc:
                self._on_failed("Could not save the screenshot", str(path), str(exc))
            else:
                self.statusBar().showMessage(f"Saved {path}", 8000)

    # ---------------------------------------------------------------- settings

    def add_model_folder(self, folder: str | Path | None = None) -> None:
        folder = folder or QFileDialog.getExistingDirectory(self, "Add model folder", str(Path.home()))
        if folder:
            settings = self.session.settings
            settings.model_dirs = [*settings.model_dirs, Path(folder)]
            self.session.refresh_models()

    def clear_model_folders(self) -> None:
        self.session.settings.model_dirs = []
        self.session.refresh_models()

    def _restore_layout(self) -> None:
        settings = self.session.settings
        geometry, state = settings.window_geometry(), settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    # ---------------------------------------------------------------- reactions

    def _on_scan_changed(self, loaded) -> None:
        if loaded is not None:
            self.setWindowTitle(f"LoRKD Studio — {loaded.source.name}")
            self.central.setCurrentWidget(self.viewer)
            size = "×".join(str(n) for n in loaded.array.shape[::-1])
            spacing = "×".join(f"{s:.3g}" for s in loaded.spacing)
            self.scan_label.setText(f"{loaded.modality}  {size}  {spacing} mm  ")
        self._update_actions()

    def _update_actions(self) -> None:
        from .services.types import SegmentationResult

        scan, result = self.state.scan, self.state.result
        seg = isinstance(result, SegmentationResult)
        self.save_labels_action.setEnabled(seg)
        self.save_seg_action.setEnabled(seg and scan is not None and scan.is_dicom)
        self.save_report_action.setEnabled(result is not None)
        self.run_action.setEnabled(scan is not None and self.state.model is not None)

    def _on_model_problems(self, problems: list[ModelProblem]) -> None:
        button = self.model_problems_button
        button.setVisible(bool(problems))
        if not problems:
            return
        what = "1 model folder" if len(problems) == 1 else f"{len(problems)} model folders"
        button.setText(f"{what} skipped")
        button.setToolTip("\n".join(f"{p.folder}: {p.problem}" for p in problems))
        first = problems[0]
        self.statusBar().showMessage(f"{what} not offered (broken model card): {first.folder}: {first.problem}",
                                     10000)

    def show_model_problems(self) -> None:
        problems = self.state.model_problems
        if problems:
            dialogs.show_info(self, "Model folders not offered",
                              "These model folders were skipped because their model card cannot be read:\n\n"
                              + "\n\n".join(f"{p.folder}\n{p.problem}" for p in problems))

    def _on_no_model(self, region: str) -> None:
        name = self.session.backend.region_display_name(region)
        self.statusBar().showMessage(f"No expert available for {name}: add a model folder in Settings", 10000)

    def _on_failed(self, title: str, path: str, problem: str) -> None:
        self.statusBar().showMessage(f"{title}: {problem}", 10000)
        if self.show_errors_in_dialogs:
            dialogs.show_error(self, title, path, problem)

    def _about(self) -> None:
        from . import __version__

        dialogs.show_info(self, "About LoRKD Studio",
                          f"LoRKD Studio {__version__}\nLow-rank knowledge decomposition: region experts from a "
                          "medical foundation model.")

    def closeEvent(self, event: QCloseEvent) -> None:
        live = self.jobs.live_jobs()
        if live and self.confirm_quit_with_jobs and not self._quit_confirmed:
            event.ignore()
            if self._quit_box is None or not self._quit_box.isVisible():
                self._quit_box = dialogs.ask_quit_with_jobs(self, [rec.name for rec in live], self._quit_anyway)
                self._quit_box.destroyed.connect(lambda: setattr(self, "_quit_box", None))
            return
        if self.persist_layout:
            self.session.settings.save_window(self.saveGeometry(), self.saveState())
        self.jobs.shutdown()
        self.session.shutdown()
        self.viewer.close()  # finalises VTK now; a child widget gets no closeEvent of its own
        super().closeEvent(event)

    def _quit_anyway(self) -> None:
        self._quit_confirmed = True
        self.close()

    def start(self, scan: str | Path | None = None) -> None:
        """What happens at launch: list the models, then open ``scan``, the demo (first run) or nothing."""
        self.session.refresh_models()
        settings = self.session.settings
        if scan is not None:
            QTimer.singleShot(0, lambda: self.open_path(scan))
        elif settings.first_run or not settings.recent_files:
            settings.mark_demo_shown()
            QTimer.singleShot(0, self.session.open_demo)
