"""What every bank of answers (tests/part*_answers.py, tests/lesson9_answers.py) builds its answers with."""

from __future__ import annotations

import re
import textwrap


def src(text: str) -> str:
    """A source block written indented in a triple-quoted string, dedented and without blank ends."""
    return textwrap.dedent(text).strip("\n")


def edit(base: str, *replacements: tuple[str, str], prefix: str = "") -> str:
    """``base`` with each (old, new) replaced exactly once: a wrong answer one edit away from a right one."""
    out = src(base)
    for old, new in replacements:
        if out.count(old) != 1:
            raise ValueError(f"{old!r} occurs {out.count(old)} times in the base answer")
        out = out.replace(old, new)
    return (src(prefix) + "\n\n" + out) if prefix else out


def course_bug(label: str) -> int | None:
    """The number of the docs/course.md bug a wrong answer's label (``"bug N: ..."``) injects, else None."""
    m = re.match(r"bug (\d+):", label)
    return int(m.group(1)) if m else None


# Correct answers that make noise: stderr from Python and from file descriptor 2, a Python warning and a
# logged warning, at definition time and on every call. They must keep full marks.
NOISE = '''
import logging, os, sys, warnings
print("{name}: debugging output on stderr", file=sys.stderr)
os.write(2, b"{name}: written straight to file descriptor 2\\n")
warnings.warn("{name}: a warning raised by a correct answer")
logging.getLogger("learner").warning("{name}: a logged warning")
'''


def noisy(solution_source: str, name: str) -> str:
    """The solution's answer cell ``name`` with noise at definition time and on every call."""
    lines = solution_source.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith(f"def {name}("))
    body_start = header + 1
    while lines[body_start].lstrip().startswith(('"""', "'")):   # keep the docstring first
        body_start += 1
    noise = textwrap.indent(src(NOISE.format(name=name)), "    ").splitlines()
    top = ["import sys", f'print("defining {name}", file=sys.stderr)']
    return "\n".join(top + lines[:body_start] + noise + lines[body_start:])
