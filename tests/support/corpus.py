"""Where the shared test corpora are: ../shared/corpus beside the checkout (as CI lays it
out), or TEST_CORPUS_DIR."""

from __future__ import annotations

import os
from pathlib import Path

CORPUS = Path(os.environ.get(
    "TEST_CORPUS_DIR", Path(__file__).resolve().parents[3] / "shared" / "corpus"))
