"""A real browser: JupyterLab on 127.0.0.1 with a token, driven by headless Chromium through Playwright.

Every solution notebook runs with Run All, with MODEL set to the Hub-format twin of the model it suggests
(the Hub track, tests/test_hub_track.py), and must finish with no error output and no unexecuted code
cell; a released notebook stops at its first unfinished exercise (as its "Working in this notebook"
cell says), and a test cell shows a readable message for a wrong answer.

Needs Debian's chromium (`apt-get install -y chromium`; `.ci/run` installs it) and the `playwright`
package; Playwright's own browser download is not used. Skips with the reason when either is missing.
Run alone: `python -m pytest -q -m browser tests/test_browser.py`.
"""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from test_hub_track import twin_of  # the Hub track's rule: which twin a lab runs on

from autograder import lab_names
from ptlab import runner

ROOT = Path(__file__).resolve().parent.parent
# /usr/bin/chromium is a wrapper script that misbehaves in root containers; the binary itself works.
CHROMIUM = os.environ.get("PTLAB_CHROMIUM", "/usr/lib/chromium/chromium")
RUN_TIMEOUT_S = 900  # one notebook, fast mode, on a busy 2-core machine

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set PTLAB_CHROMIUM)",
                allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (in the dev extra)")

# JavaScript run in the page: the notebook's state as the frontend's model holds it.
STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.sessionContext || !panel.content || !panel.content.model) { return null; }
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = [];
  for (const cell of panel.content.model.cells) {
    if (cell.type !== 'code') { continue; }
    const outputs = cell.outputs.toJSON();
    cells.push({count: cell.executionCount, source: cell.sharedModel.getSource().slice(0, 80),
                errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue)});
  }
  return {status: kernel ? kernel.status : 'none', cells: cells};
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory, request):
    """JupyterLab serving a scratch copy of solutions/ and labs/ (nothing is written to the repository), in
    which each solution notebook's MODEL names the Hub twin of the flavour it suggests (tests/test_hub_track.py)."""
    work = tmp_path_factory.mktemp("browser")
    for folder in ("solutions", "labs"):
        shutil.copytree(ROOT / folder, work / folder)
    for lab in lab_names():
        path = work / "solutions" / lab / f"{lab}.ipynb"
        nb = nbformat.read(path, as_version=4)
        nbformat.write(runner.set_model(nb, str(twin_of(lab, request))), path)
    # Render every cell (no virtual scrolling), so the page holds every output the test reads.
    settings = work / ".settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PTLAB_FAST": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "utils"), str(ROOT)]),
           "JUPYTER_CONFIG_DIR": str(work / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(work / ".runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(work / ".workspaces"),
           "JUPYTERLAB_SETTINGS_DIR": str(work / ".settings")}
    log = open(work / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.news_url=None", "--allow-root", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(1)
    else:
        server.kill()
        pytest.fail(f"JupyterLab did not start:\n{(work / 'server.log').read_text()[-3000:]}")
    if server.poll() is not None:
        pytest.fail(f"JupyterLab exited:\n{(work / 'server.log').read_text()[-3000:]}")
    yield url, token
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


def _open(browser, lab_server, path: str):
    url, token = lab_server
    page = browser.new_page()
    page.goto(f"{url}/lab/tree/{path}?token={token}&reset")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext"
                           " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                           " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                           " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                           timeout=120_000)
    return page


def _output_text(page, code_index: int) -> str:
    """The text rendered under the `code_index`-th code cell, scrolled into view as a student sees it."""
    cell = page.locator(".jp-Notebook .jp-CodeCell").nth(code_index)
    cell.scroll_into_view_if_needed()
    return cell.locator(".jp-OutputArea").inner_text()


def _run_all_and_wait(page) -> dict:
    """Run All from the frontend; wait until the kernel is idle and no cell is queued or running."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    time.sleep(2)
    while time.monotonic() < deadline:
        state = page.evaluate(STATE_JS)
        busy = page.locator(".jp-InputPrompt", has_text="[*]").count()
        if state and state["status"] == "idle" and busy == 0:
            time.sleep(1)  # the last outputs may still be arriving
            if page.evaluate(STATE_JS)["status"] == "idle" and page.locator(".jp-InputPrompt", has_text="[*]").count() == 0:
                return page.evaluate(STATE_JS)
        time.sleep(2)
    pytest.fail(f"Run All did not finish in {RUN_TIMEOUT_S} s")


@pytest.mark.parametrize("lab", lab_names())
def test_solution_notebook_runs_all_in_the_browser_on_its_hub_model_without_errors(lab, lab_server, browser):
    """Run All in JupyterLab, with MODEL = the Hub twin the lab suggests: the frontend and the Hub code path
    in one run (tests/test_hub_track.py runs the same headless where no browser is available)."""
    page = _open(browser, lab_server, f"solutions/{lab}/{lab}.ipynb")
    try:
        state = _run_all_and_wait(page)
        errors = [f"cell {i} ({c['source']!r}): {e}" for i, c in enumerate(state["cells"]) for e in c["errors"]]
        assert not errors, f"{lab}: error output in the browser: {errors}"
        unexecuted = [f"cell {i} ({c['source']!r})" for i, c in enumerate(state["cells"]) if not c["count"]]
        assert not unexecuted, f"{lab}: cells never executed: {unexecuted}"
        # The rendered page shows no traceback either.
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                            has_text="Traceback").count() == 0
    finally:
        page.close()


def test_released_notebook_stops_at_the_first_exercise_and_a_test_shows_a_readable_message(lab_server, browser):
    lab = "00_orientation"
    page = _open(browser, lab_server, f"labs/{lab}/{lab}.ipynb")
    try:
        state = _run_all_and_wait(page)
        cells = state["cells"]
        first = next(i for i, c in enumerate(cells) if c["errors"])
        # The unfinished exercise defines its function; the cell under it calls it and raises.
        assert cells[first - 1]["source"].startswith("def next_token_probs"), cells[first - 1]["source"]
        assert cells[first]["errors"][0].startswith("NotImplementedError"), cells[first]["errors"]
        assert all(not c["count"] for c in cells[first + 1:]), "Run All should stop at the first unfinished exercise"
        shown = _output_text(page, first)
        assert "NotImplementedError" in shown, f"the error is not rendered under the cell:\n{shown}"

        # A plausible wrong answer (the probabilities of every position, not only the last one): run the
        # exercise, then its test cell, from the page; the test's message must be readable on screen.
        wrong = ("def next_token_probs(logits, temperature=1.0):\n"
                 "    return torch.softmax(logits / temperature, dim=-1)\n")
        page.evaluate("""([index, source]) => {
          const panel = window.jupyterapp.shell.currentWidget;
          const code = [...panel.content.widgets].filter(w => w.model.type === 'code');
          code[index].model.sharedModel.setSource(source);
          panel.content.activeCellIndex = panel.content.widgets.indexOf(code[index]);
          return window.jupyterapp.commands.execute('notebook:run-cell-and-select-next');
        }""", [first - 1, wrong])
        test_cell = next(i for i, c in enumerate(cells) if i > first and c["source"].startswith('"""next_token_probs'))
        page.evaluate("""(index) => {
          const panel = window.jupyterapp.shell.currentWidget;
          const code = [...panel.content.widgets].filter(w => w.model.type === 'code');
          panel.content.activeCellIndex = panel.content.widgets.indexOf(code[index]);
          return window.jupyterapp.commands.execute('notebook:run-cell');
        }""", test_cell)
        page.wait_for_function("(i) => { const p = window.jupyterapp.shell.currentWidget;"
                               " const code = [...p.content.widgets].filter(w => w.model.type === 'code');"
                               " return code[i].model.outputs.length > 0; }", arg=test_cell, timeout=120_000)
        output = _output_text(page, test_cell)
        assert "expected shape (2, 16), got (2, 5, 16)" in output, f"the test cell's message is not on screen:\n{output}"
    finally:
        page.close()
