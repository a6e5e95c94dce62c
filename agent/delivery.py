"""Where alerts and reports go: a generic JSON webhook, the incoming webhooks of 企业微信 (WeCom),
钉钉 (DingTalk, with its signing secret), 飞书 (Feishu/Lark, optionally signed) and Slack, and e-mail
over SMTP.

A :class:`Destination` is one entry of ``[[destinations]]`` in ``config.toml`` (or of the JSON list in
``FEEDBACK_AGENT_DESTINATIONS``). Webhook URLs carry their keys (``?key=``, ``access_token=``), so a
URL, a signing secret and an SMTP password are secrets: they come from the config file or from an
environment variable the entry names (``url_env``, ``secret_env``, ``password_env``), never from a
command-line flag, and ``config show`` prints them masked.

:func:`send` formats one :class:`Message` the destination's way and sends it, retrying transient
failures (connection errors, timeouts, HTTP 429 and 5xx, SMTP 4xx) with exponential backoff. A
refusal that a retry cannot fix (HTTP 4xx, a WeCom/DingTalk/Feishu ``errcode``, a bad signature)
fails at once. Either way the caller keeps the message pending and tries again on its next run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import smtplib
import time
import urllib.parse
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from agent.errors import AgentError, ConfigError

DestType = Literal["webhook", "wecom", "dingtalk", "feishu", "slack", "email"]
Content = Literal["alerts", "report"]
WEBHOOKS = ("webhook", "wecom", "dingtalk", "feishu", "slack")
# What each chat accepts in one message (WeCom counts UTF-8 bytes of the markdown content; Slack
# caps a section's text; DingTalk and Feishu allow ~20 KB, kept well under).
LIMITS: dict[str, int] = {"wecom": 4000, "dingtalk": 15000, "feishu": 15000, "slack": 2900}


class DeliveryError(AgentError):
    """A destination did not take a message; ``transient`` says whether retrying may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient
        self.attempts = 1


class Destination(BaseModel):
    """One place messages are delivered to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: DestType
    name: str = Field("", description="How results and the store name it (default: the type).")
    send: tuple[Content, ...] = Field(("alerts", "report"), description="What goes there.")
    url: str | None = Field(None, description="Webhook URL (with its key or access token).")
    url_env: str | None = Field(None, description="Environment variable holding the URL instead.")
    secret: str | None = Field(None, description="Signing secret (DingTalk, Feishu, generic webhook HMAC).")
    secret_env: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = Field(None, ge=1, le=65535, description="Default 587 (starttls), 465 (ssl), 25 (none).")
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    mail_from: str | None = None
    mail_to: tuple[str, ...] = ()
    timeout: float = Field(10.0, gt=0, le=120, description="Seconds per attempt.")

    @model_validator(mode="after")
    def _complete(self) -> Destination:
        if not self.name:
            object.__setattr__(self, "name", self.type)
        if self.type in WEBHOOKS:
            if not (self.url or self.url_env):
                raise ValueError(f"destination {self.name!r} ({self.type}) needs url or url_env")
            if self.type == "dingtalk" and not (self.secret or self.secret_env):
                raise ValueError(f"destination {self.name!r} (dingtalk) needs its signing secret: secret or secret_env")
        else:
            missing = [n for n in ("smtp_host", "mail_from") if not getattr(self, n)]
            if not self.mail_to:
                missing.append("mail_to")
            if missing:
                raise ValueError(f"destination {self.name!r} (email) needs {', '.join(missing)}")
            if (self.username or self.password or self.password_env) and self.security == "none":
                from agent.config import is_loopback

                if not is_loopback(f"smtp://{self.smtp_host}"):
                    raise ValueError(
                        f"destination {self.name!r}: refusing to send an SMTP password unencrypted to "
                        f"{self.smtp_host}; use security = 'starttls' or 'ssl'"
                    )
        if not self.send:
            raise ValueError(f"destination {self.name!r}: send lists nothing (use alerts, report or both)")
        return self

    def takes(self, content: Content) -> bool:
        """Whether this destination receives ``content``."""
        return content in self.send

    def resolved_url(self) -> str:
        """The webhook URL (from the config or its environment variable)."""
        return _value(self.url, self.url_env, f"destination {self.name!r}: url")

    def resolved_secret(self) -> str | None:
        """The signing secret, if any."""
        if not (self.secret or self.secret_env):
            return None
        return _value(self.secret, self.secret_env, f"destination {self.name!r}: secret")

    def masked(self) -> dict[str, Any]:
        """This entry as ``config show`` prints it: URLs cut to scheme and host, secrets hidden."""
        out: dict[str, Any] = {}
        for key, value in self.model_dump(exclude_defaults=True).items():
            if key == "url" and value:
                parts = urllib.parse.urlsplit(value)
                out[key] = f"{parts.scheme}://{parts.hostname}/… (hidden)"
            elif key in ("secret", "password") and value:
                out[key] = "<set>"
            else:
                out[key] = value
        out["name"], out["type"] = self.name, self.type
        return out


def _value(given: str | None, env: str | None, what: str) -> str:
    if given:
        return given
    value = os.environ.get(env or "")
    if not value:
        raise ConfigError(f"{what}: environment variable {env} is not set")
    return value


class Message(BaseModel):
    """An alert or a report, as it is stored in the outbox and sent (personal data already redacted)."""

    key: str = Field(description="What, where and which period: the same alert always has the same key.")
    id: str = Field(description="A short id of the key (for links and `alerts`).")
    kind: Literal["spike", "critical", "csat", "report"]
    severity: Literal["critical", "warning", "info"]
    title: str
    lines: list[str] = Field(description="The figures, one per line.")
    record_ids: list[str] = Field(default_factory=list)
    commands: list[str] = Field(default_factory=list, description="Commands that show the records.")
    link: str | None = None
    figures: dict[str, Any] = Field(default_factory=dict)
    created_at: str
    lang: Literal["zh", "en"] = "zh"
    report: dict[str, Any] | None = Field(None, description="A report message's WeeklyReport (JSON).")

    @property
    def content(self) -> Content:
        """Which ``send`` list this message belongs to."""
        return "report" if self.kind == "report" else "alerts"


# --------------------------------------------------------------------------- formats

ICONS = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
LABELS = {
    "zh": {"records": "相关记录", "see": "查看", "more": "（内容过长，已截断）"},
    "en": {"records": "records", "see": "see", "more": "(cut: too long)"},
}


def _clip(text: str, limit: int, lang: str, *, by_bytes: bool = False) -> str:
    """``text`` cut to ``limit`` characters (or UTF-8 bytes), saying it was cut."""
    size = len(text.encode()) if by_bytes else len(text)
    if size <= limit:
        return text
    tail = "\n" + LABELS[lang]["more"]
    if by_bytes:
        room = limit - len(tail.encode())
        cut = text.encode()[:room].decode(errors="ignore")
    else:
        cut = text[: limit - len(tail)]
    return cut.rstrip() + tail


def plain_text(m: Message) -> str:
    """The message as plain text (e-mail, generic webhook's ``text``)."""
    words = LABELS[m.lang]
    out = [m.title, ""] + [f"- {line}" for line in m.lines]
    if m.record_ids:
        out += ["", f"{words['records']}: {', '.join(m.record_ids)}"]
    out += [f"{words['see']}: {c}" for c in m.commands]
    if m.link:
        out.append(m.link)
    return "\n".join(out).replace("**", "")


def markdown(m: Message, *, heading: bool = True) -> str:
    """The message as the Markdown the chat webhooks render (WeCom, DingTalk, Feishu)."""
    words = LABELS[m.lang]
    out = [f"### {ICONS[m.severity]} {m.title}"] if heading else []
    out += [f"- {line}" for line in m.lines]
    if m.record_ids:
        out.append(f"{words['records']}: {', '.join(m.record_ids)}")
    out += [f"{words['see']}: `{c}`" for c in m.commands]
    if m.link:
        out.append(f"[{m.link}]({m.link})")
    return "\n".join(out)


def _slack_text(m: Message) -> str:
    def esc(s: str) -> str:
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("**", "*")

    words = LABELS[m.lang]
    out = [f"• {esc(line)}" for line in m.lines]
    if m.record_ids:
        out.append(f"{words['records']}: {esc(', '.join(m.record_ids))}")
    out += [f"{words['see']}: `{esc(c)}`" for c in m.commands]
    if m.link:
        out.append(f"<{m.link}>")
    return _clip("\n".join(out), LIMITS["slack"], m.lang)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's robot signature: base64(HMAC-SHA256(secret, "{timestamp}\\n{secret}"))."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's bot signature: base64(HMAC-SHA256(key="{timestamp}\\n{secret}", message=b""))."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def webhook_signature(secret: str, timestamp_s: int, body: bytes) -> str:
    """The generic webhook's ``X-Feedback-Agent-Signature``: sha256=HMAC(secret, "{timestamp}." + body)."""
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256).hexdigest()


def request_for(dest: Destination, m: Message, now: float | None = None) -> tuple[str, dict[str, str], bytes]:
    """The URL, headers and body that deliver ``m`` to a webhook destination."""
    now = time.time() if now is None else now
    url = dest.resolved_url()
    secret = dest.resolved_secret()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    body: dict[str, Any]
    if dest.type == "wecom":
        md = _clip(markdown(m), LIMITS["wecom"], m.lang, by_bytes=True)
        body = {"msgtype": "markdown", "markdown": {"content": md}}
    elif dest.type == "dingtalk":
        ts = int(now * 1000)
        assert secret is not None  # the model requires it
        sep = "&" if urllib.parse.urlsplit(url).query else "?"
        url = f"{url}{sep}timestamp={ts}&sign={urllib.parse.quote_plus(dingtalk_sign(secret, ts))}"
        body = {"msgtype": "markdown", "markdown": {"title": m.title, "text": _clip(markdown(m), 15000, m.lang)}}
    elif dest.type == "feishu":
        template = {"critical": "red", "warning": "orange", "info": "blue"}[m.severity]
        body = {
            "msg_type": "interactive",
            "card": {
                "header": {"title": {"tag": "plain_text", "content": m.title}, "template": template},
                "elements": [{"tag": "markdown", "content": _clip(markdown(m, heading=False), 15000, m.lang)}],
            },
        }
        if secret:
            ts = int(now)
            body = {"timestamp": str(ts), "sign": feishu_sign(secret, ts), **body}
    elif dest.type == "slack":
        body = {
            "text": f"{m.title}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": m.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": _slack_text(m)}},
            ],
        }
    else:  # the generic JSON webhook: the whole message
        body = {"event": "report" if m.kind == "report" else "alert", **m.model_dump(), "text": plain_text(m)}
    data = json.dumps(body, ensure_ascii=False).encode()
    if dest.type == "webhook" and secret:
        ts = int(now)
        headers["X-Feedback-Agent-Timestamp"] = str(ts)
        headers["X-Feedback-Agent-Signature"] = webhook_signature(secret, ts, data)
    return url, headers, data


def _check_response(dest: Destination, response: httpx.Response) -> None:
    code = response.status_code
    if code == 429 or code >= 500:
        raise DeliveryError(f"{dest.name}: HTTP {code}", transient=True)
    if code >= 400:
        raise DeliveryError(f"{dest.name}: HTTP {code} {response.text[:200]}", transient=False)
    if dest.type in ("wecom", "dingtalk", "feishu"):
        try:
            reply = response.json()
        except ValueError:
            reply = {}
        errcode = reply.get("errcode", reply.get("code", reply.get("StatusCode", 0))) if isinstance(reply, dict) else 0
        if errcode not in (0, None):
            detail = reply.get("errmsg") or reply.get("msg") or reply.get("StatusMessage") or ""
            # The chats answer "too many messages" with a code too: retrying later helps there.
            busy = errcode in (45009, 130101, 11232)  # WeCom, DingTalk, Feishu: sending too fast
            raise DeliveryError(f"{dest.name}: refused ({errcode} {detail})".strip(), transient=busy)


def _post(dest: Destination, m: Message) -> None:
    url, headers, data = request_for(dest, m)
    try:
        with httpx.Client(timeout=dest.timeout, follow_redirects=False) as client:
            response = client.post(url, content=data, headers=headers)
    except httpx.TransportError as exc:
        raise DeliveryError(f"{dest.name}: {type(exc).__name__}: {exc}".rstrip(": "), transient=True) from None
    _check_response(dest, response)


# --------------------------------------------------------------------------- e-mail


def email_for(dest: Destination, m: Message) -> EmailMessage:
    """The e-mail of ``m``: plain text and HTML; a report's HTML carries its charts as inline
    images and the Markdown report is attached."""
    msg = EmailMessage()
    msg["Subject"] = m.title
    msg["From"] = dest.mail_from or ""
    msg["To"] = ", ".join(dest.mail_to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="feedback-agent")
    msg["X-Feedback-Agent-Key"] = m.key
    if m.report is None:
        body = plain_text(m)
        msg.set_content(body)
        import html

        items = "".join(f"<li>{html.escape(line).replace('**', '')}</li>" for line in m.lines)
        text = html.escape(body.split("\n", 1)[1] if "\n" in body else "")
        msg.add_alternative(
            f"<html><body><h3>{html.escape(m.title)}</h3><ul>{items}</ul><pre>{text}</pre></body></html>",
            subtype="html",
        )
        return msg
    from agent.report import WeeklyReport, render_html, render_markdown

    report = WeeklyReport.model_validate(m.report)
    md = render_markdown(report)
    msg.set_content(md)
    msg.add_alternative(render_html(report, images="cid", font=False), subtype="html")
    html_part = msg.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    for chart in report.charts:
        html_part.add_related(
            base64.b64decode(chart.png_base64), "image", "png", cid=f"<{chart_cid(chart.name)}>", filename=chart.name
        )
    msg.add_attachment(md, subtype="markdown", filename=f"report-{report.week}.md")
    return msg


def chart_cid(name: str) -> str:
    """The Content-ID a report e-mail gives a chart."""
    return f"{name}@feedback-agent"


def _mail(dest: Destination, m: Message) -> None:
    msg = email_for(dest, m)
    port = dest.smtp_port or {"starttls": 587, "ssl": 465, "none": 25}[dest.security]
    host = dest.smtp_host or ""
    password = (
        _value(dest.password, dest.password_env, f"destination {dest.name!r}: password")
        if (dest.password or dest.password_env)
        else None
    )
    try:
        cls = smtplib.SMTP_SSL if dest.security == "ssl" else smtplib.SMTP
        with cls(host, port, timeout=dest.timeout) as smtp:
            if dest.security == "starttls":
                smtp.starttls()
            if dest.username:
                smtp.login(dest.username, password or "")
            smtp.send_message(msg)
    except smtplib.SMTPResponseException as exc:
        transient = 400 <= exc.smtp_code < 500
        detail = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryError(f"{dest.name}: SMTP {exc.smtp_code} {detail}", transient=transient) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"{dest.name}: recipients refused: {', '.join(exc.recipients)}", transient=False) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"{dest.name}: {type(exc).__name__}: {exc}", transient=True) from None


# --------------------------------------------------------------------------- sending


def send(dest: Destination, m: Message, *, attempts: int = 3, backoff: float = 2.0) -> int:
    """Deliver ``m`` to ``dest``, retrying transient failures; returns the attempts it took.
    Raises :class:`DeliveryError` (with ``attempts`` set) when it could not."""
    tries = 0

    def once() -> None:
        nonlocal tries
        tries += 1
        if dest.type == "email":
            _mail(dest, m)
        else:
            _post(dest, m)

    retrying = Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=backoff, max=60),
        retry=retry_if_exception(lambda e: isinstance(e, DeliveryError) and e.transient),
        reraise=True,
    )
    try:
        retrying(once)
    except DeliveryError as exc:
        exc.attempts = tries
        raise
    return tries
