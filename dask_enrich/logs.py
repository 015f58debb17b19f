"""Python ``logging`` for dask-enrich: the ``dask_enrich`` logger, the command line's levels, and
the warnings of the LocalCluster's workers (memory use, pausing) brought to it once each.

Library code logs to ``dask_enrich`` (``logging.getLogger("dask_enrich")`` or a child) and never
configures handlers; :func:`configure` does that for the command line (``--log-level``, ``-v``,
``--quiet``). A LocalCluster is started with distributed's own log output silenced (its
start-up and shuffle chatter), so :func:`surface_worker_warnings` forwards the records of
``distributed.worker.memory`` and ``distributed.spill`` from the workers
(``Client.forward_logging``) and logs each kind of message once per run as a warning of
``dask_enrich.worker``.
"""
from __future__ import annotations

import logging
import re
import sys
import time
from typing import Callable, TextIO

from .options import LOG_LEVELS

LOGGER = logging.getLogger("dask_enrich")
#: Levels of ``--log-level``; ``-v`` is debug, ``--quiet`` warning, the default info.
LEVELS = {name: logging.getLevelName(name.upper()) for name in LOG_LEVELS}
#: Worker loggers whose warnings reach the user (memory use high, pausing, resuming; spilling to
#: disk failed or the spill directory full).
WORKER_WARNING_LOGGERS = ("distributed.worker.memory", "distributed.spill")
_HANDLER_NAME = "dask-enrich-cli"


class _CliFormatter(logging.Formatter):
    """Info lines as they are; warnings and errors with their level, as ``warning: ...``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def configure(level: int | str = logging.INFO, stream: TextIO | None = None) -> logging.Logger:
    """Send the ``dask_enrich`` logger's records of ``level`` and above to ``stream`` (stderr),
    replacing an earlier :func:`configure`; returns the logger."""
    if isinstance(level, str):
        level = LEVELS[level.lower()]
    for handler in [h for h in LOGGER.handlers if h.get_name() == _HANDLER_NAME]:
        LOGGER.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(_CliFormatter("%(message)s"))
    LOGGER.addHandler(handler)
    LOGGER.setLevel(level)
    return LOGGER


def _kind(message: str) -> str:
    """A message without its numbers and sizes: "Worker is at #% memory usage. Pausing worker."."""
    head = message.split(" -- ", 1)[0].split("Process memory:", 1)[0]
    return re.sub(r"\d+(\.\d+)?", "#", head).strip()


class _OncePerKind(logging.Handler):
    """Client side: a forwarded worker warning to ``dask_enrich.worker``, once per kind."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        kind = _kind(record.getMessage())
        if kind in self.seen:
            return
        self.seen.add(kind)
        advice = "" if kind.startswith("Worker is at #% memory usage. Resuming") else (
            "; lower --partition-rows or raise --memory-limit if it persists")
        LOGGER.getChild("worker").warning("worker %s: %s (shown once%s)",
                                          getattr(record, "worker", "?"), record.getMessage(), advice)


_once = _OncePerKind()


def surface_worker_warnings(client) -> None:
    """Forward the workers' memory warnings of ``client``'s cluster to ``dask_enrich.worker``,
    each kind once (a fresh count per call)."""
    _once.seen.clear()
    for name in WORKER_WARNING_LOGGERS:
        logger = logging.getLogger(name)
        if _once not in logger.handlers:
            logger.addHandler(_once)
        client.forward_logging(name, level=logging.WARNING)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def rate_and_eta(done: int, total: int, elapsed: float) -> str:
    """``, 0.50/s, ETA 14s``: the rate so far and the time left at that rate (at the end, the time
    taken; nothing before the first item is done)."""
    if done <= 0 or elapsed <= 0:
        return ""
    rate = done / elapsed
    text = f", {rate:.2f}/s" if rate < 10 else f", {rate:,.0f}/s"
    return text + (f", ETA {_duration((total - done) / rate)}" if done < total
                   else f", {_duration(elapsed)}")


def progress_printer(stream, unit: str = "partitions",
                      clock: Callable[[], float] = time.monotonic) -> Callable[[int, int], None]:
    """A progress callback ``show(done, total)``: a bar with rate and ETA on a terminal, a line
    per tenth otherwise (``partitions 3/10, 0.50/s, ETA 14s``)."""
    tty = stream.isatty()
    state = {"last": -1, "start": None}

    def show(done: int, total: int) -> None:
        if state["start"] is None:
            state["start"] = clock()
        rate = rate_and_eta(done, total, clock() - state["start"])
        if tty:
            width = 30
            filled = int(width * done / max(total, 1))
            stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {unit}{rate}   ")
            if done == total:
                stream.write("\n")
            stream.flush()
        else:
            tenth = int(10 * done / max(total, 1))
            if tenth != state["last"] or done == total:
                state["last"] = tenth
                stream.write(f"{unit} {done}/{total}{rate}\n")
                stream.flush()

    return show
