"""What the graded parts of the course give away: measured on the notebooks a learner receives.

Two audits, used by tests/course/test_assessment.py and printable with ``python tests/assessment_audit.py``:

- :func:`solution_leaks`: for every code exercise, the share of its solution's code (runs of
  :data:`NGRAM` tokens) that the learner's notebook already contains anywhere: hints, theory,
  experiment cells, visible checks. A hint that spells out the answer shows up here.
- :func:`form_strategies`: what a learner who knows no KD scores on the graded multiple-choice
  questions by their form alone: always the longest option, always the shortest, one letter
  everywhere, or any repeating cycle of letters of period 2 to 4.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import textwrap
import tokenize
from dataclasses import dataclass
from pathlib import Path

from kdlab import course

REPO = Path(__file__).resolve().parents[1]
NGRAM = 5
LEAK_LIMIT = 0.40
MC_MARGIN = 0.20

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?"
                    r"|\*\*=?|//=?|==|!=|<=|>=|->|[-+*/%@&|^]=|[-+*/%@<>=(),.\[\]{}:;~^&|]")
_SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER,
         tokenize.STRING, tokenize.ENCODING}


def _source(cell) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def lessons() -> list[tuple[str, str]]:
    """(assignment, lesson) of every lesson, in course order (the course manifest, kdlab/course.json)."""
    return [(lesson.assignment, lesson.name) for lesson in course.lessons()]


def text_tokens(text: str) -> list[str]:
    """Tokens of any text (prose, Markdown, code): names, numbers, operators; quotes and words in strings too."""
    return _TOKEN.findall(text)


def code_tokens(code: str) -> list[str]:
    """The tokens of Python code, without comments and string literals (docstrings say what, not how)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type not in _SKIP:
            out.extend(text_tokens(tok.string))
    return out


def ngrams(tokens: list[str], n: int = NGRAM) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


@dataclass(frozen=True)
class Leak:
    assignment: str
    lesson: str
    exercise: str
    share: float          # of the solution's n-grams that the learner's notebook contains
    runs: int             # n-grams in the solution
    examples: tuple       # a few of the leaked runs, as text


def solution_leaks(assignment: str, lesson: str) -> list[Leak]:
    """The leak of every code exercise of one lesson (solution cells with at least NGRAM tokens)."""
    solution = load(REPO / "solutions" / assignment / f"{lesson}.ipynb")
    released = load(REPO / "notebooks" / assignment / f"{lesson}.ipynb")
    seen, starters = set(), {}
    for cell in released["cells"]:
        grams = set(ngrams(text_tokens(_source(cell))))
        tags = [t.split(":", 1)[1] for t in cell.get("metadata", {}).get("tags", []) if t.startswith("starter:")]
        for exercise in tags:
            starters.setdefault(exercise, set()).update(grams)
        if not tags:
            seen.update(grams)
    out = []
    for cell in solution["cells"]:
        meta = _nbgrader(cell)
        if cell["cell_type"] != "code" or not meta.get("solution"):
            continue
        match = _SOLUTION.search(_source(cell))
        if not match:
            continue
        # A fix-the-bug exercise hands the learner code to repair (a cell tagged "starter:<exercise>"):
        # what must not be given away is the fix, the runs of the solution that the starter lacks.
        starter = starters.get(meta["grade_id"], set())
        runs = [r for r in ngrams(code_tokens(textwrap.dedent(match.group(1)))) if r not in starter]
        if not runs:
            continue
        leaked = [r for r in runs if r in seen]
        out.append(Leak(assignment, lesson, meta["grade_id"], len(leaked) / len(runs), len(runs),
                        tuple(" ".join(r) for r in leaked[:4])))
    return out


def all_leaks() -> list[Leak]:
    return [leak for assignment, lesson in lessons() for leak in solution_leaks(assignment, lesson)]


# ----------------------------------------------------------------------------- multiple choice

_MC_HEADING = re.compile(r"^\*\*MC(\d+)\.\*\*", re.M)
_OPTION = re.compile(r"^- \*\*([A-Z])\.\*\* (.+?)\s*$", re.M)
_KEY = re.compile(r'Your answer to MC(\d+).*?### BEGIN SOLUTION\s*return "([A-Z])"', re.S)
_REVIEW = re.compile(r'quiz\.expect_choice\(\s*"(\w+)",\s*\w+,\s*"([A-Z])",\s*review="([^"]*)"')


@dataclass(frozen=True)
class Question:
    number: int
    options: dict          # letter -> text, as the learner sees it
    key: str
    review: str            # where the course teaches it ("Lesson 3, section 4")


def graded_questions(assignment: str | None = None, lesson: str | None = None) -> list[Question]:
    """The graded multiple-choice questions: options from the learner's notebook, keys from the solution.

    By default those of the lesson that has the course's multiple-choice exercises (lesson 10).
    """
    if lesson is None:
        lesson = next(e.lesson for e in course.exercises() if e.kind == "choice")
    assignment = assignment or course.lesson(lesson).assignment
    released = load(REPO / "notebooks" / assignment / f"{lesson}.ipynb")
    solution = load(REPO / "solutions" / assignment / f"{lesson}.ipynb")
    options = {}
    for cell in released["cells"]:
        text = _source(cell)
        heading = _MC_HEADING.search(text)
        if cell["cell_type"] == "markdown" and heading:
            options[int(heading.group(1))] = dict(_OPTION.findall(text))
    keys, names, reviews = {}, {}, {}      # MC number -> key, answer function; function -> review
    for cell in solution["cells"]:
        text = _source(cell)
        key, name, review = _KEY.search(text), re.search(r"def (\w+)\(", text), _REVIEW.search(text)
        if key:
            keys[int(key.group(1))] = key.group(2)
            names[int(key.group(1))] = name.group(1) if name else ""
        if review:
            reviews[review.group(1)] = review.group(3)
    return [Question(n, options.get(n, {}), k, reviews.get(names[n], "")) for n, k in keys.items()]


def _score(questions, picks) -> float:
    return sum(q.key == p for q, p in zip(questions, picks)) / len(questions)


def form_strategies(questions: list[Question]) -> dict[str, float]:
    """The share each form-only strategy answers right (the best letter or cycle where there is a choice)."""
    longest = [max(q.options, key=lambda k: (len(q.options[k]), k)) for q in questions]
    shortest = [min(q.options, key=lambda k: (len(q.options[k]), k)) for q in questions]
    letters = sorted({k for q in questions for k in q.options})
    out = {"always the longest option": _score(questions, longest),
           "always the shortest option": _score(questions, shortest),
           "one letter everywhere (the best one)": max(_score(questions, [l] * len(questions)) for l in letters)}
    for period in (2, 3, 4):
        best = max(_score(questions, [cycle[i % period] for i in range(len(questions))])
                   for cycle in itertools.product(letters, repeat=period))
        out[f"a repeating cycle of period {period} (the best one)"] = best
    return out


def chance(questions: list[Question]) -> float:
    return sum(1 / len(q.options) for q in questions) / len(questions)


if __name__ == "__main__":
    leaks = sorted(all_leaks(), key=lambda leak: -leak.share)
    for leak in leaks:
        print(f"{leak.share:6.0%}  {leak.exercise:28s} {leak.lesson:32s} {leak.runs:4d} runs  {'; '.join(leak.examples)[:90]}")
    questions = graded_questions()
    print(f"\n{len(questions)} graded multiple-choice questions; chance {chance(questions):.0%}")
    for name, score in form_strategies(questions).items():
        print(f"{score:6.0%}  {name}")


# ----------------------------------------------------------------------------- hints

_HINT = re.compile(r"<details><summary><b>Hint (\d+)[^<]*</b></summary>(.*?)</details>", re.S)
_CODE_SPAN = re.compile(r"`([^`]+)`")
# Inside a hint, inline code may name a thing (a function, a method, an argument), never show code.
_A_NAME = re.compile(r"^[A-Za-z_][\w.]*(\(\))?$|^dim=-?\d$")


@dataclass(frozen=True)
class Hints:
    lesson: str
    exercise: str
    tiers: tuple          # the text of each tier, in order
    code: tuple           # code spans or fenced blocks inside them that are more than a name


def exercise_hints(assignment: str, lesson: str) -> list[Hints]:
    """The hints before each code exercise of a lesson (the Markdown since the previous code cell)."""
    cells = load(REPO / "solutions" / assignment / f"{lesson}.ipynb")["cells"]
    out = []
    for i, cell in enumerate(cells):
        meta = _nbgrader(cell)
        if cell["cell_type"] != "code" or not meta.get("solution") or not re.search(r"^def \w+", _source(cell), re.M):
            continue
        if course.exercise(meta["grade_id"]).kind != "code":    # lesson 10's graded questions have no hints
            continue
        prose = []
        for before in reversed(cells[:i]):
            if before["cell_type"] == "code":
                break
            prose.insert(0, _source(before))
        found = _HINT.findall("\n".join(prose))
        tiers = tuple(text for _, text in found)
        code = tuple(span for text in tiers for span in _CODE_SPAN.findall(text) if not _A_NAME.match(span.strip()))
        code += tuple("```" for text in tiers if "```" in text)
        out.append(Hints(lesson, meta["grade_id"], tiers, code))
    return out


def all_hints() -> list[Hints]:
    return [h for assignment, lesson in lessons() for h in exercise_hints(assignment, lesson)]
