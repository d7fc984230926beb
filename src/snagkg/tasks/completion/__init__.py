"""Multi-modal knowledge graph completion: RotatE interaction, NSSA loss, negative samplers, model,
filtered ranking and prediction. Importing the package registers the task (config section, scorers,
task builder)."""
from snagkg.tasks.completion import config, scorers, task  # noqa: F401
