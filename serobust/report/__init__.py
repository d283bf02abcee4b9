"""The study report: seaborn PNG figures, one HTML page (jinja2), and a self-contained single-file copy.

``write_report(out_dir, results, tables, examples)`` draws the figures and writes ``index.html``;
``render_single_file(folder)`` rebuilds ``index.single.html`` (every figure inlined) from a finished
report folder.
"""

from .html import SINGLE_FILE_NAME, ReportFolderError, render_single_file, write_report

__all__ = ["write_report", "render_single_file", "SINGLE_FILE_NAME", "ReportFolderError"]
