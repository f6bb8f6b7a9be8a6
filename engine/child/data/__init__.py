"""Readers for the benchmark layouts (LAReQA, MIRACL) and training pairs."""
