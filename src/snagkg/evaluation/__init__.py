"""snagkg.evaluation."""
