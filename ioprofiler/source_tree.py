"""``ioprofiler.integrations`` for Python run from inside a clone of the repository.

The integrations live in the repository's top-level ``integrations/`` folder, which setuptools
installs as ``ioprofiler.integrations`` (``package-dir`` in pyproject.toml). Python started in
the clone imports the clone's ``ioprofiler/`` folder ahead of any installed copy, and nothing
named ``integrations`` is inside that folder: an editable install's finder joins the two, a
plain ``pip install .`` leaves ``import ioprofiler.integrations`` failing. ``ioprofiler``
calls :func:`join_integrations` when it is imported, so both installs work from the clone::

    join_integrations(Path(ioprofiler.__file__).parent)
    import ioprofiler.integrations.sqlalchemy   # the clone's integrations/sqlalchemy.py
"""

from __future__ import annotations

import sys
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path

PACKAGE = "ioprofiler.integrations"


class IntegrationsFolder:
    """A finder for the one name ``ioprofiler.integrations``, in a clone's ``integrations/``.

    It is asked after Python's own finders: an installed copy's ``ioprofiler/integrations/``
    always comes first; the modules inside the package are found through its ``__path__``.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name != PACKAGE:
            return None
        return spec_from_file_location(
            name, self.folder / "__init__.py", submodule_search_locations=[str(self.folder)]
        )


def join_integrations(package_folder: Path) -> None:
    """Make ``ioprofiler.integrations`` importable when ``package_folder`` (the ``ioprofiler``
    folder being imported) is a clone's: ``integrations/`` beside it, nothing of that name in
    it. An installed ``ioprofiler`` has its integrations inside and is left as it is."""
    folder = package_folder.parent / "integrations"
    if (package_folder / "integrations").is_dir() or not (folder / "__init__.py").is_file():
        return
    if not any(getattr(finder, "folder", None) == folder for finder in sys.meta_path):
        sys.meta_path.append(IntegrationsFolder(folder))
