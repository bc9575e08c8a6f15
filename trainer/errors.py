"""Every error scaletune shows a user, one class per kind.

The command line prints any ``ScaletuneError`` as its message alone (no traceback) and exits with
2: the input cannot run as it is, and nothing was written. The kinds say whose move it is:

    ConfigError   a study or training file that does not validate: fix the file
    SetupError    a valid config that cannot run as asked (a checkpoint of another config, a
                  batch that does not split over the processes): change the command or the run
    DataError     the data cannot be read or is too small: fix the data or data.path
    StorageError  the study's storage cannot be opened or a write to it failed (disk full,
                  database lost): the storage keeps everything written before; resume later

They live in trainer/ because it is the bottom layer: search/ and the trainer share them.
"""

from __future__ import annotations

import errno

__all__ = ["ConfigError", "DataError", "ScaletuneError", "SetupError", "StorageError",
           "StudyStateError"]
"""The kinds a user catches; scaletune.search and scaletune.trainer export them as their own."""

DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG)
"""OSErrors that mean the disk, not the program: full, over quota, read-only, failing. A write
into a file already open raises them without a file name (``naming``)."""


def naming(e: OSError, path: object) -> OSError:
    """``e``, or where it names no file (a write into a file already open, on a full disk) the
    same error naming ``path``, so that a message can say where."""
    return e if e.filename is not None else OSError(e.errno, e.strerror, str(path))


class ScaletuneError(Exception):
    """Base of the errors above."""


class _WithErrors(ScaletuneError):
    """An error of ``source`` with one line per problem in ``errors``."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: {len(errors)} error(s)\n" + "\n".join(f"  {e}" for e in errors))

    def __reduce__(self) -> tuple:
        # Rebuilt from its two arguments (the default would pass the message alone, and
        # unpickling would fail): the error crosses process pools and Ray tasks intact.
        return type(self), (self.source, self.errors)


class ConfigError(_WithErrors, ValueError):
    """A configuration file that does not validate; ``errors`` lists every problem found."""


class StudyStateError(ConfigError):
    """A valid study file whose study cannot give what was asked: no complete trial to show or
    export. Said as ``FILE: what``, not as errors in the file."""


class SetupError(ScaletuneError, ValueError):
    """A valid config that cannot run as asked: a checkpoint of another config or other data to
    resume, a vocabulary smaller than the tokenizer's, a batch that does not split over the
    processes. ``scaletune train`` prints it and exits with 2, as for a config that does not
    validate."""


class DataError(ScaletuneError, ValueError):
    """The data cannot be read or tokenized, or a split is shorter than one window."""


class StorageError(_WithErrors):
    """The study's storage failed: it could not be opened, or a write failed during a study
    (disk full, database lost). The storage holds everything written before the failure; running
    trials were stopped and run again on resume. ``errors`` holds the lines to show."""


def first_line(e: BaseException) -> str:
    """The first line of an error's message (a driver's or a library's), or its type's name when
    it has none: what a one-line error quotes."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
