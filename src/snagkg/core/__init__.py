"""snagkg.core."""
