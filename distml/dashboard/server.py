"""The dashboard's HTTP server: a static page, a JSON API and Prometheus ``/metrics``, served by
the scheduler's process on the scheduler's interface.

Every request must carry the cluster's dashboard token (``?token=``, then a cookie, or an
``Authorization: Bearer`` header for scrapers) or it is refused with 403. Handlers read only the
latest snapshot (:mod:`distml.dashboard.snapshot`); a background task takes snapshots on the
event loop every 0.5 s while someone is looking (and not at all otherwise), and spaces them out
further if a snapshot would take more than 2% of the loop's time, so a busy cluster with a page
open keeps scheduling at full speed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, HTTPError, RequestHandler

from distml.comm import parse_address
from distml.dashboard import metrics, snapshot
from distml.dashboard.access import dashboard_token, dashboard_url, token_matches

if TYPE_CHECKING:
    from distml.scheduler.server import Scheduler

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8"}
#: Seconds between snapshots while someone looks at the dashboard.
ACTIVE_INTERVAL = 0.5
#: Seconds after the last request before snapshots stop.
IDLE_AFTER = 30.0
#: Most of the event loop's time that snapshots may take, and the longest wait between them.
MAX_LOOP_SHARE = 0.02
MAX_INTERVAL = 10.0
#: A request finding a snapshot older than this waits (up to ``FRESH_WAIT`` s) for a new one.
STALE_AFTER = 3.0
FRESH_WAIT = 2.0


class Dashboard:
    """Serves one scheduler's dashboard; ``await start()``, then ``stop()``."""

    def __init__(self, scheduler: "Scheduler"):
        self.scheduler = scheduler
        config = scheduler.config
        self.token = dashboard_token(config.secret_bytes().decode())
        self.ssl_context = _https_context(config.tls_cert, config.tls_key)
        self.scheme = "https" if self.ssl_context is not None else "http"
        self.host = ""
        self.port = 0
        self.cookie_name = "distml_dashboard"
        self.latest: snapshot.Snapshot | None = None
        self.snapshots_taken = 0
        #: CPU seconds of the scheduler's loop spent taking snapshots, in all.
        self.snapshot_seconds = 0.0
        #: Seconds without requests after which snapshots stop; True while stopped.
        self.idle_after = IDLE_AFTER
        self.idle = True
        self._viewed = float("-inf")
        self._wake = asyncio.Event()
        self._fresh = asyncio.Event()
        self._server: HTTPServer | None = None
        self._task: asyncio.Task | None = None
        self._files = {path.name: path.read_bytes() for path in STATIC.iterdir()
                       if path.suffix in _CONTENT_TYPES}

    @property
    def url(self) -> str:
        return dashboard_url(self.scheme, self.host, self.port)

    @property
    def link(self) -> str:
        """The URL with the token: opening it grants access."""
        return dashboard_url(self.scheme, self.host, self.port, self.token)

    async def start(self, port: int = 0) -> "Dashboard":
        _, self.host, _ = parse_address(self.scheduler.address)
        try:
            sockets = bind_sockets(port, address=self.host)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0:
                raise
            logger.warning("dashboard port %d is in use; using a free port instead", port)
            sockets = bind_sockets(0, address=self.host)
        self.port = sockets[0].getsockname()[1]
        self.cookie_name = f"distml_dashboard_{self.port}"  # browsers share cookies across ports
        app = Application(_routes(self), log_function=_log_request)
        self._server = HTTPServer(app, ssl_options=self.ssl_context, xheaders=False)
        self._server.add_sockets(sockets)
        self._task = asyncio.get_running_loop().create_task(self._snapshots())
        logger.info("dashboard at %s", self.url)
        return self

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._server is not None:
            self._server.stop()

    # ------------------------------------------------------------------ snapshots
    def viewed(self) -> None:
        """A request came in: keep (or start) taking snapshots."""
        self._viewed = time.monotonic()
        self._wake.set()

    def take_snapshot(self) -> snapshot.Snapshot:
        # CPU time, not wall time: waiting for the GIL is not a cost of the snapshot
        started = time.thread_time()
        data = snapshot.take(self.scheduler, self.latest.data if self.latest else None)
        cost = time.thread_time() - started
        self.snapshots_taken += 1
        self.snapshot_seconds += cost
        data["dashboard"] = {"snapshots": self.snapshots_taken,
                             "snapshot_seconds": self.snapshot_seconds}
        self.latest = snapshot.Snapshot(data, cost)
        self._fresh.set()
        self._fresh = asyncio.Event()
        return self.latest

    async def _snapshots(self) -> None:
        while True:
            if time.monotonic() - self._viewed > self.idle_after:
                self.idle = True
                self._wake.clear()
                await self._wake.wait()  # nobody looks: no snapshots
                self.idle = False
            try:
                cost = self.take_snapshot().cost
            except Exception:  # noqa: BLE001 - a bug here must not freeze the dashboard
                logger.exception("dashboard snapshot failed")
                cost = 0.0
            interval = min(MAX_INTERVAL, max(ACTIVE_INTERVAL, cost / MAX_LOOP_SHARE))
            if interval > ACTIVE_INTERVAL:
                logger.debug("dashboard snapshot took %.3f s; the next in %.1f s", cost, interval)
            await asyncio.sleep(interval)

    async def current(self) -> snapshot.Snapshot:
        """The latest snapshot; after an idle spell, waits briefly for a new one."""
        latest = self.latest
        if latest is None or time.time() - latest.data["time"] > STALE_AFTER:
            fresh = self._fresh
            try:
                await asyncio.wait_for(fresh.wait(), FRESH_WAIT)
            except asyncio.TimeoutError:
                pass
            latest = self.latest
        if latest is None:
            raise HTTPError(503, "no snapshot yet")
        return latest


def _https_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """Serve HTTPS with the scheduler's own certificate when it has one (browsers bring no
    client certificate, so none is required here: the token guards access)."""
    if not (cert and key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def _log_request(handler: RequestHandler) -> None:
    status = handler.get_status()
    if status == 403:
        logger.warning("dashboard refused %s %s from %s: missing or wrong token",
                       handler.request.method, handler.request.path, handler.request.remote_ip)
    else:
        logger.debug("dashboard %d %s %s (%s)", status, handler.request.method,
                     handler.request.path, handler.request.remote_ip)


class _Handler(RequestHandler):
    """Checks the token on every request and sets defensive headers."""

    def initialize(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Security-Policy",
                        "default-src 'none'; script-src 'self'; style-src 'self'; "
                        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                        "form-action 'none'; frame-ancestors 'none'")

    def prepare(self) -> None:
        dashboard = self.dashboard
        from_query = self.get_query_argument("token", None)
        auth = self.request.headers.get("Authorization", "")
        presented = (from_query or self.get_cookie(dashboard.cookie_name)
                     or (auth[7:] if auth.startswith("Bearer ") else None))
        if not token_matches(presented, dashboard.token):
            raise HTTPError(403)  # logged once, by _log_request
        if from_query:
            self.set_cookie(dashboard.cookie_name, dashboard.token, httponly=True,
                            samesite="Strict", path="/",
                            secure=dashboard.scheme == "https")
        dashboard.viewed()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        reason = self._reason
        if status_code == 403:
            reason = ("403 Forbidden: open the dashboard with the link that carries its token "
                      "(client.dashboard_link, or the URL the scheduler printed)")
        self.finish(f"{reason}\n")

    def send_json(self, body: bytes) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(body)


class _PageHandler(_Handler):
    def get(self, name: str = "index.html") -> None:
        if self.get_query_argument("token", None) and name == "index.html":
            self.redirect("/", status=303)  # the token leaves the address bar and history
            return
        body = self.dashboard._files.get(name)
        if body is None:
            raise HTTPError(404)
        self.set_header("Content-Type", _CONTENT_TYPES[Path(name).suffix])
        self.finish(body)


class _SectionHandler(_Handler):
    """One JSON view of the latest snapshot, encoded once per snapshot."""

    def initialize(self, dashboard: Dashboard, section: str,
                   build: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        super().initialize(dashboard)
        self.section, self.build = section, build

    async def get(self) -> None:
        latest = await self.dashboard.current()
        self.send_json(latest.body(self.section, lambda data: snapshot.encode(self.build(data))))


class _TaskStreamHandler(_Handler):
    """Task records; ``?since=<time>`` keeps those that stopped after it (pages poll for new
    ones)."""

    async def get(self) -> None:
        latest = await self.dashboard.current()
        text = self.get_query_argument("since", "0")
        try:
            since = float(text)
        except ValueError:
            raise HTTPError(400, f"since must be a number of seconds, not {text!r}") from None
        data = latest.data
        if since <= 0:
            self.send_json(latest.body("task-stream", lambda d: snapshot.encode(
                {"time": d["time"], "records": d["task_stream"]})))
            return
        records = [r for r in data["task_stream"] if r[1] > since]
        self.send_json(snapshot.encode({"time": data["time"], "records": records}))


class _MetricsHandler(_Handler):
    async def get(self) -> None:
        latest = await self.dashboard.current()
        self.set_header("Content-Type", metrics.CONTENT_TYPE)
        self.finish(latest.body("metrics", lambda data: metrics.render(data).encode()))


def _routes(dashboard: Dashboard) -> list[tuple]:
    d = {"dashboard": dashboard}

    def section(name: str, *fields: str) -> dict[str, Any]:
        """A view with the snapshot's time and ``fields`` (renamed ``api-name: data-name``)."""
        pairs = [field.split(":") if ":" in field else (field, field) for field in fields]
        return {**d, "section": name, "build": lambda data: {
            "time": data["time"], **{out: data[src] for out, src in pairs}}}

    return [
        (r"/", _PageHandler, d),
        (r"/static/([a-z]+\.(?:js|css))", _PageHandler, d),
        (r"/api/v1/workers", _SectionHandler, section("workers", "workers", "scheduler")),
        (r"/api/v1/tasks", _SectionHandler, section("tasks", "scheduler", "states:task_states",
                                                    "prefixes")),
        (r"/api/v1/task-stream", _TaskStreamHandler, d),
        (r"/api/v1/activities", _SectionHandler, section("activities", "activities")),
        (r"/api/v1/memory", _SectionHandler, section("memory", "samples:memory")),
        (r"/metrics", _MetricsHandler, d),
    ]
