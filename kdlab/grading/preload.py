"""Imported once by the server that forks the grading jobs, so that no job pays for this work again.

nbgrader imports much of what it needs lazily: the first autograde in a
process loads IPython and ipykernel (to find the python3 kernel spec),
SQLAlchemy's SQLite dialect, and the first feedback page loads jinja2,
mistune and pygments, then compiles nine Jinja templates. Importing them
here, and compiling the feedback templates into an in-memory bytecode cache
that every forked job inherits, takes about 0.8 s of CPU off every notebook.
The cache lives in memory only: no job can write into what the next job
loads. Nothing here starts a thread, a kernel or a connection: the server
stays safe to fork.
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
    # the trusted scorer runs the lessons' setup and test cells: torch and the kdlab modules they import
    "torch", "torch.nn.functional", "kdlab.checks", "kdlab.quiz", "kdlab.losses", "kdlab.analysis",
    "kdlab.features", "kdlab.compress", "kdlab.lm.losses", "kdlab.data", "kdlab.models", "kdlab.zoo",
    "kdlab.train", "kdlab.lessons", "kdlab.grading.scoring", "kdlab.grading.restore",
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


class _MemoryBytecodeCache:
    """A jinja2 bytecode cache in this process's memory (forked jobs inherit a copy)."""

    def __init__(self):
        from jinja2 import BytecodeCache

        store: dict = {}

        class Cache(BytecodeCache):
            def load_bytecode(self, bucket):
                data = store.get(bucket.key)
                if data is not None:
                    bucket.bytecode_from_string(data)

            def dump_bytecode(self, bucket):
                store[bucket.key] = bucket.bytecode_to_string()

        self.cache = Cache()


def _share_template_bytecode() -> None:
    from nbconvert.exporters.templateexporter import TemplateExporter

    cache = _MemoryBytecodeCache().cache
    original = TemplateExporter._create_environment

    def _create_environment(self):
        environment = original(self)
        environment.bytecode_cache = cache
        return environment

    TemplateExporter._create_environment = _create_environment


def _warm_feedback_templates() -> None:
    """Render a one-cell notebook with nbgrader's feedback exporter: compiles its templates into the cache."""
    import nbformat
    from nbgrader.converters import GenerateFeedback

    converter = GenerateFeedback()
    exporter = converter.exporter_class(parent=converter, config=converter.config)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("x")])
    nb.metadata["language_info"] = {"name": "python"}
    exporter.from_notebook_node(nb, resources={"nbgrader": {"notebook": "warm-up", "score": 0, "max_score": 1,
                                                            "late_penalty": 0}})


try:
    _share_template_bytecode()
    _warm_feedback_templates()
except Exception:  # noqa: BLE001 - an optional speed-up only
    pass
