"""Multi-modal entity alignment: GAT structure, CSLS interaction, ICL loss, iterative learning.
Importing the package registers the task (config section, task builder)."""
from snagkg.tasks.alignment import config, task  # noqa: F401
