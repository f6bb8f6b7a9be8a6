"""Datasets: the catalogue (stdlib only), readers for the LAReQA and MIRACL layouts, and
training pairs. Only `catalog` may be imported by the UI."""
