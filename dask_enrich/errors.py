"""Exceptions, each with the process exit code the CLI uses for it."""
from __future__ import annotations


class EnrichError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1


class InputError(EnrichError):
    """Bad input data: a positions/track/annotation/genome file, or its content."""

    exit_code = 2


class ManifestError(InputError):
    """A feature manifest that is empty, has duplicates or names unknown features."""


class ConfigError(EnrichError):
    """A bad setting or a bad combination of options."""

    exit_code = 3


class MissingFeatureError(ConfigError):
    """Manifest features that cannot be computed from what the run was given (policy ``error``)."""


class PluginError(EnrichError):
    """A feature plugin that raised, or returned the wrong length or dtype."""

    exit_code = 5


class RunFailure(EnrichError):
    """A failure while running (worker lost for good, out of memory, write failure)."""

    exit_code = 4


class SchedulerLost(RunFailure):
    """The client lost its Dask scheduler mid-run (killed, its machine lost): rerun with --resume."""


class AllRowsRejected(InputError):
    """Every row failed the input checks (quarantined): nothing was enriched. The rejected rows
    stay in OUT for inspection."""
