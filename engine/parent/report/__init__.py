"""`hbt-tui report`: a grid of runs turned into the answer to the research question — tables,
figures, a verdict generated from the numbers, and everything needed to re-run it."""
