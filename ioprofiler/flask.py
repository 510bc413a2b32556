"""``?ioprofiler=1`` for Flask, configured from ``app.config``.

>>> from ioprofiler.flask import IOProfiler
>>> app = Flask(__name__)
>>> app.config["IOPROFILER_ALLOW"] = ioprofiler.access.networks("10.0.0.0/8")
>>> IOProfiler(app)

or, with an application factory:

>>> profiler = IOProfiler()
>>> def create_app():
...     app = Flask(__name__)
...     profiler.init_app(app)
...     return app

It wraps ``app.wsgi_app`` in :class:`ioprofiler.wsgi.IOProfilerMiddleware`, so ``app``
stays a Flask app (``flask run`` finds it). Every option of the middleware is read from
``IOPROFILER_<OPTION>`` (``IOPROFILER_PARAM``, ``IOPROFILER_RECORD``, …); keyword arguments
given here win over the config. Sinks see the matched rule (``/listing/<int:id>``) as route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ioprofiler.profiling import options_from
from ioprofiler.wsgi import IOProfilerMiddleware

if TYPE_CHECKING:
    from flask import Flask

PREFIX = "IOPROFILER_"


class IOProfiler:
    """The Flask extension: ``IOProfiler(app)``, or ``IOProfiler()`` then ``init_app(app)``."""

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> IOProfilerMiddleware:
        """Wrap ``app.wsgi_app``; the middleware is also ``app.extensions["ioprofiler"]``."""
        if not hasattr(app, "wsgi_app") or not hasattr(app, "config"):
            raise TypeError(f"IOProfiler takes a Flask application, not {app!r}")
        if isinstance(app.extensions.get("ioprofiler"), IOProfilerMiddleware):
            raise RuntimeError("ioprofiler is already set up on this Flask app")
        options = options_from(app.config, PREFIX, "Flask app.config") | self.options
        middleware = IOProfilerMiddleware(app.wsgi_app, **options)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions["ioprofiler"] = middleware
        return middleware
