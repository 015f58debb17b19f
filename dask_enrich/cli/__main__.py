"""``python -m dask_enrich.cli``: the ``dask-enrich`` command."""
import sys

from . import main

sys.exit(main())
