"""Encoder study grids: heads x visual encoders x datasets x seeds, run cell by cell, resumable, then reported."""
from medvqa.grid.runner import CELL_FILE, Outcome, cell_state, run_cell
from medvqa.grid.spec import CellPlan, Grid, load_grid

__all__ = ["CELL_FILE", "CellPlan", "Grid", "Outcome", "cell_state", "load_grid", "run_cell"]
