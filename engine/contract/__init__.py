"""What both processes share, standard library only (a test keeps it so)."""
