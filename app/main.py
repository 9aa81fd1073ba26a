"""Entry point of ``lorkd-studio``."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from PySide6.QtWidgets import QApplication, QLabel

    app = QApplication.instance() or QApplication(list(sys.argv if argv is None else ["lorkd-studio", *argv]))
    label = QLabel("LoRKD Studio")
    label.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
