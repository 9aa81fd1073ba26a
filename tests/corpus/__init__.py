"""A generated corpus of bad and unusual inputs for the robustness tests (see docs/robustness.md).

Test tooling only (not shipped): the tests import it as ``corpus`` (pytest puts ``tests/`` on sys.path).
"""

from .generate import CorpusEntry, build_corpus, permissions_enforced

__all__ = ["CorpusEntry", "build_corpus", "permissions_enforced"]
