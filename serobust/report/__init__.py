"""The study report: seaborn PNG figures and one self-contained HTML page (jinja2)."""

from .html import write_report

__all__ = ["write_report"]
