"""Values a task leaves on its worker for later tasks, kept on the worker's disk, not in its memory.

A scan task's rows wait on their worker until every piece is scanned and the plan is made; held
in memory, a worker's footprint grows with the track (~10 MB per 5M-row piece). :class:`Parked`
writes the value to a file of the worker's local directory (``Worker.local_directory``, removed
with the worker) and reads it back on :meth:`Parked.get`. Dask still owns the object: if a task
on another worker needs it, Dask pickles it and the pickle carries the file's bytes (unpickled,
they go to a file of that worker's directory); if its worker is lost, Dask recomputes the task
that made it; when Dask releases it, its file is deleted.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import uuid
from typing import Generic, TypeVar

from .writer import os_failure

T = TypeVar("T")

#: The subdirectory of the worker's local directory that holds the parked files.
PARKED_DIR = "dask-enrich-parked"


def parking_directory() -> str:
    """This worker's directory for parked values (the system's temporary directory outside a
    worker, as in a test or a synchronous run)."""
    try:
        from distributed import get_worker

        base = get_worker().local_directory
    except (ImportError, ValueError):
        base = tempfile.gettempdir()
    return os.path.join(base, PARKED_DIR)


class Parked(Generic[T]):
    """A picklable value kept in a file of its worker's local directory (see the module docs)."""

    __slots__ = ("path", "nbytes", "__weakref__")

    def __init__(self, value: T) -> None:
        self._write(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def _write(self, data: bytes) -> None:
        directory = parking_directory()
        path = os.path.join(directory, f"{uuid.uuid4().hex}.pkl")
        try:
            os.makedirs(directory, exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        except OSError as exc:
            try:
                os.unlink(path)
            except OSError:
                pass
            raise os_failure(exc, path, "cannot keep the scanned rows on the worker's disk at") from exc
        self.path = path
        self.nbytes = len(data)

    def _read(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def get(self) -> T:
        """The value, read from its file."""
        return pickle.loads(self._read())

    def __reduce__(self) -> tuple:
        return (_unpickled, (self._read(),))

    def __del__(self) -> None:
        path = getattr(self, "path", None)
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass


def _unpickled(data: bytes) -> Parked:
    """A :class:`Parked` moved to this process: its bytes in a file of this worker's directory."""
    parked = Parked.__new__(Parked)
    parked._write(data)
    return parked


def _register_sizes() -> None:
    """Dask's ``sizeof`` of a parked value: what it holds in memory (its path), not its file, so a
    worker's memory accounting does not count what is on disk."""
    from dask.sizeof import sizeof

    @sizeof.register(Parked)
    def _parked_size(parked: Parked) -> int:
        return 64 + len(parked.path)


_register_sizes()
