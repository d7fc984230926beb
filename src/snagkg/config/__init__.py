"""snagkg.config."""
