"""The web app: four pages, the JSON they read, and the guards in front of them.

Pages (``/``, ``/experiments/NAME``, ``.../trials/ID``, ``.../compare?a=ID&b=ID``) are small HTML
shells; their script reads ``/api/...`` and draws the tables and the Plotly charts. Every API
answer carries the experiment's change stamp as its ETag, so the pages poll it every few seconds
and a search's new epochs appear without a reload, while an unchanged experiment costs a few stat
calls. Only GET: nothing here writes, to the storage folder or anywhere.

Guards: without a token the app answers only requests addressed to a loopback name (a web page
elsewhere cannot reach it through DNS rebinding); with one, every request needs it (a bearer
header, or ``?token=`` once, which sets a cookie). Every answer forbids framing and keeps scripts,
styles and data to this origin (Plotly's WebGL charts need ``unsafe-eval``).
"""

from __future__ import annotations

import gzip
import hmac
import importlib.resources
import json
import secrets
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from tuner import results
from tuner.errors import EgotuneError
from tuner.ui import views
from tuner.ui._cache import ExperimentCache, Snapshot
from tuner.ui._dashboard import DashboardProbe
from tuner.ui._statistics import Statistics

__all__ = ["LOOPBACK_HOSTS", "TOKEN_COOKIE", "create_app", "read_ahead"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
TOKEN_COOKIE = "egotune_ui_token"  # noqa: S105 (the cookie's name)
_HERE = Path(__file__).resolve().parent
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_USER_ERRORS = (EgotuneError, ValueError, OSError)


class JSON(JSONResponse):
    """JSON that refuses NaN: every number reaches the page as a number or ``null``."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


def create_app(
    storage: Path,
    *,
    token: str | None = None,
    dashboard: str | None = None,
    poll_s: float = 2.0,
    statistics: Statistics | None = None,
    hosts: tuple[str, ...] = (),
) -> Starlette:
    """The app over ``storage``; ``token`` guards every request, ``dashboard`` is Ray's address.

    Without a token, requests must name a loopback host: one of :data:`LOOPBACK_HOSTS` or of
    ``hosts`` (the loopback address the server is bound to, e.g. ``127.0.0.2``)."""
    ui = _UI(storage, DashboardProbe(dashboard), statistics or Statistics(), poll_s)
    page, api = ui.page, ui.api
    routes = [
        Route("/", page("experiments.html")),
        Route("/experiments/{name}", page("experiment.html")),
        Route("/experiments/{name}/trials/{trial_id}", page("trial.html")),
        Route("/experiments/{name}/compare", page("compare.html")),
        Route("/api/experiments", ui.experiments),
        Route("/api/experiments/{name}", api(ui.trials)),
        Route("/api/experiments/{name}/curves", api(ui.curves)),
        Route("/api/experiments/{name}/pivot", api(ui.pivot)),
        Route("/api/experiments/{name}/importance", api(ui.importance)),
        Route("/api/experiments/{name}/parallel", api(ui.parallel)),
        Route("/api/experiments/{name}/pareto", api(ui.pareto)),
        Route("/api/experiments/{name}/timing", api(ui.timing)),
        Route("/api/experiments/{name}/trials/{trial_id}", api(ui.trial)),
        Route("/api/experiments/{name}/compare", api(ui.compare)),
        Route("/experiments/{name}/trials/{trial_id}/cam/{file}", ui.cam_strip),
        Route("/vendor/plotly.min.js", _plotly_js),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    middleware = [Middleware(BaseHTTPMiddleware, dispatch=_TokenGuard(token))]
    if token is None:
        allowed = [*LOOPBACK_HOSTS, *hosts]
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=allowed))
    # the user's errors answered here; any other one also reaches the server's log (Starlette)
    handlers = {kind: ui.failure for kind in (*_USER_ERRORS, HTTPException, Exception)}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.cache = ui.cache
    return app


def read_ahead(cache: ExperimentCache) -> None:
    """Read every experiment once, and load the figure helpers: the first page a user opens
    after the server starts then answers from memory."""
    from tuner.results import plot_curves  # noqa: F401 (matplotlib: a second's import on a slow CPU)

    for name in cache.names():
        cache.get(name)


class _UI:
    """The handlers, around one experiment cache."""

    def __init__(
        self, storage: Path, probe: DashboardProbe, statistics: Statistics, poll_s: float
    ) -> None:
        self.cache = ExperimentCache(storage)
        self.probe, self.statistics, self.poll_s = probe, statistics, poll_s
        self.templates = Jinja2Templates(directory=_HERE / "templates")
        self.boot = secrets.token_hex(4)  # a restarted server never answers 304 to old pages

    # -- pages ------------------------------------------------------------------------------

    def page(self, template: str) -> Callable[[Request], Response]:
        def render(request: Request) -> Response:
            name = request.path_params.get("name")
            status = 200 if name is None or self.cache.path_of(name) else 404
            return self.templates.TemplateResponse(
                request,
                template,
                {
                    "storage": str(self.cache.storage),
                    "dashboard": self.probe.reachable_url(),
                    "poll_ms": int(self.poll_s * 1000),
                    "name": name,
                    "trial_id": request.path_params.get("trial_id"),
                    "pair": [request.query_params.get("a", ""), request.query_params.get("b", "")],
                },
                status_code=status,
                headers=_SECURITY_HEADERS,
            )

        return render

    async def failure(self, request: Request, exc: Exception) -> Response:
        """A plain message for every error: a page or ``{"error": ...}``, never a traceback."""
        if isinstance(exc, HTTPException):
            status, message = exc.status_code, str(exc.detail)
        elif isinstance(exc, _USER_ERRORS):
            status, message = 400, str(exc)
        else:
            status, message = 500, f"internal error ({type(exc).__name__}); see the server's output"
        if request.url.path.startswith("/api/"):
            return JSON({"error": message}, status_code=status, headers=_SECURITY_HEADERS)
        context = {"storage": str(self.cache.storage), "message": message, "dashboard": None}
        return self.templates.TemplateResponse(
            request, "message.html", context, status_code=status, headers=_SECURITY_HEADERS
        )

    # -- JSON -------------------------------------------------------------------------------

    def experiments(self, request: Request) -> Response:
        storage = self.cache.storage
        rows = [self._row(name) for name in self.cache.names()]
        payload = {
            "storage": str(storage),
            "exists": storage.is_dir(),
            "experiments": rows,
            "stamp": "|".join(f"{r['name']}:{r['stamp']}" for r in rows),
        }
        return JSON(payload, headers={"Cache-Control": "no-store", **_SECURITY_HEADERS})

    def _row(self, name: str) -> dict[str, Any]:
        snapshot = self.cache.get(name)
        assert snapshot is not None
        base = {"name": name, "stamp": snapshot.stamp, "warnings": snapshot.warnings}
        if snapshot.experiment is None:
            return {**base, "error": snapshot.error, "state": "unreadable"}
        row = snapshot.derived.get("row")
        if row is None:
            row = views.experiment_row(snapshot.experiment, _updated(snapshot.path))
            snapshot.derived["row"] = row
        return {**base, **row, "error": None}

    def api(
        self, build: Callable[[Snapshot, Request], dict[str, Any]]
    ) -> Callable[[Request], Response]:
        """An endpoint answering ``build``'s payload for the experiment, by its change stamp.

        Plain functions: Starlette runs them in its thread pool, the event loop stays free.
        """

        def answer(request: Request) -> Response:
            name = request.path_params["name"]
            stamp = self.cache.stamp(name)
            if stamp is None:
                raise HTTPException(404, f"no experiment {name!r} in {self.cache.storage} (yet)")
            etag = f'"{stamp}-{self.boot}"'
            headers = {"ETag": etag, "Cache-Control": "no-cache", **_SECURITY_HEADERS}
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers=headers)
            snapshot = self.cache.get(name)
            if snapshot is None:
                raise HTTPException(404, f"no experiment {name!r} in {self.cache.storage}")
            if snapshot.experiment is None:
                raise HTTPException(422, f"{name}: cannot be read: {snapshot.error}")
            key = (request.url.path, str(request.query_params))
            if key not in snapshot.derived:
                snapshot.derived[key] = build(snapshot, request)
            payload = {"stamp": snapshot.stamp, "warnings": snapshot.warnings}
            return JSON({**payload, **snapshot.derived[key]}, headers=headers)

        return answer

    def trials(self, snapshot: Snapshot, request: Request) -> dict[str, Any]:
        return views.experiment_page(_experiment(snapshot), self.statistics)

    def curves(self, snapshot: Snapshot, request: Request) -> dict[str, Any]:
        experiment = _experiment(snapshot)
        return {"curves": views.curves(experiment, _names(request, "trials"))}

    def pivot(self, snapshot: Snapshot, request: Request) -> dict[str, Any]:
        experiment = _experiment(snapshot)
        rows, cols = _names(request, "rows"), _names(request, "cols")
        agg = request.query_params.get("agg", "mean")
        known = results.hyperparameter_columns(experiment.trials)
        unknown = [c for c in [*rows, *cols] if c not in known]
        if unknown:
            raise ValueError(f"no hyperparameter {', '.join(unknown)} in {experiment.name}")
        if experiment.finished.empty:
            return {"message": "no finished trial yet", "values": []}
        return views.pivot(experiment, rows, cols, agg, self.statistics)

    def importance(self, snapshot: Snapshot, request: Request) -> dict[str, Any]:
        return views.importance(_experiment(snapshot))

    def parallel(self, snapshot: Snapshot, request: Request) -> dict[str, Any]:
        return views.parallel(_experiment(snapshot))

    def pareto(self, snapshot: Snapshot, request: Request) -> dict[str, Any]:
        return views.pareto(_experiment(snapshot))

    def timing(self, snapshot: Snapshot, request: Request) -> dict[str, Any]:
        return views.timing(_experiment(snapshot), _names(request, "trials"))

    def trial(self, snapshot: Snapshot, request: Request) -> dict[str, Any]:
        trial_id = request.path_params["trial_id"]
        detail = views.trial_detail(_experiment(snapshot), trial_id, self.statistics)
        if detail is None:
            raise HTTPException(404, f"no trial {trial_id!r} in {snapshot.name} (yet)")
        return detail

    def compare(self, snapshot: Snapshot, request: Request) -> dict[str, Any]:
        first, second = request.query_params.get("a", ""), request.query_params.get("b", "")
        pair = views.comparison(_experiment(snapshot), first, second, self.statistics)
        if pair is None:
            raise HTTPException(
                404, f"compare: {snapshot.name} has no trials {first!r}, {second!r}"
            )
        return pair

    def cam_strip(self, request: Request) -> Response:
        """A CAM strip of a trial: only a file the statistics name for it is ever sent."""
        name, trial_id = request.path_params["name"], request.path_params["trial_id"]
        snapshot = self.cache.get(name)
        if snapshot is None or snapshot.experiment is None:
            raise HTTPException(404, f"no experiment {name!r}")
        found = self.statistics.trial(snapshot.experiment, trial_id)
        strips = {p.name: p for p in (found.cam_strips if found else [])}
        path = strips.get(request.path_params["file"])
        if path is None or not path.is_file():
            raise HTTPException(404, f"no CAM strip {request.path_params['file']!r} for {trial_id}")
        return FileResponse(path, media_type="image/png", headers=_SECURITY_HEADERS)


def _experiment(snapshot: Snapshot) -> results.Experiment:
    assert snapshot.experiment is not None  # api() answers unreadable experiments itself
    return snapshot.experiment


def _names(request: Request, key: str) -> list[str]:
    return [part for part in request.query_params.get(key, "").split(",") if part]


def _updated(path: Path) -> float:
    """When the trials table (else the folder) last changed, as ``results list`` says."""
    trials = path / results.TRIALS_FILE
    return (trials if trials.exists() else path).stat().st_mtime


@cache
def _plotly_bundle() -> bytes:
    source = importlib.resources.files("plotly") / "package_data" / "plotly.min.js"
    return gzip.compress(source.read_bytes(), compresslevel=6, mtime=0)


async def _plotly_js(request: Request) -> Response:
    """Plotly's browser bundle, from the installed ``plotly`` package: no CDN, works offline."""
    headers = {"Cache-Control": "public, max-age=86400", **_SECURITY_HEADERS}
    body = _plotly_bundle()
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
    else:
        body = gzip.decompress(body)
    return Response(body, media_type="text/javascript", headers=headers)


class _TokenGuard:
    """Lets a request through when no token is set or it carries the token; adds the headers."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    async def __call__(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if self.token is not None:
            offered = request.query_params.get("token")
            if offered is not None and self._matches(offered):
                query = {k: v for k, v in request.query_params.items() if k != "token"}
                # one leading slash: ``//host/...`` would be another site's address
                path = "/" + request.url.path.lstrip("/")
                target = path + (f"?{urlencode(query)}" if query else "")
                response: Response = RedirectResponse(target, status_code=303)
                response.set_cookie(TOKEN_COOKIE, offered, httponly=True, samesite="strict")
                return response
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not (self._matches(bearer) or self._matches(request.cookies.get(TOKEN_COOKIE))):
                return HTMLResponse(_LOCKED_PAGE, status_code=401, headers=_SECURITY_HEADERS)
        response = await call_next(request)
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    def _matches(self, offered: str | None) -> bool:
        assert self.token is not None
        return bool(offered) and hmac.compare_digest(str(offered).encode(), self.token.encode())


_LOCKED_PAGE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>egotune ui: token needed</title>"
    "</head><body><h1>This egotune ui needs its token</h1><p>Open the address that "
    "<code>egotune ui</code> printed when it started (it ends in <code>?token=...</code>), or "
    "send the token as <code>Authorization: Bearer TOKEN</code>.</p></body></html>"
)
