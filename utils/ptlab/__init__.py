"""ptlab: the helper library of the post-training labs.

Infrastructure only, never an exercise's solution: environment and grading switches (`ptlab.env`),
readable test helpers (`ptlab.checks`), model loading (`ptlab.models`), the synthetic world and its
data sets (`ptlab.tinyworld`, `ptlab.data`), plots (`ptlab.plots`) and one module per lab where the
lab needs support code that is not itself graded.
"""

__version__ = "0.1.0"
