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
