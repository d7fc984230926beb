"""The task registry: one package per task, each registering its config section, its interaction and
loss, and its task builder (``snagkg.core.registry.TASKS``) when imported. A new task is a new package
here plus one line below; nothing else in the library names a task."""
from __future__ import annotations

from snagkg.core import encoder as _encoder  # noqa: F401  (fills the readout registry the configs check)

# isort: off
from snagkg.tasks import completion  # noqa: F401  (first: the default task)
from snagkg.tasks import alignment  # noqa: F401
# isort: on
