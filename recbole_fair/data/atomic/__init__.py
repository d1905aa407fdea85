r"""Checks of one RecBole atomic file, before RecBole reads it (the dataset-level checks and
what is checked: :mod:`recbole_fair.data.validate`):

* :mod:`~recbole_fair.data.atomic.base`: the check framework (requirements, what a check
  learned, where a problem is and its :class:`~recbole_fair.errors.DataError`, reading the text);
* :mod:`~recbole_fair.data.atomic.header`: the header and the required columns;
* :mod:`~recbole_fair.data.atomic.rows`: the rows and values, and
  :func:`~recbole_fair.data.atomic.rows.validate_atomic_file` running every check of one file.
"""

from recbole_fair.data.atomic.base import (
    FEATURE_TYPES,
    NA_VALUES,
    AtomicFile,
    Requirement,
    Where,
)
from recbole_fair.data.atomic.header import parse_header, read_header
from recbole_fair.data.atomic.rows import split_quoted, validate_atomic_file
