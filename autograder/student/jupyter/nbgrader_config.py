"""The student's nbgrader configuration (installed into the environment's etc/jupyter/): Validate counts
passed and failed test cells and shortens each failure report (ptlab/validate.py)."""

try:
    import ptlab.validate

    ptlab.validate.install()
except ImportError:  # ptlab not importable from the Jupyter server's Python: nbgrader's own dialog
    pass
