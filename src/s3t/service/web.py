"""The operator dashboard's routes: ``GET /`` (HTML page), ``GET /dashboard/data`` (its data as
JSON) and ``GET /dashboard/static/{name}`` (the page's CSS and JavaScript, shipped in the package).

The page is rendered server-side (jinja2, autoescaped) with inline SVG plots; its small script
refreshes it in place, runs ``GET /audit`` and sends ``POST /forget`` with the bearer token the
operator types (the token is never put into the page). Nothing is fetched from elsewhere: the
Content-Security-Policy allows this origin only.
"""

from __future__ import annotations

from importlib import resources
from typing import Callable

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from . import dashboard_schemas as ds
from .dashboard import ACCURACY_FILE, AccuracyCache, build
from .plots import accuracy_chart, capacity_chart
from .schemas import ErrorResponse, WorkerStatus

STATIC = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def add_dashboard(app: FastAPI, model, worker_status: Callable[[], WorkerStatus], pending: Callable[[], list[str]]) -> None:
    """Register the dashboard routes on ``app`` (``model``: the service's loaded S3T)."""
    cache = AccuracyCache(model.ws_.path / ACCURACY_FILE)
    env = Environment(loader=PackageLoader("s3t.service", "templates"), autoescape=select_autoescape(["html"]))
    static = {name: resources.files("s3t.service").joinpath("static", name).read_bytes() for name in STATIC}

    def data(accuracy: bool = True) -> ds.DashboardData:
        return build(model, worker_status(), pending(), cache, measure=accuracy)

    @app.get("/dashboard/data", response_model=ds.DashboardData, summary="Everything the operator dashboard shows",
             responses={422: {"model": ErrorResponse}, 500: {"model": ErrorResponse}})
    def dashboard_data(
        accuracy: bool = Query(True, description="Measure the served ensemble's validation accuracy if this manifest "
                                                 "version was not measured yet (cached per version)."),
    ) -> ds.DashboardData:
        """Grid of stage states per shard and sequence, ensemble summary, deletion log with hash-chain status,
        accuracy and remaining deletion capacity per manifest version."""
        return data(accuracy)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard_page() -> HTMLResponse:
        d = data()
        html = env.get_template("dashboard.html").render(
            d=d, accuracy_svg=Markup(accuracy_chart(d.history, d.summary.validation_accuracy)),
            capacity_svg=Markup(capacity_chart(d.history, d.capacity)),
        )
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    @app.get("/dashboard/static/{name}", include_in_schema=False)
    def dashboard_static(name: str) -> Response:
        if name not in static:
            raise HTTPException(404, f"no dashboard file {name!r}")
        return Response(static[name], media_type=STATIC[name], headers={"X-Content-Type-Options": "nosniff"})
