"""The HTML report of an export: OUT/index.html, one page per study, thumbnails, cines."""

from .build import ReportSummary, build_report

__all__ = ["ReportSummary", "build_report"]
