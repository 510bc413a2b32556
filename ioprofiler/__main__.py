"""``python -m ioprofiler``: the ``ioprofiler`` command."""

from __future__ import annotations

import sys

from ioprofiler.cli import main

sys.exit(main())
