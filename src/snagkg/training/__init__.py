"""snagkg.training."""
