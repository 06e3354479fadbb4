"""What requirements.txt pins for the speed of every notebook tool, checked in the environment it installed."""

import subprocess
import sys


def test_nbformat_imports_without_rfc3987_syntax():
    """jsonschema<4.25: its later format-nongpl extra installs rfc3987-syntax, which jsonschema imports with
    nbformat, and whose import builds a Lark grammar (2.7 s of CPU in every nbgrader, alembic and Jupyter process)."""
    code = "import sys, nbformat, nbgrader.api; print('rfc3987_syntax' in sys.modules, 'lark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"], (
        "nbformat imported rfc3987_syntax: reinstall with requirements.txt's jsonschema<4.25")
