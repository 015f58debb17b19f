"""Former home of the engine's input checks and failure diagnoses, now split into
``quarantine.py`` (per-bin row checks, rejected files), ``inputs.py`` (schema checks, read
options), ``diagnose.py`` (killed workers, lost scheduler, memory limits) and ``summary.py``
(outputs visible, warnings). These names stay importable from here for callers outside the
engine (``cluster.py``, the benchmarks)."""
from __future__ import annotations

from .diagnose import check_memory_limit, check_workers_running  # noqa: F401
from .inputs import absolute, check_source, read_options  # noqa: F401
from .quarantine import (  # noqa: F401
                         FILE_COLUMN,
                         ON_BAD_ROWS,
                         REJECTED_DIR,
                         TRACK_REJECTED_DIR,
                         BinChecks,
                         bin_checks,
                         check_bin,
                         write_rejected,
)
