"""snagkg.cli."""
