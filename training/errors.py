"""Errors a user of the training CLI can cause and fix: the CLI prints their message, no traceback.

TrainingError
├── DataError      the series or CSV cannot be used (missing file, bad column, too few rows, gaps)
└── ExportError    the exported model failed its parity or MC-dropout checks and was not written
"""


class TrainingError(Exception):
    """Base class: a problem the user can fix, reported as one clear message."""


class DataError(TrainingError):
    """The input data cannot be used as asked."""


class ExportError(TrainingError):
    """The exported ONNX model failed a check; nothing was written."""
