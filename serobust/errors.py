"""The errors a user can fix, with one base class so the CLI can print them as one line.

Every error serobust raises for a bad input derives from :class:`SerobustError` and keeps its usual
built-in base too (``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` in user code
still works. ``where`` names the config key (``attacks.white_box[1].steps``) or the path at fault; the
command line prints ``serobust: error: <where>: <message>`` and exits with status 2.
"""

from __future__ import annotations

__all__ = ["SerobustError", "InputError", "DeviceError", "DatasetNotFoundError", "DatasetFormatError"]


class SerobustError(Exception):
    """Base class of the errors a user can fix; the message says what is wrong and how to fix it.

    Args:
        message: what is wrong and how to fix it.
        where: the config key or the path at fault, when there is one.
    """

    def __init__(self, message: str = "", *args: object, where: str | None = None) -> None:
        super().__init__(message, *args)
        self.where = where

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InputError(SerobustError, ValueError):
    """Images or labels handed to serobust are malformed: wrong shape or dtype, outside [0, 1], NaN."""


class DeviceError(SerobustError, ValueError):
    """A device was asked for that this machine does not have (``cuda`` without a GPU)."""


class DatasetNotFoundError(SerobustError, FileNotFoundError):
    """A dataset's files are not on disk and could not be downloaded; the message names folder, files, fix."""


class DatasetFormatError(SerobustError, ValueError):
    """A dataset file exists but is malformed (bad magic number, wrong shape, truncated, undecodable)."""
