"""The HTTP service: the CLI's capabilities as a JSON API (FastAPI, OpenAPI docs at /docs).

One store is opened for the process. Every request gets its own chat model (its own deadline);
work runs in worker threads and is cut off after ``request_timeout`` seconds (504). Requests
carry an API key (``Authorization: Bearer``) when keys are configured; with none configured the
``serve`` command binds loopback only. Bodies above ``max_request_bytes`` get 413, invalid input
422 with the fields named, user errors 400, an unreachable store 503, and every error body is
``{"error": ...}``. The key is checked before the body is read or parsed; a body that trickles in
slower than the ``body_timeout`` setting gets 408. Without keys only loopback Host names are served (a page
on another site cannot rebind a name to 127.0.0.1 and read the API). Each request is logged
once as one JSON line on stderr (time, request id, method, path, status, milliseconds, which
path served); an unexpected error is logged by type and code location only, never with the
record content its message may hold, and answered 500 on a connection that stays usable.
The docs pages (/docs, /redoc) are served from files inside the installed package, no CDN.

Ingest through ``POST /v1/feedback`` takes the same writer lock as the ``ingest`` command, so
concurrent ingests (HTTP or CLI) into one home queue and lose nothing.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.alerts import AlertState, Delivered, WatchResult
from agent.app import InvalidValue, OptionError, Workspace
from agent.ask import Answer, Conversation
from agent.at_risk import AtRisk
from agent.classify import Classification
from agent.config import Settings, is_loopback
from agent.errors import USER_ERRORS
from agent.marks import Mark
from agent.queue import Queue
from agent.reply import ReplyDraft
from retrieval.errors import StoreError
from retrieval.search import Hit

MAX_TEXT = 10_000
MAX_BATCH = 500
MAX_RECORDS = 1_000
MAX_CONVERSATIONS = 1_000


# --------------------------------------------------------------------------- request bodies


class ClassifyRequest(BaseModel):
    """One text or a batch."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT)
    texts: list[str] | None = Field(None, min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _one_of(self) -> ClassifyRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give either 'text' or 'texts'")
        for t in [self.text] if self.text is not None else self.texts or []:
            if not t.strip():
                raise ValueError("a text is empty")
            if len(t) > MAX_TEXT:
                raise ValueError(f"a text is longer than {MAX_TEXT} characters")
        return self


class ReplyRequest(BaseModel):
    """A customer message to answer."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_TEXT, pattern=r"\S")
    customer: str | None = Field(None, max_length=100)
    order_id: str | None = Field(None, max_length=200)


class AskRequest(BaseModel):
    """A question, optionally in a conversation."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=2000, pattern=r"\S")
    as_of: str | None = Field(None, description="Reference time (date or timestamp); default now.")
    conversation_id: str | None = Field(None, max_length=100, description="Continue a conversation.")


class AskResponse(Answer):
    """An answer and the conversation it belongs to."""

    conversation_id: str


class FeedbackBatch(BaseModel):
    """Feedback records to ingest (the same fields as a CSV row)."""

    model_config = ConfigDict(extra="forbid")

    records: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_RECORDS)


class IngestResult(BaseModel):
    """What an ingest request did."""

    added: list[str]
    updated: list[str]
    unchanged: list[str]
    rejected: list[dict[str, Any]]
    alerts: str | None = Field(
        None, description="'checking': alerts_on_ingest is on and the alert check runs after this response."
    )


class WatchRequest(BaseModel):
    """One alert check."""

    model_config = ConfigDict(extra="forbid")

    as_of: str | None = Field(None, description="Reference time; default the newest record's time.")
    lang: Literal["zh", "en"] = "zh"
    dry_run: bool = Field(False, description="Show what would be alerted; record and send nothing.")


class MarkRequest(BaseModel):
    """An agent's verdict on a past case as evidence for a message."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=10_000, pattern=r"\S", description="The customer's message.")
    resolution_id: str = Field(min_length=1, max_length=200)
    verdict: Literal["right", "wrong"] = "right"


class SendResult(BaseModel):
    """What delivering a report did."""

    week: str
    queued: bool = Field(description="False: this week's report had gone out before (resend=true sends it again).")
    deliveries: list[Delivered]


# --------------------------------------------------------------------------- state


class _Conversations:
    """Conversations by id, least recently used dropped beyond a bound."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Conversation] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, cid: str | None) -> tuple[str, Conversation]:
        with self._lock:
            if cid and cid in self._items:
                self._items.move_to_end(cid)
                return cid, self._items[cid]
            cid = cid or uuid.uuid4().hex
            convo = self._items[cid] = Conversation()
            while len(self._items) > MAX_CONVERSATIONS:
                self._items.popitem(last=False)
            return cid, convo


# --------------------------------------------------------------------------- app


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI application for one home."""
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        ws = Workspace(settings, refit_in_background=True)
        ws.classifier()  # fitted before the first request
        # filtered searches test columns kept in memory: read before the first request (5-7 s at a
        # million records), then again in the background after writes (retrieval/columns.py)
        ws.store.keep_columns = True
        ws.store.filter_columns(wait=True)
        state.update(ws=ws, conversations=_Conversations())
        try:
            yield
        finally:
            ws.close()

    app = FastAPIOffline(
        title="feedback-agent",
        version="0.1.0",
        lifespan=lifespan,
        description="Customer-feedback agent: ingest, classify, reply, ask, search and weekly reports. "
        "Send `Authorization: Bearer <key>` when the server has API keys.",
    )
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes, timeout=settings.body_timeout)
    keys = settings.api_key_list()

    def key_ok(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        return bool(token) and any(hmac.compare_digest(token, k) for k in keys)

    def auth(request: Request) -> None:
        """The key check, declared on each route for the OpenAPI document; the middleware has
        already applied it before the body was read."""
        if keys and not key_ok(request):
            raise HTTPException(
                401, "missing or invalid API key (Authorization: Bearer <key>)", headers={"WWW-Authenticate": "Bearer"}
            )

    async def run(request: Request, fn: Callable[[], Any]) -> Any:
        """Run blocking work in a worker thread, bounded by the request timeout."""
        try:
            return await asyncio.wait_for(anyio.to_thread.run_sync(fn), timeout=settings.request_timeout)
        except TimeoutError:
            raise HTTPException(504, f"the request took longer than {settings.request_timeout:g} s") from None

    # ------------------------------------------------------------------ middleware
    def gate(request: Request) -> Response | None:
        """What is refused before any body is read: a wrong Host, a missing key, a body too large."""
        if not keys and not is_loopback(f"http://{request.headers.get('host', '')}"):
            return _error(421, "without API keys this server answers only loopback host names (localhost, 127.0.0.1)")
        if keys and request.url.path.startswith("/v1/") and not key_ok(request):
            response = _error(401, "missing or invalid API key (Authorization: Bearer <key>)")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_request_bytes):
            return _error(413, f"request body larger than {settings.max_request_bytes} bytes")
        return None

    @app.middleware("http")
    async def limits_and_logs(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:12]
        request.state.rid = rid
        request.state.served_by = None
        started = time.perf_counter()
        failure = None
        response = gate(request)
        if response is None:
            try:
                response = await call_next(request)
            except Exception as exc:  # anything no handler answered: one 500, logged once, connection kept
                failure = _where(exc)
                response = _error(500, f"internal error (request id {rid})")
        response.headers["x-request-id"] = rid
        if request.state.served_by:
            response.headers["x-served-by"] = request.state.served_by
        _log(
            {
                "request_id": rid,
                "method": request.method,
                "path": request.url.path,
                "status": response.status_code,
                "ms": round((time.perf_counter() - started) * 1000, 1),
                "served_by": request.state.served_by,
                "client": request.client.host if request.client else None,
            }
            | ({"level": "error", "error": failure} if failure else {})
        )
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "field": "body"
                if e.get("type") == "json_invalid"
                else ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
                "message": "not valid JSON"
                if e.get("type") == "json_invalid"
                else str(e.get("msg", "")).removeprefix("Value error, "),
            }
            for e in exc.errors()
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return JSONResponse({"error": f"invalid request: {summary}", "details": details}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(StoreError)
    async def store_error(_request: Request, exc: StoreError) -> JSONResponse:
        return _error(503, f"store unavailable: {exc}")

    async def user_error(_request: Request, exc: Exception) -> JSONResponse:
        return _error(400, str(exc).splitlines()[0])

    for error_class in USER_ERRORS:
        app.add_exception_handler(error_class, user_error)

    async def bad_value(_request: Request, exc: Exception) -> JSONResponse:
        return _error(422, str(exc).splitlines()[0])

    for error_class in (OptionError, InvalidValue):  # a value the caller gave: named, as a 422
        app.add_exception_handler(error_class, bad_value)

    # ------------------------------------------------------------------ routes
    def ws() -> Workspace:
        workspace: Workspace = state["ws"]
        return workspace

    # ------------------------------------------------------------------ the workbench (web page)
    @app.get("/", include_in_schema=False)
    async def workbench() -> Response:
        """The web workbench: one static page and its script and style, from the package."""
        return _web_file("index.html")

    @app.get("/web/cjk.otf", include_in_schema=False)
    async def web_font() -> Response:
        """Noto Sans CJK SC from the installed mplfonts package (OFL), for browsers on machines
        without a Chinese font; the page lists it last, so a browser that has one never loads it."""
        from fastapi.responses import FileResponse

        from agent.report import cjk_font_path

        return FileResponse(
            cjk_font_path(), media_type="font/otf", headers={"cache-control": "public, max-age=604800, immutable"}
        )

    @app.get("/web/{name}", include_in_schema=False)
    async def web_asset(name: str) -> Response:
        if name not in WEB_FILES or name == "index.html":
            raise HTTPException(404, "not found")
        return _web_file(name)

    @app.get("/v1/status", dependencies=[Depends(auth)], tags=["service"])
    async def status(request: Request) -> Any:
        """Counts, the data's time span, categories, common facet values and destinations (what the
        workbench offers as choices)."""
        return await run(request, lambda: ws().overview())

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness and record counts (no key needed)."""
        store, encoder = ws().store, ws().encoder()
        return {
            "status": "ok",
            "feedback": store.count("feedback"),
            "resolutions": store.count("resolution"),
            "llm": settings.llm_provider,
            "classifier_encoder": encoder.name if encoder else None,
            "api_key_required": bool(keys),
            "worker": os.getpid(),
        }

    @app.post(
        "/v1/classify",
        dependencies=[Depends(auth)],
        tags=["agent"],
        response_model=Classification | list[Classification],
    )
    async def classify(body: ClassifyRequest, request: Request) -> Any:
        """The same object as `classify --json` for `{"text"}`, a list for `{"texts"}`."""

        def work() -> Any:
            results = ws().classify([body.text] if body.text is not None else list(body.texts or []))
            request.state.served_by = ",".join(sorted({r.path for r in results}))
            return results[0] if body.text is not None else results

        return await run(request, work)

    @app.post("/v1/reply", dependencies=[Depends(auth)], tags=["agent"], response_model=ReplyDraft)
    async def reply(body: ReplyRequest, request: Request) -> Any:
        """A reply draft grounded in cited past resolutions."""

        def work() -> ReplyDraft:
            draft = ws().reply(body.text, customer=body.customer, order_id=body.order_id)
            request.state.served_by = draft.path
            return draft

        return await run(request, work)

    @app.post("/v1/reply/marks", dependencies=[Depends(auth)], tags=["agent"], response_model=Mark)
    async def mark_evidence(body: MarkRequest, request: Request) -> Any:
        """Mark a past case as the right (or wrong) evidence for a message: later drafts for
        messages that say the same thing put it first (or leave it out)."""
        return await run(request, lambda: ws().mark_evidence(body.text, body.resolution_id, body.verdict))

    @app.get("/v1/reply/marks", dependencies=[Depends(auth)], tags=["agent"], response_model=list[Mark])
    async def evidence_marks(request: Request, limit: int = Query(100, ge=1, le=1000)) -> Any:
        """The newest evidence marks."""
        return await run(request, lambda: ws().evidence_marks(limit))

    @app.post("/v1/ask", dependencies=[Depends(auth)], tags=["agent"], response_model=AskResponse)
    async def ask(body: AskRequest, request: Request) -> Any:
        """Answer a question; pass the returned conversation_id to continue ("and the week before?")."""
        as_of = ws().span(as_of=body.as_of).now
        cid, convo = state["conversations"].get(body.conversation_id)

        def work() -> AskResponse:
            answer = ws().ask(body.question, as_of=as_of, conversation=convo)
            request.state.served_by = answer.path
            return AskResponse(**answer.model_dump(), conversation_id=cid)

        return await run(request, work)

    @app.get("/v1/similar", dependencies=[Depends(auth)], tags=["search"], response_model=list[Hit])
    async def similar(
        request: Request,
        q: str = Query(min_length=1, max_length=MAX_TEXT, description="Text to find similar cases for."),
        k: int = Query(5, ge=1, le=200),
        kind: Literal["feedback", "resolution"] = "feedback",
        days: int | None = Query(None, ge=1, le=3660, description="Only the last N days before as_of."),
        since: str | None = Query(None, description="From this date (YYYY-MM-DD or a timestamp)."),
        until: str | None = Query(None, description="Up to this date, inclusive."),
        as_of: str | None = Query(None, description="Reference time for `days` (default now)."),
        category: str | None = Query(None, description="Category id, name or keyword (as `--category`)."),
        channel: str | None = None,
        product: str | None = None,
        carrier: str | None = None,
    ) -> Any:
        """Hybrid similar-case search with filters (the `similar` command's); record codes that no
        record has are named in the `x-not-found` header."""
        window = ws().span(days=days, since=since, until=until, as_of=as_of)

        def work() -> Any:
            found = ws().similar(
                q, k=k, kind=kind, window=window, category=category, channel=channel, product=product, carrier=carrier
            )
            response = JSONResponse([h.model_dump(mode="json") for h in found.hits])
            if found.not_found:  # said before the similar records: the record asked for is not there
                response.headers["x-not-found"] = ",".join(found.not_found)
            return response

        return await run(request, work)

    @app.post("/v1/feedback", dependencies=[Depends(auth)], tags=["ingest"], response_model=IngestResult)
    async def feedback(body: FeedbackBatch, request: Request, background: BackgroundTasks) -> Any:
        """Ingest feedback records (batch); bad records come back in `rejected` with the reason, the
        rest are stored (the same row checks as the `ingest` command)."""

        def work() -> IngestResult:
            done = ws().ingest_records(body.records)
            checking = settings.alerts_on_ingest and bool(done.added or done.updated)
            if checking:
                background.add_task(watch_after_ingest, request.state.rid)
            return IngestResult(
                added=done.added,
                updated=done.updated,
                unchanged=done.unchanged,
                rejected=done.rejected,
                alerts="checking" if checking else None,
            )

        return await run(request, work)

    def watch_after_ingest(rid: str) -> None:
        """The alert check an ingest asked for, after its response (a slow webhook delays no client)."""
        try:
            result = ws().watch()
            sent = sum(d.status == "sent" for d in result.deliveries)
            _log(
                {
                    "request_id": rid,
                    "event": "alerts",
                    "new": len(result.new),
                    "sent": sent,
                    "pending": len(result.pending),
                }
            )
        except Exception as exc:  # logged, never raised into the server
            _log({"request_id": rid, "event": "alerts", "level": "error", "error": _where(exc)})

    @app.post("/v1/watch", dependencies=[Depends(auth)], tags=["alerts"], response_model=WatchResult)
    async def watch(body: WatchRequest, request: Request) -> Any:
        """Check for spikes, critical cases and a CSAT drop now; new alerts are recorded and sent to
        the configured destinations once, and earlier failed deliveries are retried (as `watch --json`)."""
        return await run(request, lambda: ws().watch(as_of=body.as_of, lang=body.lang, dry_run=body.dry_run))

    @app.get("/v1/alerts", dependencies=[Depends(auth)], tags=["alerts"], response_model=list[AlertState])
    async def alerts(
        request: Request,
        limit: int = Query(50, ge=1, le=1000),
        reports: bool = Query(False, description="Sent reports instead."),
    ) -> Any:
        """Recorded alerts, newest first, with where each was delivered."""
        return await run(request, lambda: ws().alerts(limit=limit, kind="report" if reports else "alerts"))

    @app.get("/v1/alerts/{ident}", dependencies=[Depends(auth)], tags=["alerts"], response_model=AlertState)
    async def alert(request: Request, ident: str) -> Any:
        """One recorded alert (the link an alert carries when public_url is set)."""

        def work() -> AlertState:
            found = ws().alerts(limit=1, ident=ident, kind=None)
            return found[0]

        try:
            return await run(request, work)
        except InvalidValue as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/v1/records/{record_id}", dependencies=[Depends(auth)], tags=["search"])
    async def record(request: Request, record_id: str) -> Any:
        """One feedback record with its labels and resolutions."""
        found = await run(request, lambda: ws().records([record_id]))
        if not found.records:
            raise HTTPException(404, f"no feedback record has id {record_id!r}")
        return found.records[0]

    @app.get("/v1/queue", dependencies=[Depends(auth)], tags=["agent"], response_model=Queue)
    async def priority_queue(
        request: Request,
        limit: int = Query(20, ge=1, le=1000),
        days: int = Query(30, ge=1, le=3660),
        as_of: str | None = Query(None, description="Reference time (default now)."),
        lang: Literal["zh", "en"] = "zh",
    ) -> Any:
        """Open feedback ranked by the priority score, each case with its reasons (as `queue --json`)."""
        return await run(request, lambda: ws().queue(as_of=as_of, days=days, limit=limit, lang=lang))

    @app.get("/v1/at-risk", dependencies=[Depends(auth)], tags=["agent"], response_model=AtRisk)
    async def at_risk(
        request: Request,
        limit: int = Query(20, ge=1, le=1000),
        days: int = Query(30, ge=1, le=365),
        horizon: int = Query(14, ge=1, le=365),
        as_of: str | None = Query(None, description="Reference time (default now)."),
        lang: Literal["zh", "en"] = "zh",
    ) -> Any:
        """Customers with early signals and no review yet, by the risk of a bad review, each with
        its signals and a suggested action (as `at-risk --json`)."""
        return await run(request, lambda: ws().at_risk(as_of=as_of, days=days, horizon=horizon, limit=limit, lang=lang))

    @app.get("/v1/reports/{week}", dependencies=[Depends(auth)], tags=["reports"])
    async def weekly_report(
        request: Request, week: str, lang: Literal["zh", "en"] = "zh", format: Literal["json", "md", "html"] = "json"
    ) -> Any:  # noqa: A002
        """The weekly report for an ISO week (e.g. 2026-W47) as JSON, Markdown or self-contained HTML."""
        from agent.report import render_html, render_markdown

        def work() -> Any:
            r = ws().report(ws().report_week(week), lang=lang, charts=format != "json")
            request.state.served_by = r.summary_path
            if format == "html":
                return HTMLResponse(render_html(r))
            if format == "md":
                return PlainTextResponse(render_markdown(r), media_type="text/markdown; charset=utf-8")
            return JSONResponse(r.model_dump(mode="json", exclude={"charts"}))

        return await run(request, work)

    @app.post("/v1/reports/{week}/send", dependencies=[Depends(auth)], tags=["reports"], response_model=SendResult)
    async def send_report(request: Request, week: str, lang: Literal["zh", "en"] = "zh", resend: bool = False) -> Any:
        """Deliver a week's report to the destinations that take reports: once per week and
        language (a failed delivery is retried by the next call; resend=true sends it again)."""

        def work() -> SendResult:
            target = ws().report_week(week)
            queued, deliveries = ws().send_report(ws().report(target, lang=lang), resend=resend)
            return SendResult(week=target, queued=queued, deliveries=deliveries)

        return await run(request, work)

    return app


class BodyLimit:
    """ASGI middleware: a body streamed without Content-Length is counted as it arrives (413), and
    a body that has not arrived in full within ``timeout`` seconds is cut off (408), so slow
    partial bodies cannot hold connections open."""

    def __init__(self, app: Any, limit: int, timeout: float) -> None:
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0
        deadline: float | None = None

        async def limited() -> Any:
            nonlocal received, deadline
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + self.timeout
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within {self.timeout:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, f"request body larger than {self.limit} bytes")
                if not message.get("more_body", False):
                    deadline = float("inf")  # the body is complete; later receives wait for disconnects
            return message

        await self.app(scope, limited, send)


WORKER_SETTINGS = "FEEDBACK_AGENT_SERVE_SETTINGS"  # how `serve --workers N` hands its settings to each worker


def app_from_environment() -> FastAPI:
    """The application of one `serve --workers N` worker process, from the settings the parent
    resolved (flags, environment, config file) and passed down as JSON."""
    return create_app(Settings.model_validate_json(os.environ[WORKER_SETTINGS]))


WEB_DIR = Path(__file__).parent / "web"
WEB_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# The page loads nothing from elsewhere and runs only its own script. Reports are shown in a
# sandboxed frame (no scripts) from their self-contained HTML, which carries inline styles and
# data: images and fonts.
WEB_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def _web_file(name: str) -> Response:
    return Response(
        (WEB_DIR / name).read_bytes(),
        media_type=WEB_FILES[name],
        headers={
            "content-security-policy": WEB_CSP,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "cache-control": "no-cache",
        },
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _where(exc: BaseException) -> str:
    """An exception's type and innermost code location: what to log of an unexpected error. Its
    message is left out, since messages quote input (a record's text, a customer's phone)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb is not None else ""
    return type(exc).__name__ + where


def _log(fields: dict[str, Any]) -> None:
    record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "level": "info", "event": "request", **fields}
    sys.stderr.write(json.dumps(record, ensure_ascii=False) + "\n")
