"""Plumbing for tests/course/test_browser.py: a JupyterLab server and headless Chromium driven through selenium.

:class:`LabServer` starts ``jupyter lab`` on 127.0.0.1 (a free port, a token, ``--no-browser``) over a
temporary root that holds copies of the learner notebooks; :func:`start_chromium` starts Debian's Chromium
through its chromedriver; :class:`Lab` drives JupyterLab 4 the way a learner does (menus, the keyboard, the
mouse) and waits explicitly for what it expects, never with long sleeps.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver", "chromedriver")

# JupyterLab user settings for the test's server: no news toast over the notebook, and every cell kept in the
# DOM (no windowing) so that selectors and screenshots see the whole notebook.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
}


def find_executable(candidates) -> str | None:
    for name in candidates:
        path = name if os.path.isabs(name) else shutil.which(name)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``jupyter lab`` on 127.0.0.1 over ``root``, with its own config, data, cache and workspace folders."""

    def __init__(self, root: Path, private: Path, env_extra: dict | None = None):
        self.root = Path(root)
        self.private = Path(private)
        self.port = free_port()
        self.token = os.urandom(16).hex()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        # ipykernel shows figures inline only when MPLBACKEND does not name another backend (.ci/run sets Agg).
        env.pop("MPLBACKEND", None)
        env.pop("NBGRADER_EXECUTION", None)
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "XDG_CACHE_HOME",
                     "IPYTHONDIR"):
            folder = self.private / name.lower()
            folder.mkdir(parents=True, exist_ok=True)
            env[name] = str(folder)
        env.update(env_extra or {})
        self.env = env
        settings = Path(env["JUPYTERLAB_SETTINGS_DIR"])
        for plugin, values in LAB_SETTINGS.items():
            path = settings / (plugin.replace(":", "/") + ".jupyterlab-settings")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.log_path = self.private / "jupyter-lab.log"
        self.proc = None

    def start(self, timeout: float = 90) -> LabServer:
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start ``jupyter lab`` without waiting for it (:meth:`wait_ready` waits)."""
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--ServerApp.open_browser=False"]
        self._log = open(self.log_path, "w")  # noqa: SIM115 - open while the server runs, closed by stop()
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 90) -> LabServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"jupyter lab did not answer within {timeout} s:\n{self.log_tail()}")

    def api(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
        return json.loads(text) if text else None

    def shutdown_kernels(self) -> None:
        """Shut every running session down, so one lesson's kernel never competes with the next's for the CPU."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


def start_chromium(chromium: str, driver: str, download_dir: Path | None = None):
    """Headless Chromium (1400 x 1000, no sandbox: CI runs as root), its browser console log recorded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--force-device-scale-factor=1", "--disable-extensions",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-renderer-backgrounding", "--disable-background-timer-throttling"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def crop_png(png: bytes, box=None):
    """A PNG as an RGB numpy array (matplotlib reads PNGs: no imaging library needed)."""
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(io.BytesIO(png), format="png")
    img = (img[..., :3] * 255).round().astype(np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        img = img[y0:y1, x0:x1]
    return img


def changed(before, after, threshold: int = 24) -> float:
    """The share of pixels whose colour moved by more than ``threshold`` (0-255) in some channel."""
    import numpy as np

    if before.shape != after.shape:
        return 1.0
    return float((np.abs(before.astype(int) - after.astype(int)).max(axis=-1) > threshold).mean())


PROMPT_DONE = r"^\[\d+\]:$"


class Lab:
    """JupyterLab 4 in the browser, driven the way a learner drives it.

    Every wait is explicit (:meth:`wait`, a WebDriverWait polling the DOM); every step can leave a
    screenshot in ``shots`` (:meth:`shot`); the browser's console log is collected in ``console``.
    """

    def __init__(self, driver, server: LabServer, shots: Path):
        from selenium.webdriver.common.by import By

        self.d = driver
        self.server = server
        self.shots = Path(shots)
        self.By = By
        self.console = []
        self._n = 0
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ basics
    def css(self, selector: str, within=None) -> list:
        return (within or self.d).find_elements(self.By.CSS_SELECTOR, selector)

    def wait(self, condition, timeout: float = 60, what: str = "a condition"):
        """Poll ``condition()`` until it returns something truthy; a TimeoutError with a screenshot otherwise."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                value = condition()
                if value:
                    return value
            except (StaleElementReferenceException, IndexError, KeyError) as err:
                last = err
            except WebDriverException as err:  # e.g. an element replaced between find and read
                last = err
            if time.monotonic() > deadline:
                path = self.shot(f"TIMEOUT-{what}")
                raise TimeoutError(f"waited {timeout:.0f} s for {what} (screenshot {path}); last error: {last!r}")
            time.sleep(0.1)

    def shot(self, name: str, element=None) -> Path:
        """A screenshot of the page (or of ``element``) as NN-name.png in the screenshot folder."""
        self._n += 1
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:80]
        path = self.shots / f"{self._n:02d}-{safe}.png"
        from selenium.common.exceptions import WebDriverException

        try:
            (element.screenshot(str(path)) if element is not None else self.d.save_screenshot(str(path)))
        except WebDriverException as err:  # a screenshot must never hide the real failure
            path = Path(f"{path} (not taken: {type(err).__name__})")
        with open(self.shots / "steps.txt", "a") as log:    # when each step was reached
            log.write(f"{time.monotonic() - self._t0:7.1f} s  {path.name}\n")
        self.collect_console()
        return path

    def collect_console(self) -> list:
        from selenium.common.exceptions import WebDriverException

        try:
            entries = self.d.get_log("browser")
        except WebDriverException:
            entries = []
        self.console.extend(entries)
        return entries

    def js(self, script: str, *args):
        return self.d.execute_script(script, *args)

    def scroll_to(self, element, block: str = "center"):
        self.js(f"arguments[0].scrollIntoView({{block: '{block}'}})", element)
        return element

    def rect(self, element) -> dict:
        return self.js("const r = arguments[0].getBoundingClientRect();"
                       "return {x: r.left, y: r.top, w: r.width, h: r.height};", element)

    # ------------------------------------------------------------------ notebooks
    def open_notebook(self, path: str, workspace: str, timeout: float = 180):
        """Open ``path`` (relative to the server's root) in a fresh workspace; wait until its kernel is idle."""
        self.leave_page()
        url = f"{self.server.url}/lab/workspaces/{workspace}/tree/{path}?token={self.server.token}"
        self.d.get(url)
        self.wait(lambda: self.css(".jp-NotebookPanel .jp-Notebook .jp-Cell"), timeout, "the notebook to load")
        self.wait(self.kernel_idle, timeout, "the kernel to start")
        return self.cells()

    def leave_page(self):
        """Save what is open, then stop the kernels, so the next lesson has the CPU to itself."""
        if self.css(".jp-NotebookPanel"):
            self.save()
        from selenium.common.exceptions import NoAlertPresentException

        self.d.get("about:blank")
        try:
            self.d.switch_to.alert.accept()   # a "leave the page?" prompt, if JupyterLab asks
        except NoAlertPresentException:
            pass
        self.server.shutdown_kernels()

    def save(self, timeout: float = 30):
        buttons = self.css(".jp-NotebookPanel-toolbar [data-command='docmanager:save']")
        if buttons:
            buttons[0].click()
            self.wait(lambda: not self.css(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty"), timeout,
                      "the notebook to be saved")

    def kernel_idle(self) -> bool:
        names = self.css(".jp-NotebookPanel-toolbar .jp-KernelName")
        status = self.css(".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator")
        return bool(names and status and "No Kernel" not in names[0].text
                    and status[0].get_attribute("data-status") == "idle")

    def cells(self) -> list:
        return self.css(".jp-NotebookPanel .jp-Notebook .jp-Cell")

    def prompt(self, cell) -> str:
        prompts = self.css(".jp-InputPrompt", cell)
        return prompts[0].text.strip() if prompts else ""

    def output_text(self, cell) -> str:
        areas = self.css(".jp-OutputArea", cell)
        return self.js("return arguments[0].innerText;", areas[0]) if areas else ""

    def menu(self, top: str, item: str):
        """Click ``top`` in the menu bar, then the entry whose label starts with ``item``."""
        self.wait(lambda: [m for m in self.css(".lm-MenuBar-item") if m.text.strip() == top],
                  10, f"the {top} menu")[0].click()
        entry = self.wait(lambda: [e for e in self.css(".lm-Menu-item")
                                   if e.is_displayed() and e.text.strip().startswith(item)], 10, f"{top} > {item}")
        entry[0].click()

    def run_cell(self, cell, timeout: float = 120):
        """Click into the cell's editor and press Shift+Enter; wait until its prompt shows an execution count."""
        import re

        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        before = self.prompt(cell)
        editor = self.css(".cm-content", cell)[0]
        self.scroll_to(editor)
        editor.click()
        ActionChains(self.d).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        self.wait(lambda: (re.match(PROMPT_DONE, self.prompt(cell)) and self.prompt(cell) != before),
                  timeout, "the cell to run")
        return self.output_text(cell)

    def set_source(self, cell, source: str):
        """Replace a cell's code by typing it, as a learner would (Ctrl+A, then the text line by line).

        The editor indents after a colon by itself: each new line's automatic indentation is selected
        (Shift+Home) and typed over, so the cell ends up exactly as ``source``.
        """
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        editor = self.css(".cm-content", cell)[0]
        self.scroll_to(editor)
        editor.click()
        ActionChains(self.d).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL) \
            .send_keys(Keys.DELETE).perform()
        for i, line in enumerate(source.rstrip("\n").split("\n")):
            chain = ActionChains(self.d)
            if i:
                chain.send_keys(Keys.ENTER).key_down(Keys.SHIFT).send_keys(Keys.HOME).key_up(Keys.SHIFT)
                if not line:
                    chain.send_keys(Keys.DELETE)
            if line:
                chain.send_keys(line)
            chain.perform()
        typed = self.wait(lambda: self.cell_source(cell) == source.rstrip("\n") and self.cell_source(cell),
                          10, "the typed code to appear in the cell")
        return typed

    def cell_source(self, cell) -> str:
        lines = self.css(".cm-content .cm-line", cell)
        return "\n".join(self.js("return arguments[0].textContent;", line) for line in lines)

    def dialog(self, timeout: float = 60):
        return self.wait(lambda: self.css(".jp-Dialog"), timeout, "a dialog")[0]
