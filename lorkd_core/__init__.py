"""LoRKD core: Qt-free backend (region experts, scans, data, decomposition engine).

This package must never import PySide6, vtk, pyvista, pyvistaqt or qasync
(tests/test_architecture.py enforces it).
"""

__version__ = "0.1.0"
