"""Feature registry and pure numpy kernels, one module per feature group.

Importing the package declares the built-in features in the spec's order: the score-derived ones
(:mod:`.scores`), then the sequence features and k-mers (:mod:`.sequence`), then the genomic ones
(:mod:`.genomic`).
"""
from . import scores  # noqa: F401,I001  (the import order is the declaration order)
from . import sequence  # noqa: F401
from . import genomic  # noqa: F401
