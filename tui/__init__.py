"""The Textual interface of hbt-tui. Never imports torch, transformers, faiss or datasets."""
