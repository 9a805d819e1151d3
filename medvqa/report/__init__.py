"""The encoder study's report: tables in the paper's layout, statistics, figures and one HTML page.

``write_report(cells, out_dir)`` reads evaluated run directories, one ``Cell`` (dataset, head,
encoder, runs of its seeds) per table row and dataset, and writes everything into ``out_dir``.
"""
from medvqa.report.study import Cell, write_report

__all__ = ["Cell", "write_report"]
