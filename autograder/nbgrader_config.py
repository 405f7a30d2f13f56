"""nbgrader configuration for the course (instructor-only).

`solutions/` is nbgrader's source directory and `labs/` its release directory; the course root is the
repository unless `PTLAB_COURSE_ROOT` points elsewhere (the class grader gives every student a private
root, so no two students share a gradebook or a folder).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:  # so nbgrader can import autograder.feedback below
    sys.path.insert(0, REPO)

c = get_config()  # noqa: F821 - injected by traitlets when this file is loaded

c.CourseDirectory.root = os.environ.get("PTLAB_COURSE_ROOT", REPO)
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*"]

# Release: the course address from autograder/course.toml goes into the badge and the install line,
# and a standard "working in this notebook" cell goes under the title (autograder/preprocessors.py);
# then nbgrader's own release steps.
c.GenerateAssignment.preprocessors = [
    "autograder.preprocessors.DeliverCourse",
    "nbgrader.preprocessors.IncludeHeaderFooter",
    "nbgrader.preprocessors.InstantiateTests",
    "nbgrader.preprocessors.LockCells",
    "nbgrader.preprocessors.ClearSolutions",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.CheckCellMetadata",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.SaveCells",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbgrader.preprocessors.ClearMarkScheme",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Release: what a student sees in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Autograde: a cell may run for 3 minutes (the slowest fast-mode training cell takes ~30 s on 2 cores);
# a cell that runs longer is interrupted and scores 0, and the rest of the notebook still runs.
c.Execute.timeout = int(os.environ.get("PTLAB_CELL_TIMEOUT", "180"))
c.Execute.startup_timeout = 120
c.Execute.interrupt_on_timeout = True
c.Execute.execute_retries = 0

# A student who deletes a graded cell gets it back (and its points counted by its output).
c.OverwriteCells.add_missing_cells = True

# Library noise on stderr must not cost points (nbgrader gives 0 to a test cell with any stderr):
# bitsandbytes' CPU notice, tqdm bars and warnings raised inside libraries are removed right after
# execution (autograder/preprocessors.py); a student's own stderr still counts.
# Grading always runs the course's offline model: a submission's MODEL / DATA lines are reset to the
# source notebook's before execution (autograder.preprocessors.UseCourseModel).
c.Autograde.autograde_preprocessors = [
    "autograder.preprocessors.UseCourseModel",
    "nbgrader.preprocessors.Execute",
    "autograder.preprocessors.StripLibraryNoise",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Long outputs are cut so a print loop cannot blow up the gradebook.
c.LimitOutput.max_lines = 500
c.LimitOutput.max_traceback = 100

# Feedback never shows hidden tests: their code is removed and tracebacks are shortened.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "autograder.preprocessors.HideHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

