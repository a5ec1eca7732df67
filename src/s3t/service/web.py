"""The operator dashboard's routes: ``GET /`` (the page's shell, open), ``GET /dashboard/view``
(the page's live part as HTML) and ``GET /dashboard/data`` (its data as JSON), both behind the
read token, and ``GET /dashboard/static/{name}`` (the page's CSS and JavaScript, in the package).

The shell names nobody: no grid, no log, no workspace path. Its script takes the read token from
a ``#token=…`` URL fragment (never sent to the server or written to its logs; removed from the
address bar and history at once) or from the operator typing it, keeps it in the tab's
``sessionStorage`` and fetches ``/dashboard/view`` with ``Authorization: Bearer``. The view is
rendered server-side (jinja2, autoescaped) with inline SVG plots. The script also runs
``GET /audit`` (read token) and sends ``POST /forget`` with the forget token the operator types
(never stored). Nothing is fetched from elsewhere: the Content-Security-Policy allows this origin only.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Callable

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from . import dashboard_schemas as ds
from .dashboard import ACCURACY_FILE, AccuracyCache, build
from .plots import accuracy_chart, capacity_chart
from .schemas import WorkerStatus

STATIC = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def add_dashboard(app: FastAPI, model, worker_status: Callable[[], WorkerStatus], pending: Callable[[], list[str]],
                  reader: Any, errors: dict) -> None:
    """Register the dashboard routes on ``app`` (``model``: the service's loaded S3T; ``reader``:
    the ``Depends`` that admits a read or forget token; ``errors``: the error responses a read documents)."""
    cache = AccuracyCache(model.ws_.path / ACCURACY_FILE)
    env = Environment(loader=PackageLoader("s3t.service", "templates"), autoescape=select_autoescape(["html"]))
    static = {name: resources.files("s3t.service").joinpath("static", name).read_bytes() for name in STATIC}
    shell = env.get_template("dashboard.html").render()

    def data(accuracy: bool = True) -> ds.DashboardData:
        return build(model, worker_status(), pending(), cache, measure=accuracy)

    @app.get("/dashboard/data", response_model=ds.DashboardData, dependencies=[reader], operation_id="dashboard_data",
             summary="Everything the operator dashboard shows (read token)",
             responses=errors)
    def dashboard_data(
        accuracy: bool = Query(True, description="Measure the served ensemble's validation accuracy if this manifest "
                                                 "version was not measured yet (cached per version)."),
    ) -> ds.DashboardData:
        """Grid of stage states per shard and sequence, ensemble summary, deletion log with hash-chain status,
        accuracy and remaining deletion capacity per manifest version."""
        return data(accuracy)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard_page() -> HTMLResponse:
        return HTMLResponse(shell, headers=SECURITY_HEADERS)

    @app.get("/dashboard/view", response_class=HTMLResponse, include_in_schema=False, dependencies=[reader])
    def dashboard_view() -> HTMLResponse:
        d = data()
        html = env.get_template("dashboard_live.html").render(
            d=d, accuracy_svg=Markup(accuracy_chart(d.history, d.summary.validation_accuracy)),
            capacity_svg=Markup(capacity_chart(d.history, d.capacity)),
        )
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    @app.get("/dashboard/static/{name}", include_in_schema=False)
    def dashboard_static(name: str) -> Response:
        if name not in static:
            raise HTTPException(404, f"no dashboard file {name!r}")
        return Response(static[name], media_type=STATIC[name], headers={"X-Content-Type-Options": "nosniff"})
