"""snagkg.runtime."""
