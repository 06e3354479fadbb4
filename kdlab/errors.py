"""Errors that kdlab reports to people as one line, without a traceback."""


class KdlabError(Exception):
    """A problem the user can fix (missing or corrupt data, bad arguments).

    The ``kdlab`` command prints these as ``kdlab: error: <message>`` and exits
    non-zero; in a notebook they read as a plain sentence.
    """


class DataError(KdlabError):
    """Data files are missing, truncated or corrupt."""
