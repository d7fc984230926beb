"""Modality feature tables and the ``snagkg features`` commands that build them."""
# ``tables`` reads with ``datasets.lines`` while ``datasets.graph`` imports ``tables``:
# load ``datasets`` first so that importing ``snagkg.features.*`` on its own works.
from .. import datasets as _datasets  # noqa: F401,E402
