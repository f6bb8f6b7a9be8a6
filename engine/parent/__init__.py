"""The parent side: runner, index, comparisons, reports and the headless commands. Never
imports torch, transformers, faiss or datasets, nor anything in engine.child (a test keeps it so)."""
