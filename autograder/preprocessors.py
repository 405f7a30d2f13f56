"""nbgrader preprocessors of the course: library noise costs no points, hidden tests stay hidden."""

import re

from nbgrader.preprocessors import NbGraderPreprocessor

# stderr lines that libraries print and a student cannot act on. nbgrader gives a test cell with any
# stderr output zero points, so these are removed before grading.
NOISE = re.compile(
    r"Failed to load CPU gemm_4bit_forward"  # bitsandbytes' CPU backend, on import
    r"|\d+%\|.*\|"  # tqdm progress bar
    r"|it/s\]|s/it\]"  # tqdm rate
    r"|site-packages.*\d+: \w*Warning:"  # a warning raised inside a library
)
WARNING_SOURCE = re.compile(r"^\s+\S")  # the indented source line python prints under a warning


def strip_noise(text: str) -> str:
    """Remove library noise lines (and the source line under a library warning) from stderr text."""
    kept: list[str] = []
    after_warning = False
    for line in re.split(r"(?<=\n)|\r", text):
        if after_warning and WARNING_SOURCE.match(line):
            after_warning = False
            continue
        after_warning = bool(NOISE.search(line)) and "Warning:" in line
        if NOISE.search(line) or not line.strip():
            continue
        kept.append(line)
    return "".join(kept)


class StripLibraryNoise(NbGraderPreprocessor):
    """Drop library noise from stderr streams; a stream left empty is removed."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        outputs = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                output["text"] = strip_noise(output.get("text", ""))
                if not output["text"].strip():
                    continue
            outputs.append(output)
        cell.outputs = outputs
        return cell, resources


HIDDEN = re.compile(r"[ \t]*#+\s*BEGIN HIDDEN TESTS.*?#+\s*END HIDDEN TESTS[^\n]*\n?", re.S)


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback: remove hidden-test code and shorten tracebacks of cells that held hidden tests.

    The autograded notebook holds the hidden tests (restored from the source before running), and a
    failing hidden assert would print its own source line in the traceback.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or "BEGIN HIDDEN TESTS" not in cell.source:
            return cell, resources
        cell.source = HIDDEN.sub("# (hidden tests run here)\n", cell.source)
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources


# The standard cell the release adds under each lab's title (one text for every lab, kept here).
HOW_TO_WORK_ID = "ptlab-how-to-work"
HOW_TO_WORK = """\
**Working in this notebook.** Run the cells from the top with Shift+Enter. Each exercise is a cell
that says `# YOUR CODE HERE`: replace the `raise NotImplementedError()` with your code, run the cell,
then run the test cell under it; a failing test says in words what is wrong.

- **Run All stops at the first exercise you have not finished**: the cell under it calls your function,
  which raises `NotImplementedError`, and no cell below runs. That is expected while you work.
- **To check one exercise at a time**, run the cells above it (set-up cells and earlier exercises;
  an unfinished earlier exercise only raises its own error and can be skipped), then the exercise
  and its test cell. A test cell needs only its own exercise: it builds its inputs itself.
- **Run All runs the full experiments** (training runs, evaluations, plots): measured on 2 CPU cores,
  lab 01 took about 10 minutes and lab 03 about 25. **Fast mode** shrinks them to about a minute per lab, as
  the grader runs them: start JupyterLab with `PTLAB_FAST=1 jupyter lab` (Windows PowerShell:
  `$env:PTLAB_FAST=1; jupyter lab`), or put `%env PTLAB_FAST=1` in a new first cell, then Restart and
  Run All; or run the lab headless in a terminal with `ptlab run NN_topic`. The set-up cell's `FAST`
  says which mode is on.
- **Before you submit**, restart the kernel and Run All (Kernel menu; fast mode is enough) and press
  **Validate** in the toolbar: every test should pass. The grader runs the same tests and a few hidden
  ones on new inputs, in fast mode, always on the course's own model, whatever `MODEL` says.
"""


class DeliverCourse(NbGraderPreprocessor):
    """Release: write the configured course address (`autograder/course.toml`) into the badge and the
    install line, and add the standard "working in this notebook" cell under the title."""

    def preprocess(self, nb, resources):
        from nbformat.v4 import new_markdown_cell

        from autograder.release import load_course

        course = load_course()
        for cell in nb.cells:
            cell.source = course.fill(cell.source)
        if not any(c.get("id") == HOW_TO_WORK_ID for c in nb.cells):
            first_markdown = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
            nb.cells.insert(first_markdown + 1, new_markdown_cell(HOW_TO_WORK, id=HOW_TO_WORK_ID))
        return nb, resources


# A top-level assignment of a track setting: `MODEL = "..."  # comment`.
def _setting(name: str) -> re.Pattern:
    return re.compile(rf"^{name}\s*=.*$", re.M)


SETTINGS = ("MODEL", "DATA", "PREFS", "PREF_DATA", "PREF_SPLIT")  # the set-up cells' track settings


def course_settings(source) -> dict[str, str]:
    """Setting name -> its assignment line in the course's source notebook `source` (first occurrence)."""
    lines: dict[str, str] = {}
    for cell in source.cells:
        for name in SETTINGS:
            match = _setting(name).search(cell.source) if cell.cell_type == "code" else None
            if match and name not in lines:
                lines[name] = match.group(0)
    return lines


def reset_settings(nb, lines: dict[str, str]):
    """Replace each top-level assignment of a setting in `nb`'s code cells by the course's line (in place)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for name, line in lines.items():
            cell.source = _setting(name).sub(lambda _m, line=line: line, cell.source)
    return nb


class UseCourseModel(NbGraderPreprocessor):
    """Autograde: grade on the course's own model and data, whatever the submission sets.

    A Colab learner sets `MODEL` (and in some labs `DATA`, `PREFS`, `PREF_DATA`) to a Hub id; the grader
    has no network. Each top-level `NAME = ...` line of these settings is replaced by the source
    notebook's own line (`solutions/LAB/LAB.ipynb` of the course root being graded), so the learner
    changes one line and is still graded on the offline course model.
    """

    def source_lines(self, resources) -> dict[str, str]:
        """Setting name -> its assignment line in the source notebook of the lab being graded."""
        import os

        import nbformat

        info = resources.get("nbgrader", {})
        root = os.environ.get("PTLAB_COURSE_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.path.join(root, "solutions", info.get("assignment", ""), f"{info.get('notebook', '')}.ipynb")
        if not os.path.exists(path):
            return {}
        return course_settings(nbformat.read(path, as_version=4))

    def preprocess(self, nb, resources):
        return reset_settings(nb, self.source_lines(resources)), resources
