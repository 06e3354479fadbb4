"""Imported once by the server that forks the grading jobs, so that no job pays for these imports.

nbgrader imports much of what it needs lazily: the first autograde in a
process loads IPython and ipykernel (to find the python3 kernel spec),
SQLAlchemy's SQLite dialect, and the first feedback page loads jinja2,
mistune and pygments. Importing them here, before any job is forked, takes
about 0.7 s off every notebook. Nothing here starts a thread, a kernel or a
connection: the server stays safe to fork.
"""

import importlib

from . import worker  # noqa: F401 - nbgrader's apps, converters and preprocessors

_MODULES = [
    "sqlite3", "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.sqlite.pysqlite",
    "IPython", "ipykernel", "ipykernel.kernelspec", "jupyter_client.manager", "jupyter_client.asynchronous",
    "jupyter_client.provisioning.local_provisioner", "nbclient.client",
    "jinja2", "mistune", "pygments", "pygments.lexers", "pygments.lexers.python", "pygments.formatters.html",
    "nbconvert.exporters.html", "nbconvert.filters", "nbconvert.filters.markdown_mistune",
    "nbconvert.preprocessors.csshtmlheader", "bleach", "tinycss2", "defusedxml",
]

for _name in _MODULES:
    try:
        importlib.import_module(_name)
    except Exception:  # noqa: BLE001 - an optional speed-up only
        pass

try:
    from sqlalchemy.orm import configure_mappers

    configure_mappers()  # nbgrader's ORM classes, compiled once here instead of in every job
except Exception:  # noqa: BLE001
    pass
