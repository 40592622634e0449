"""Error classes of the segment index.

Every message names the file (or folder) involved and says what is wrong with it, so a
user can act on a single line of output.
"""

from __future__ import annotations

from hsg_files import FolderBusyError


class IndexFormatError(ValueError):
    """An index folder is missing, truncated, corrupt, or of a format this code does not read."""


class CheckpointMismatchError(IndexFormatError):
    """The index (or a pending build) was made with another model checkpoint than the one given."""


class DataRootMismatchError(IndexFormatError):
    """The index was built over another data folder than the one it is opened for."""


class InvalidPredictionError(ValueError):
    """A prediction given to the builder breaks the `Prediction` contract (shapes, nesting...)."""


class IndexBusyError(FolderBusyError):
    """Another build, update or merge holds the index folder (an OSError: the folder is busy)."""
