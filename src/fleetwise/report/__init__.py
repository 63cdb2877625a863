"""Reports: matplotlib figures and self-contained HTML pages (figures embedded, no network needed to view)."""

from fleetwise.report.figures import save_figure
from fleetwise.report.html import html_page

__all__ = ["html_page", "save_figure"]
