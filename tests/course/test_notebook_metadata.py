"""The course's notebooks open clean: complete kernelspec and language_info (scripts/notebook_metadata.py).

JupyterLab writes the running kernel's ``language_info`` into a notebook that
lacks it, which marks a just-opened notebook as changed. Every notebook of
solutions/ and notebooks/ must already hold what a real python3 kernel of this
environment reports. Fix with ``python scripts/notebook_metadata.py``.
"""

import importlib.util
import json
import shutil
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "notebook_metadata.py"
KEYS = {"name", "version", "mimetype", "file_extension", "codemirror_mode", "nbconvert_exporter", "pygments_lexer"}


def load_script():
    spec = importlib.util.spec_from_file_location("notebook_metadata", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kernel_reports():
    """kernelspec and language_info as a real python3 kernel reports them (kernel_info_reply)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        kc.kernel_info()
        reply = kc.get_shell_msg(timeout=60)
        while reply["msg_type"] != "kernel_info_reply":
            reply = kc.get_shell_msg(timeout=60)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    spec = KernelSpecManager().get_kernel_spec("python3")
    return {"kernelspec": {"display_name": spec.display_name, "language": spec.language, "name": "python3"},
            "language_info": reply["content"]["language_info"]}


def test_the_script_writes_what_the_kernel_reports(kernel_reports):
    assert KEYS <= set(kernel_reports["language_info"])
    assert load_script().expected_metadata() == kernel_reports


@pytest.mark.parametrize("path", [p.relative_to(REPO).as_posix() for p in load_script().course_notebooks()])
def test_every_course_notebook_has_the_complete_metadata(path, kernel_reports):
    metadata = json.loads((REPO / path).read_text(encoding="utf-8"))["metadata"]
    for key, want in kernel_reports.items():
        assert metadata.get(key) == want, (
            f"{path}: {key} is {metadata.get(key)!r}, the python3 kernel reports {want!r}: "
            "run `python scripts/notebook_metadata.py`")


def test_applying_changes_only_the_metadata_and_is_idempotent(tmp_path):
    script = load_script()
    want = script.expected_metadata()
    source = REPO / "solutions" / "part1_foundations" / "01_softmax_temperature.ipynb"
    copy = tmp_path / "lesson.ipynb"
    shutil.copy2(source, copy)
    before = json.loads(copy.read_text(encoding="utf-8"))
    before["metadata"]["language_info"] = {"name": "python"}   # what the course shipped before
    copy.write_text(json.dumps(before), encoding="utf-8")
    assert script.missing(copy, want) == ["language_info"]
    assert script.apply(copy, want) is True
    after = json.loads(copy.read_text(encoding="utf-8"))
    assert after["metadata"] == {**before["metadata"], **want} and after["cells"] == before["cells"]
    assert script.missing(copy, want) == []
    assert script.apply(copy, want) is False   # nothing left to do: the file is not rewritten
    # written as nbformat (and JupyterLab) write it, so a save in JupyterLab is no diff
    assert copy.read_text(encoding="utf-8") == nbformat.writes(nbformat.read(str(copy), as_version=4)) + "\n"
