"""Part 4 (the interview drill) as a lesson: its questions, their pointers into the lessons, its cells, and that it runs."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import nbgrader_harness as h
from kdlab import course
from lesson_runs import on_the_worker_of
from markdown_tools import table_rows

ASSIGNMENT = "part4_interview"
LESSON = "10_interview_drill"
SOLUTION = h.REPO / "solutions" / ASSIGNMENT / f"{LESSON}.ipynb"
RELEASED = h.REPO / "notebooks" / ASSIGNMENT / f"{LESSON}.ipynb"
POINTER = re.compile(r'\[([^\]]+)\]\(([^)\s]+\.ipynb)\), § "([^"]+)"')
QUESTION = re.compile(r"^### Q(\d+)\.( ★)? (.+)$", re.M)

# The starred core questions every drill asks (docs/course.md, lesson 10), found by what their headings ask.
SEED = {
    "why soft labels rather than hard labels": r"soft labels rather than hard labels",
    "what the temperature does": r"What does the temperature do",
    "why T^2": r"multiplied by \$T\^2\$",
    "what is in the loss": r"What is in the distillation loss",
    "how KD relates to quantization and pruning": r"relate to quantization and pruning",
}
# The topics the issue asks the drill to add, found in the question headings.
TOPICS = {
    "dark knowledge": r"dark knowledge",
    "choosing T and alpha": r"choose \$T\$ and \$\\alpha\$",
    "when KD fails": r"When does distillation fail",
    "forward vs reverse KL": r"Forward or reverse KL",
    "on-policy distillation": r"on-policy distillation",
    "feature-based KD": r"feature-based distillation",
    "DistilBERT": r"DistilBERT",
    "self-distillation": r"self-distillation",
    "cost of caching teacher outputs": r"caching the teacher's outputs cost",
    "KD vs teacher-labelled data": r"teacher-labelled data",
    # issue 15: what practitioners argue about, past what a laptop can train
    "why KD works": r"Why does distillation work",
    "label smoothing": r"label smoothing",
    "calibration and temperature scaling": r"Calibration.*temperature scaling",
    "relation-based KD": r"relation-based distillation",
    "data-free KD": r"without the training data",
    "online, mutual, multi-teacher": r"Online, mutual and multi-teacher",
    "DeiT's distillation token": r"DeiT's distillation token",
    "pruning plus logit distillation": r"pruning and distillation \(Minitron, Llama 3\.2\)",
    "distilling reasoning traces": r"DeepSeek-R1",
    "top-k teacher logits": r"top-k",
    "different tokenizers": r"different tokenizers",
}
ARXIV = re.compile(r"\[arXiv:(\d{4}\.\d{4,5})\]\(https://arxiv\.org/abs/(\d{4}\.\d{4,5})\)")


def solution():
    return h.load(SOLUTION)


def markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def question_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "markdown" and QUESTION.search(c.source)]


def headings(path: Path) -> set[str]:
    nb = h.load(path)
    return {line.lstrip("#").strip() for c in nb.cells if c.cell_type == "markdown"
            for line in c.source.splitlines() if line.startswith("#")}


def graded_answer_ids(nb) -> list[str]:
    return [h.grade_id(c) for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]


# ----------------------------------------------------------------------------- the questions

def test_at_least_38_questions_numbered_in_order():
    numbers = [int(QUESTION.search(c.source).group(1)) for c in question_cells(solution())]
    assert len(numbers) >= 38
    assert numbers == list(range(1, len(numbers) + 1))


def test_every_question_has_a_model_answer_and_a_pointer():
    for c in question_cells(solution()):
        title = QUESTION.search(c.source).group(3)
        assert "<summary><b>Model answer</b></summary>" in c.source and "</details>" in c.source, title
        answer = c.source.split("<summary><b>Model answer</b></summary>", 1)[1].split("</details>", 1)[0]
        assert len(answer.split()) >= 40, f"the model answer to {title!r} is too thin"
        assert "**→ See it measured:**" in c.source and POINTER.search(c.source), f"{title!r} points nowhere"


@pytest.mark.parametrize("topic", sorted(SEED))
def test_the_seed_questions_are_asked_starred_and_answered(topic):
    hits = [c for c in question_cells(solution()) if re.search(SEED[topic], QUESTION.search(c.source).group(3))]
    assert len(hits) == 1, topic
    assert QUESTION.search(hits[0].source).group(2) == " ★", f"the seed question on {topic} is starred"


def test_only_the_seed_questions_are_starred():
    starred = [c for c in question_cells(solution()) if QUESTION.search(c.source).group(2)]
    assert len(starred) == len(SEED)


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_the_issue_topics_are_asked(topic):
    titles = [QUESTION.search(c.source).group(3) for c in question_cells(solution())]
    assert any(re.search(TOPICS[topic], t, re.I) for t in titles), topic


def test_past_the_lessons_every_answer_names_its_papers():
    """Questions 31 on go where the course cannot train (ImageNet, billion-parameter models): each names its papers
    with an arXiv id whose link is the same id, and still points to what the course does measure."""
    for c in question_cells(solution()):
        number, title = int(QUESTION.search(c.source).group(1)), QUESTION.search(c.source).group(3)
        read = re.search(r"\*\*→ Read it:\*\*(.+)", c.source)
        if number < 31:
            continue
        assert read, f"Q{number} {title!r} names no paper"
        ids = ARXIV.findall(read.group(1))
        assert ids or "huggingface.co" in read.group(1), f"Q{number}: no arXiv id or model card"
        assert all(shown == linked for shown, linked in ids), ids
        assert re.search(r"\(\d{4}\)", read.group(1)), f"Q{number}: papers are cited with their year"


def where_and_myths(nb):
    cells = {c.source.splitlines()[0]: c.source for c in nb.cells if c.cell_type == "markdown"}
    where = next(v for k, v in cells.items() if k.startswith("### Where it shows up"))
    myths = next(v for k, v in cells.items() if k.startswith("### Myths"))
    return where, myths


def test_where_distillation_shows_up_names_what_went_into_what_and_the_source():
    where, _ = where_and_myths(solution())
    rows = {row[0]: row for row in table_rows(where)[1:]}
    for model in ("DistilBERT", "TinyBERT", "MiniLM", "DistilGPT2", "DeiT", "Minitron", "Gemma 2", "R1-Distill"):
        row = next((r for name, r in rows.items() if name.startswith(model)), None)
        assert row is not None, f"no row for {model}"
        _, into, learns, result, source = row
        assert "→" in into and learns and re.search(r"\d", result), row
        assert ARXIV.search(source) or "huggingface.co" in source, f"{model}: no source"
    assert len(POINTER.findall(where)) >= 4, "the table says where the course measures each method"


def test_the_myths_box_corrects_each_claim_with_a_measurement_or_a_paper():
    _, myths = where_and_myths(solution())
    claims = re.split(r"\n>\s*\n", myths.split("\n", 1)[1].strip())
    assert len(claims) >= 6
    for claim in claims:
        assert claim.startswith("> **"), claim[:60]
        assert POINTER.search(claim) or ARXIV.search(claim) or re.search(r"questions? \d+", claim), claim[:80]
    text = " ".join(claims)
    for myth in ("TinyLlama", "cannot beat its teacher", "whatever $T$ is", "pruned model is smaller"):
        assert myth in text, myth
    assert "from scratch" in next(c for c in claims if "TinyLlama" in c)


def test_the_drill_never_claims_that_t_squared_makes_the_gradient_independent_of_t():
    """Issue 15: with T^2 the soft gradient is T(q - p), roughly T-independent only at large T. The overclaim may
    appear only as a myth to correct or as MC3's wrong option, and Q5 says what the factor does not do."""
    nb = solution()
    _, myths = where_and_myths(nb)
    overclaim = re.compile(r"(same size|independent of \$?T\$?)[^.]*(whatever|every|any) \$?T|whatever \$?T\$? is", re.IGNORECASE)
    mc3 = h.cell(nb, "q_t_squared")
    prompt = nb.cells[nb.cells.index(mc3) - 1].source
    wrong = [line for line in prompt.splitlines() if line.startswith("- **") and overclaim.search(line)]
    key = re.search(r'return "([A-D])"', mc3.source).group(1)
    assert len(wrong) == 1 and not wrong[0].startswith(f"- **{key}.")
    for c in nb.cells:
        if c.cell_type == "markdown" and c.source not in (myths, prompt):
            assert not overclaim.search(c.source), c.source[:120]
    q5 = next(c.source for c in question_cells(nb) if "multiplied by $T^2$" in c.source.splitlines()[0])
    assert "large against the logit gaps" in q5 and "does not make the gradient independent of $T$" in q5


def test_the_self_check_on_bug_8_has_one_defensible_answer():
    """The loop is stated (no detach, the teacher's parameters in the optimizer), so "nothing shows" is wrong."""
    from kdlab import quiz_bank

    q = next(q for q in quiz_bank.SELF_CHECK if q.key == "teacher_grad_symptom")
    assert "optimizer holds the teacher's parameters" in q.prompt and "without no_grad or detach" in q.prompt
    right = q.choices["ABCD".index(q.answer)].text
    assert "test errors change" in right and "gradient" in right


def pointers(nb):
    for c in question_cells(nb):
        title = QUESTION.search(c.source).group(3)
        for name, link, heading in POINTER.findall(c.source):
            yield title, name, link, heading


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_every_pointer_names_an_existing_notebook_and_heading(folder):
    """Each model answer points at lesson sections by heading; the notebook and the heading must exist."""
    here = h.REPO / folder / ASSIGNMENT
    problems, count = [], 0
    cache: dict = {}
    for title, name, link, heading in pointers(solution()):
        count += 1
        target = (here / link).resolve()
        if not target.is_file():
            problems.append(f"{title!r}: {link} does not exist in {folder}/")
            continue
        if target not in cache:
            cache[target] = headings(target)
        if heading not in cache[target]:
            problems.append(f"{title!r}: {link} has no heading {heading!r}")
        match = re.match(r"Lesson (\d+)$", name)
        if match:
            assert target.name.startswith(f"{int(match.group(1)):02d}_"), f"{name} links to {target.name}"
        else:
            assert name == "this notebook" and target.name == f"{LESSON}.ipynb", (name, link)
    assert count >= 30
    assert problems == []


def test_the_table_and_the_myths_point_at_existing_headings():
    """The pointers outside the questions (the table of published models, the myths box) resolve too, each on one
    line, in the released notebooks as in the solutions."""
    where, myths = where_and_myths(solution())
    assert not re.search(r'§ "[^"]*\n', where + myths), "a pointer's heading is broken over two lines"
    found = POINTER.findall(where + myths)
    assert len(found) >= 8
    for folder in ("solutions", "notebooks"):
        here = h.REPO / folder / ASSIGNMENT
        for name, link, heading in found:
            assert heading in headings((here / link).resolve()), f"{folder}: {link} has no heading {heading!r}"


def test_pointers_reach_every_part_of_the_course():
    lessons = {link.split("/")[-1][:2] for _, _, link, _ in pointers(solution())}
    assert {"01", "02", "03", "05", "06", "07", "08", "09", "10"} <= lessons


# ----------------------------------------------------------------------------- cells and conventions

# The drill's graded answers, by kind, from the course manifest (tests/docs/test_course_manifest.py holds it to
# the notebook).
MC_IDS = [e.name for e in course.exercises("part4_interview") if e.kind == "choice"]
NUMERIC_IDS = [e.name for e in course.exercises("part4_interview") if e.kind == "numeric"]
EXPLAIN_IDS = [e.name for e in course.exercises("part4_interview") if e.kind == "written"]


def test_graded_cells_follow_the_grade_id_conventions():
    nb = solution()
    assert graded_answer_ids(nb) == MC_IDS + NUMERIC_IDS
    for name in MC_IDS + NUMERIC_IDS:
        answer = h.cell(nb, name)
        tree = ast.parse(answer.source)
        assert [n.name for n in tree.body if isinstance(n, ast.FunctionDef)] == [name]
        assert "### BEGIN SOLUTION" in answer.source and "### END SOLUTION" in answer.source
        test = nb.cells[nb.cells.index(answer) + 1]
        meta = test.metadata.get("nbgrader", {})
        assert h.grade_id(test) == f"test_{name}"
        assert meta.get("grade") and meta.get("locked") and meta.get("points") == 1 and not meta.get("solution")
        assert test.source.count("### BEGIN HIDDEN TESTS") == 1 == test.source.count("### END HIDDEN TESTS")
        reader = "read_choice" if name.startswith("q_") else "read_number"
        assert f"quiz.{reader}({name}" in test.source
        assert not h.is_experiment(answer) and not h.is_experiment(test)


def test_multiple_choice_answers_spread_over_the_letters():
    letters = [re.search(r'return "([A-D])"', h.cell(solution(), n).source).group(1) for n in MC_IDS]
    share = len(letters) / 4
    assert all(share - 1 <= letters.count(x) <= share + 1 for x in "ABCD"), letters
    for period in (2, 3, 4):   # no letter dominates any residue class: tests/course/test_assessment.py measures the cycles
        for r in range(period):
            column = letters[r::period]
            assert max(column.count(x) for x in "ABCD") <= len(column) / 2 + 0.5, (period, r, letters)


def test_the_prose_counts_the_graded_questions():
    nb = solution()
    prompts = [c.source for c in nb.cells if c.cell_type == "markdown" and re.match(r"\*\*(MC|N)\d+\.\*\*", c.source)]
    numbers = {kind: [int(n) for k, n in (re.match(r"\*\*(MC|N)(\d+)\.", p).groups() for p in prompts) if k == kind]
               for kind in ("MC", "N")}
    assert numbers == {"MC": list(range(1, len(MC_IDS) + 1)), "N": list(range(1, len(NUMERIC_IDS) + 1))}
    intro = nb.cells[0].source
    assert f"{len(MC_IDS)} graded multiple-choice and\n{len(NUMERIC_IDS)} numeric questions" in intro
    graded = next(c.source for c in nb.cells if c.source.startswith("## 8. Graded questions"))
    assert f"There are {len(MC_IDS)} multiple-choice questions (MC1 to MC{len(MC_IDS)})" in graded
    assert f"{len(NUMERIC_IDS)} numeric questions (N1 to N{len(NUMERIC_IDS)})" in graded
    reviews = [re.search(r'review="([^"]+)"', h.cell(nb, f"test_{n}").source).group(1) for n in MC_IDS]
    covered = {int(n) for r in reviews for n in re.findall(r"Lesson (\d+)", r)}
    assert set(range(1, 10)) <= covered, set(range(1, 10)) - covered


def test_explain_prompts_are_manually_graded_markdown_with_a_rubric():
    nb = solution()
    for name in EXPLAIN_IDS:
        answer = h.cell(nb, name)
        meta = answer.metadata["nbgrader"]
        assert answer.cell_type == "markdown" and meta["grade"] and meta["solution"] and meta["points"] == 3
        rubric = nb.cells[nb.cells.index(answer) - 1]
        assert h.grade_id(rubric) == f"rubric_{name}" and rubric.metadata["nbgrader"]["locked"]
        assert "Rubric (3 points" in rubric.source and rubric.source.count("**1 point:**") == 3
        assert 80 <= len(answer.source.split()) <= 200, f"{name}: a 60-second answer is about 100 to 150 words"


def test_lesson_structure():
    nb = solution()
    text = markdown(nb)
    for section in ("Learning goals", "Pitfalls", "What we learned", "## 8. Graded questions",
                    "## 9. Explain it in 60 seconds", "## 1. Warm-up: a self-check quiz"):
        assert section in text, section
    assert "$$" in text
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "setup()" in first_code.source
    experiments = [c for c in nb.cells if h.is_experiment(c)]
    assert any("quiz_widget" in c.source for c in experiments)
    assert any("plt.show()" in c.source for c in experiments)
    # Every code cell the autograder runs is the setup, an answer or a test.
    for c in h.graded_cells(nb):
        assert c is first_code or h.grade_id(c), c.source[:80]


def test_released_notebook_hides_the_answers():
    sol, rel = solution(), h.load(RELEASED)
    text = "\n".join(c.source for c in rel.cells)
    assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text
    assert "expect_choice" not in text and "expect_number" not in text
    for name in MC_IDS + NUMERIC_IDS:
        assert "raise NotImplementedError()" in h.cell(rel, name).source
        assert "return" not in h.cell(rel, name).source.split('"""')[-1]
        hidden = h.cell(sol, f"test_{name}").source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
        assert hidden.strip() and hidden.strip() not in text
        if name.startswith("n_"):
            value = float(eval(re.search(r"answer, (.+), rel_tol", hidden).group(1), {"math": __import__("math")}))
            if value != int(value):   # an integer like 25 appears in any text; a value like 0.6285 must not
                for shown in {f"{value:.4g}", f"{value:.3g}", f"{value:.5g}", repr(value)}:
                    assert shown not in text, f"{name}: the answer {shown} is in the released notebook"
    for name in EXPLAIN_IDS:
        assert h.cell(rel, name).source.strip() == "YOUR ANSWER HERE"


def test_graded_answers_are_not_in_kdlab():
    """The graded questions' answers live only in the hidden tests, never in a module a learner can read."""
    sol = solution()
    source = (h.REPO / "kdlab" / "quiz.py").read_text() + (h.REPO / "kdlab" / "quiz_bank.py").read_text()
    for name in MC_IDS + NUMERIC_IDS:
        assert name not in source
    prompts = [c.source for c in sol.cells if c.cell_type == "markdown" and re.match(r"\*\*(MC|N)\d+\.\*\*", c.source)]
    assert len(prompts) == len(MC_IDS) + len(NUMERIC_IDS)
    bank_prompts = [q.prompt for q in __import__("kdlab.quiz_bank", fromlist=["SELF_CHECK"]).SELF_CHECK]
    assert not any(p[:40] in "\n".join(prompts) for p in bank_prompts)


def test_graded_solutions_pass_in_process():
    results = h.run_graded_cells(solution())
    assert results == {f"test_{n}": None for n in MC_IDS + NUMERIC_IDS}


# ----------------------------------------------------------------------------- it runs

@pytest.fixture
def fast_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KDLAB_FAST", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    return tmp_path


@on_the_worker_of(LESSON)
def test_the_drill_shows_its_quizzes_the_soft_targets_lab_and_a_plot(executed):
    nb, _ = executed(LESSON)
    experiments = [c for c in nb.cells if h.is_experiment(c)]
    widgets = [c for c in experiments if "quiz_widget" in c.source]
    assert len(widgets) == 2 and all(any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                                         for o in c.outputs) for c in widgets)
    lab = next(c for c in experiments if "soft_targets.experiment" in c.source)
    assert "soft-targets:" in "".join(o.get("text", "") for o in lab.outputs)


def test_the_lab_runs_from_the_terminal(fast_env):
    out = fast_env / "soft-targets.json"
    proc = subprocess.run([sys.executable, "-m", "kdlab.cli", "experiment", "soft-targets", "--seed", "0",
                           "--json", str(out), "--no-progress"], capture_output=True, text=True, timeout=600,
                          cwd=fast_env)
    assert proc.returncode == 0, proc.stderr
    assert "soft-targets:" in proc.stdout and "born-again" in proc.stdout
    result = json.loads(out.read_text())
    students = ("true_labels", "teacher_hard_labels", "teacher_soft_targets", "kd", "born_again")
    assert set(result["test_errors"]) == set(students)
    for key in students:
        s = result["students"][key]
        assert 0 <= s["test_errors"] <= result["test_size"] and 0 <= s["agreement_with_teacher"] <= 1
        assert s["test_errors"] == result["test_errors"][key]
    assert len(result["true_labels_seed_spread"]["test_errors"]) == 3
    assert result["true_labels_seed_spread"]["test_errors"][0] == result["test_errors"]["true_labels"]
    assert 0 <= result["students"]["born_again"]["agreement_with_its_teacher"] <= 1
    assert result["fast_mode"] is True
