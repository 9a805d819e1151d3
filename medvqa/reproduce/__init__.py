"""Reproduce a grid of configs over seeds: train and evaluate each row's runs, archive their light
files, and report mean +- std tables, ablations, plots and the README blocks that quote them.

One module per job: ``rows`` (the grid), ``runner`` (train, evaluate), ``results`` (what the runs
hold), ``archive``, ``tables``, ``plots``, ``report``, ``readme``, ``status`` and ``cli`` (``main``).
"""
from medvqa.reproduce.cli import main
from medvqa.reproduce.rows import Ablation, Grid, Row

__all__ = ["Ablation", "Grid", "Row", "main"]
