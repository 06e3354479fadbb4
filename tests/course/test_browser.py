"""The course in a real browser: JupyterLab 4 and headless Chromium, driven through selenium.

One JupyterLab server (127.0.0.1, a free port, a token, ``--no-browser``, KDLAB_FAST=1, its own cache)
over a temporary copy of the learner notebooks, and one Chromium for the whole module. The tests do what a
learner does, in order: run lesson 1 (Run > Run All Cells), drag and key the temperature slider, Play and
pause, type bad logits, answer ``softmax_t`` wrongly then rightly and run its check, click nbgrader's
Validate; answer lesson 10's self-check quiz; move lesson 9's mixture sliders. The last test asserts that
the browser's console has no SEVERE entry.

Every step leaves a screenshot in $KDLAB_SCREENSHOTS, or else in a folder under pytest's temporary
directory; the folder is printed when the module starts. Debian's ``chromium`` and ``chromium-driver``
(installed by .ci/run) are required; without them the module is skipped.

Excluded from a quick run with ``-m "not browser"``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from browser_helpers import (
    CHROMIUM_CANDIDATES,
    DRIVER_CANDIDATES,
    Lab,
    LabServer,
    changed,
    crop_png,
    find_executable,
    start_chromium,
)

ROOT = Path(__file__).resolve().parents[2]
HTML = ".widget-html, .widget-htmlmath"          # ipywidgets' HTML and HTMLMath outputs
LESSON1 = "part1_foundations/01_softmax_temperature.ipynb"
LESSON9 = "part3_beyond/09_distilling_language_models.ipynb"
LESSON10 = "part4_interview/10_interview_drill.ipynb"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

WRONG_SOFTMAX = '''def softmax_t(logits, T=1.0):
    """Softmax of logits / T over the last dimension; stable for huge logits; T must be > 0."""
    z = logits * T
    z = z - z.amax(dim=-1, keepdim=True)
    return torch.exp(z) / torch.exp(z).sum(dim=-1, keepdim=True)
'''

RIGHT_SOFTMAX = '''def softmax_t(logits, T=1.0):
    """Softmax of logits / T over the last dimension; stable for huge logits; T must be > 0."""
    if T <= 0:
        raise ValueError("T must be > 0")
    z = logits / T
    z = z - z.amax(dim=-1, keepdim=True)
    e = torch.exp(z)
    return e / e.sum(dim=-1, keepdim=True)
'''


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def browser_paths():
    chromium, driver = find_executable(CHROMIUM_CANDIDATES), find_executable(DRIVER_CANDIDATES)
    if not chromium or not driver:
        pytest.skip("browser tests need Chromium and chromedriver (Debian: apt-get install chromium "
                    f"chromium-driver; .ci/run installs them): found chromium={chromium}, chromedriver={driver}")
    return chromium, driver


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory, request):
    folder = Path(os.environ["KDLAB_SCREENSHOTS"]) if os.environ.get("KDLAB_SCREENSHOTS") else \
        tmp_path_factory.mktemp("browser-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\nbrowser tests: screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def lab(browser_paths, screenshots, tmp_path_factory):
    """JupyterLab over a copy of notebooks/, and Chromium on it: one of each for the module."""
    chromium, driver_path = browser_paths
    base = tmp_path_factory.mktemp("browser-lab")
    root = base / "course"
    shutil.copytree(ROOT / "notebooks", root)
    server = LabServer(root, base / "private", {"KDLAB_FAST": "1"})
    server.launch()                      # JupyterLab and Chromium start side by side
    driver = None
    try:
        driver = start_chromium(chromium, driver_path)
        driver.set_page_load_timeout(120)
        server.wait_ready(120)
        yield Lab(driver, server, screenshots)
    finally:
        if driver is not None:
            driver.quit()
        server.stop()


@pytest.fixture(scope="module")
def lesson1(lab):
    """Lesson 1 open and run through Run > Run All Cells (it stops at the first failing check)."""
    lab.open_notebook(LESSON1, "lesson1")
    lab.shot("lesson1-opened")
    lab.menu("Run", "Run All Cells")
    cells = lab.cells()
    check = answer_cells(lab, cells, "softmax_t")[1]
    lab.wait(lambda: re.match(r"^\[\d+\]:$", lab.prompt(check)), 240, "Run All to reach softmax_t's check")
    lab.shot("lesson1-ran")
    return cells


@pytest.fixture(autouse=True)
def _after_each_test(request):
    """Collect the console log; after a failure, a screenshot of the page as it was left."""
    failed_before = request.session.testsfailed
    yield
    lab_ = request.node.funcargs.get("lab")
    if lab_ is not None:
        if request.session.testsfailed > failed_before:
            lab_.shot(f"FAILED-{request.node.name}")
        lab_.collect_console()


def answer_cells(lab, cells, name):
    """The answer cell ``def name(`` and the check cell that follows it."""
    for i, cell in enumerate(cells):
        source = lab.cell_source(cell)
        if source.startswith(f"def {name}(") and i + 1 < len(cells):
            return cell, cells[i + 1]
    raise AssertionError(f"no answer cell for {name} in the notebook")


def cell_with(lab, cells, text):
    for cell in cells:
        if text in lab.cell_source(cell):
            return cell
    raise AssertionError(f"no cell contains {text!r}")


# ---------------------------------------------------------------------------------------------- lesson 1

TEMPERATURE_STATE = """
const box = arguments[0];
const htmls = [...box.querySelectorAll('.widget-html, .widget-htmlmath')];
const view = htmls.find(h => h.innerText.includes('entropy'));
const message = htmls.find(h => h !== view);
const readout = box.querySelector('.widget-slider .widget-readout');
const bars = view ? [...view.querySelectorAll('span > span')].map(s => parseFloat(s.style.width)) : [];
const gauge = view ? view.innerText.split('\\n').find(l => l.includes('entropy')) : '';
return {readout: readout ? readout.innerText.trim() : '', gauge: gauge || '',
        bars: bars, message: message ? message.innerText.trim() : ''};
"""


def temperature_state(lab, box):
    state = lab.js(TEMPERATURE_STATE, box)
    m = re.search(r"T = ([\d.e+-]+).*?H = ([\d.]+)", state["gauge"])
    state["T"] = float(m.group(1)) if m else None
    state["H"] = float(m.group(2)) if m else None
    return state


def settled_state(lab, box, what, quiet=0.6, timeout=20):
    """The widget's state once T has not moved for ``quiet`` seconds (a kernel round trip may be in flight)."""
    seen = {"T": None, "since": time.monotonic()}

    def steady():
        state = temperature_state(lab, box)
        if state["T"] != seen["T"]:
            seen.update(T=state["T"], since=time.monotonic())
            return None
        return state if time.monotonic() - seen["since"] >= quiet else None

    return lab.wait(steady, timeout, what)


def regions(lab, box, parts):
    """Each part's rectangle inside ``box``'s element screenshot, in pixels (x0, y0, x1, y1)."""
    b = lab.rect(box)
    out = {}
    for name, el in parts.items():
        r = lab.rect(el)
        out[name] = (max(0, round(r["x"] - b["x"])), max(0, round(r["y"] - b["y"])),
                     round(r["x"] - b["x"] + r["w"]), round(r["y"] - b["y"] + r["h"]))
    return out


def test_lesson1_temperature_widget(lab, lesson1):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    cell = cell_with(lab, lesson1, "temperature_explorer(")
    box = lab.wait(lambda: lab.css(".widget-vbox", cell), 60, "the temperature widget")[0]
    lab.scroll_to(box)
    start = lab.wait(lambda: (s := temperature_state(lab, box))["T"] is not None and s, 30, "the first frame")
    assert len(start["bars"]) == 5 + 1, start            # five classes, then the entropy gauge
    assert abs(start["T"] - 1.0) < 1e-6 and abs(sum(start["bars"][:5]) - 100) < 0.1, start
    before_png = box.screenshot_as_png
    lab.shot("lesson1-widget-T1", box)
    parts = regions(lab, box, {"text": lab.css(".widget-text", box)[0],
                               "view": [h for h in lab.css(HTML, box) if "entropy" in h.text][0]})

    # Drag T to the right: softer, so the red bar shrinks and the entropy grows.
    handle = lab.css(".widget-slider .noUi-handle", box)[0]
    ActionChains(lab.d).click_and_hold(handle).move_by_offset(60, 0).release().perform()
    lab.wait(lambda: (s := temperature_state(lab, box))["T"] and s["T"] > 2, 30, "T to follow the drag")
    dragged = settled_state(lab, box, "the last frame of the drag")   # the slider sends values while dragging
    assert dragged["H"] > start["H"] and dragged["bars"][0] < start["bars"][0], (start, dragged)
    assert abs(float(dragged["readout"]) / dragged["T"] - 1) < 0.01, dragged   # the slider and the text agree
    after_png = box.screenshot_as_png
    lab.shot("lesson1-widget-dragged", box)
    before, after = crop_png(before_png), crop_png(after_png)
    assert changed(crop_png(before_png, parts["view"]), crop_png(after_png, parts["view"])) > 0.005, \
        "the bars and the gauge look the same in the screenshots before and after the drag"
    assert changed(crop_png(before_png, parts["text"]), crop_png(after_png, parts["text"])) == 0, \
        "the logits box changed in the screenshot, though only T moved"
    assert before.shape == after.shape

    # Key it: two presses of the right arrow on the focused handle raise T by two steps.
    handle.send_keys(Keys.ARROW_RIGHT)
    handle.send_keys(Keys.ARROW_RIGHT)
    lab.wait(lambda: temperature_state(lab, box)["T"] > dragged["T"] * 1.03, 30, "T to follow the keys")
    keyed = settled_state(lab, box, "the last frame of the keys")
    assert keyed["H"] >= dragged["H"] and keyed["bars"][0] <= dragged["bars"][0], (dragged, keyed)
    lab.shot("lesson1-widget-keyed", box)

    # Play sweeps T from where the slider is; pausing (the same button) freezes it.
    play_button = lab.css(".widget-play button", box)[0]
    play_button.click()
    playing = lab.wait(lambda: (s := temperature_state(lab, box))["T"] != keyed["T"] and s, 30, "Play to move T")
    lab.shot("lesson1-widget-playing", box)
    play_button.click()                                   # now the pause button
    lab.wait(lambda: "fa-play" in lab.css("i", play_button)[0].get_attribute("class"), 10, "the pause")
    paused = settled_state(lab, box, "T to stop after pause")
    time.sleep(1.0)                                       # about 8 frames of Play's 120 ms: T must not move
    assert temperature_state(lab, box)["T"] == paused["T"], "T kept changing after pause"
    lab.shot("lesson1-widget-paused", box)
    assert playing["T"] > keyed["T"], (
        f"Play jumped back to T = {playing['T']} instead of continuing from the slider's T = {keyed['T']} "
        "(kdlab/widgets.py: Play should start from the slider's value)")

    # Stop: T stays where Stop leaves it.
    lab.css(".widget-play button", box)[1].click()
    stopped = settled_state(lab, box, "T to settle after Stop")
    time.sleep(1.0)
    assert temperature_state(lab, box)["T"] == stopped["T"], "T kept changing after Stop"

    # Bad logits: a message, and the bars stay; good logits again: the message goes and the bars redraw.
    field = lab.css(".widget-text input", box)[0]

    def type_logits(text):               # select what is there and type over it, then Enter
        field.click()
        ActionChains(lab.d).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).perform()
        field.send_keys(text, Keys.ENTER)

    type_logits("5, two, 1")
    bad = lab.wait(lambda: "'two' is not a number" in (s := temperature_state(lab, box))["message"] and s, 30,
                   "the bad-logits message")
    assert bad["bars"] == stopped["bars"], "the bars changed though the logits could not be read"
    lab.shot("lesson1-widget-bad-logits", box)
    type_logits("3, 3, 0")
    good = lab.wait(lambda: (s := temperature_state(lab, box))["message"] == "" and len(s["bars"]) == 3 + 1 and s,
                    30, "the message to clear and three bars")
    assert abs(good["bars"][0] - good["bars"][1]) < 0.01, good      # a tie: two equal bars
    lab.shot("lesson1-widget-tie", box)


def test_lesson1_softmax_t_check(lab, lesson1):
    answer, check = answer_cells(lab, lesson1, "softmax_t")
    first = lab.output_text(check)
    assert "NotImplementedError" in first, first

    lab.set_source(answer, WRONG_SOFTMAX)
    lab.run_cell(answer)
    wrong = lab.run_cell(check)
    lab.scroll_to(check, "start")
    lab.shot("lesson1-softmax_t-wrong")
    assert "the same vector at T = 2" in wrong and "divide the logits by T" in wrong, wrong
    lines = [line for line in wrong.splitlines() if line.strip()]
    assert len(lines) <= 10, (f"a failed visible check shows {len(lines)} lines in the browser (at most 10 wanted; "
                              f"kdlab/checks.py):\n{wrong}")

    lab.set_source(answer, RIGHT_SOFTMAX)
    lab.run_cell(answer)
    right = lab.run_cell(check)
    lab.scroll_to(check, "start")
    lab.shot("lesson1-softmax_t-right")
    assert "softmax_t: all" in right and "checks passed" in right and "Error" not in right, right


def test_lesson1_validate(lab, lesson1):
    """nbgrader's Validate (its JupyterLab toolbar button): softmax_t passes now, entropy is still to do."""
    button = lab.css(".jp-NotebookPanel-toolbar .validate-button")
    assert button, "no Validate button in the notebook's toolbar (nbgrader's lab extension)"
    lab.save()   # Validate checks the file on disk: the learner saves first (or JupyterLab's autosave has)
    button[0].click()
    dialog = lab.dialog(240)
    lab.wait(lambda: "Validat" in lab.css(".jp-Dialog-header", dialog)[0].text
             and lab.css(".jp-Dialog-body", dialog)[0].text.strip(), 240, "Validate's results")
    lab.shot("lesson1-validate")
    title = lab.css(".jp-Dialog-header", dialog)[0].text
    body = lab.js("return arguments[0].innerText;", lab.css(".jp-Dialog-body", dialog)[0])
    assert title.strip() == "Validation Results", (title, body)
    assert "Check entropy" in body and "NotImplementedError" in body, body
    assert "Check softmax_t" not in body, f"softmax_t is right, but Validate reports its check:\n{body}"
    errors = [text for pre in lab.css(".jp-Dialog-body pre", dialog)
              if "CheckFailed" in (text := lab.js("return arguments[0].innerText;", pre))]
    assert errors, body
    for text in errors:
        lines = [line for line in text.splitlines() if line.strip()]
        assert len(lines) <= 10, (f"Validate shows a failed check in {len(lines)} lines (at most 10 wanted; "
                                  f"kdlab/checks.py):\n{text}")
    lab.css(".jp-Dialog .jp-mod-accept", None)[0].click()
    lab.wait(lambda: not lab.css(".jp-Dialog"), 10, "the dialog to close")


# ---------------------------------------------------------------------------------------------- lesson 10

def assert_opens_clean(lab, name):
    """A released notebook the kernel has started on is not marked as changed: its metadata is complete."""
    import time

    for _ in range(3):
        assert not lab.css(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty"), f"{name} opens marked as changed"
        time.sleep(0.5)


def test_lesson10_self_check_quiz(lab):
    from selenium.webdriver.common.keys import Keys

    from kdlab import quiz_bank

    cells = lab.open_notebook(LESSON10, "lesson10")
    assert_opens_clean(lab, "lesson 10")
    lab.run_cell(cell_with(lab, cells, "from kdlab.lessons import setup"))
    quiz_cell = cell_with(lab, cells, "quiz.quiz_widget(")
    lab.run_cell(quiz_cell)
    box = lab.wait(lambda: lab.css(".widget-vbox", quiz_cell), 60, "the quiz")[0]
    lab.scroll_to(box, "start")
    lab.shot("lesson10-quiz")

    questions = list(quiz_bank.SELF_CHECK)
    first = questions[0]
    wrong = next(letter for letter in first.letters if letter != first.answer)
    blocks = lab.css(":scope > .widget-vbox", box)
    assert len(blocks) == len(questions), (len(blocks), len(questions))

    def feedback(block):
        htmls = lab.css(HTML, block)
        return htmls[-1].text.strip() if htmls else ""

    def pick(block, letter):
        label = [el for el in lab.css(".widget-radio-box label", block) if el.text.strip().startswith(f"{letter}.")]
        assert label, f"no option {letter} in {block.text!r}"
        label[0].click()

    pick(blocks[0], wrong)
    text = lab.wait(lambda: feedback(blocks[0]), 30, "feedback on a wrong pick")
    assert f"{wrong} is not right" in text, text
    pick(blocks[0], first.answer)
    text = lab.wait(lambda: f"{first.answer} is right" in feedback(blocks[0]) and feedback(blocks[0]), 30,
                    "feedback on the right pick")
    score = lab.css(HTML, box)[0].text
    assert "0 of 1 answered right at the first try" in score, score
    lab.scroll_to(blocks[0], "start")
    lab.shot("lesson10-quiz-answered", blocks[0])

    numeric = next(i for i, q in enumerate(questions) if not hasattr(q, "letters"))
    field = lab.css("input[type=text]", blocks[numeric])[0]
    lab.scroll_to(field)
    field.send_keys(f"{questions[numeric].answer:.4g}", Keys.ENTER)
    text = lab.wait(lambda: feedback(blocks[numeric]), 30, "feedback on a number")
    assert "\u2714" in text, text
    lab.shot("lesson10-quiz-number", blocks[numeric])

    # Prompts are Markdown: *word* shows in italics, not with its asterisks.
    raw = [b.text.splitlines()[0] for b in blocks if re.search(r"(?<![\w*])\*[^*\s][^*]*\*", b.text.splitlines()[0])]
    assert not raw, f"quiz prompts show raw Markdown (kdlab/quiz.py): {raw}"
    emphasized = [i for i, q in enumerate(questions) if re.search(r"(?<![\w*])\*[^*\s][^*]*\*", q.prompt)]
    assert all(lab.css("em", blocks[i]) for i in emphasized), "a *word* in a quiz prompt is not in italics"


# ---------------------------------------------------------------------------------------------- lesson 9

def test_lesson9_mixture_widget(lab):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    cells = lab.open_notebook(LESSON9, "lesson9")
    assert_opens_clean(lab, "lesson 9")
    lab.run_cell(cell_with(lab, cells, "from kdlab.lessons import setup"))
    cell = cell_with(lab, cells, "mixture.explorer(")
    lab.run_cell(cell, 180)
    box = lab.wait(lambda: lab.css(".widget-vbox", cell), 60, "the mixture widget")[0]
    def image():
        return (lab.css(".widget-output img", box) or [None])[0]

    def src():
        img = image()
        return img is not None and img.get_attribute("src")

    lab.wait(src, 60, "the mixture plot")
    lab.scroll_to(box)
    sliders = lab.css(".widget-slider", box)
    assert len(sliders) == 2, [s.text for s in sliders]

    def readouts():
        return [lab.css(".widget-readout", s)[0].text for s in sliders]

    start_src, start_readouts, start_png = src(), readouts(), box.screenshot_as_png
    plot_box = regions(lab, box, {"plot": image()})["plot"]
    lab.shot("lesson9-mixture", box)

    # Drag the separation to the left (released: the plot redraws once).
    handle = lab.css(".noUi-handle", sliders[0])[0]
    ActionChains(lab.d).click_and_hold(handle).move_by_offset(-50, 0).release().perform()
    lab.wait(lambda: readouts()[0] != start_readouts[0] and src() and src() != start_src, 60,
             "the plot to redraw after d")
    moved_src, moved_png = src(), box.screenshot_as_png
    lab.shot("lesson9-mixture-d-moved", box)
    assert float(readouts()[0]) < float(start_readouts[0]) and readouts()[1] == start_readouts[1]
    before, after = crop_png(start_png, plot_box), crop_png(moved_png, plot_box)
    assert before.shape == after.shape, "the plot changed size when d moved"
    assert changed(before, after) > 0.01, "the mixture plot looks the same after moving d"
    # Fixed axes: the tick labels (a strip along the left and along the bottom) do not move.
    assert changed(before[:, :50], after[:, :50]) == 0, "the y axis rescaled when d moved"
    assert changed(before[-40:], after[-40:]) == 0, "the x axis changed when d moved"

    # Key the weight: the plot redraws again.
    w_handle = lab.css(".noUi-handle", sliders[1])[0]
    w_handle.click()
    w_handle.send_keys(Keys.ARROW_RIGHT)
    lab.wait(lambda: readouts()[1] != start_readouts[1] and src() and src() != moved_src, 60,
             "the plot to redraw after w")
    lab.shot("lesson9-mixture-w-moved", box)


# ---------------------------------------------------------------------------------------------- console

def test_console_has_no_severe_entries(lab):
    lab.collect_console()
    severe = [e for e in lab.console if e.get("level") == "SEVERE"]
    assert not severe, "SEVERE entries in the browser console:\n" + "\n".join(e["message"] for e in severe)
