"""Errors of the churn model and the experience index: each says what is wrong and what to do about it."""

from __future__ import annotations

from etl.errors import OpencemError


class ModelError(OpencemError):
    """Training cannot go on: no labelled rows, a single class, an unreadable option (exit code 1)."""


class LeakError(ModelError):
    """A column that is known only after the snapshot date (an outcome) was offered as a feature."""


class RegistryError(ModelError):
    """A model artifact was not written by this system, was altered, or needs another scikit-learn."""
