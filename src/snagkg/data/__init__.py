"""snagkg.data."""
