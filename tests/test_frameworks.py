"""The middleware around the WSGI callables of Flask and Django, as the README promises."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from werkzeug.test import Client

from ioprofiler.wsgi import IOProfilerMiddleware
from tests.conftest import configure_django

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}
QUERY = "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :id"


def favorites(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(QUERY), {"id": 5773453}).scalar_one()


def test_flask_app_wsgi_app(sqlite_shards):
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)

    @app.route("/listing")
    def listing():
        return f"<html><body><p>{favorites(sqlite_shards['dbshard02'])} favorites</p></body></html>"

    app.wsgi_app = IOProfilerMiddleware(app.wsgi_app)
    html = Client(app).get("/listing?ioprofiler=1", environ_base=LOCAL).get_data(as_text=True)
    assert "<p>2 favorites</p>" in html
    assert "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = 5773453" in html
    assert html.index('<div id="ioprofiler-panel"') < html.index("</body>")


def test_django_wsgi_handler(sqlite_shards):
    pytest.importorskip("django")
    configure_django()  # ROOT_URLCONF is this module
    from django.core.wsgi import get_wsgi_application
    from django.http import HttpResponse

    def listing(request):
        count = favorites(sqlite_shards["dbshard03"])
        return HttpResponse(f"<html><body><p>{count} favorites</p></body></html>")

    global urlpatterns
    from django.urls import path

    urlpatterns = [path("listing", listing)]
    application = IOProfilerMiddleware(get_wsgi_application())
    response = Client(application).get("/listing?ioprofiler=text", environ_base=LOCAL)
    text = response.get_data(as_text=True)
    assert text.splitlines()[0] == "200 OK"
    assert "[dbshard03] " in text and "WHERE listing_id = 5773453" in text


urlpatterns: list = []
