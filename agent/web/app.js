// feedback-agent workbench: plain JavaScript over the JSON API of the same server.
// Every text from the store is set with textContent (never as HTML); the page loads nothing from
// elsewhere; the API key, when the server needs one, lives in sessionStorage only.
"use strict";

const WORDS = {
  zh: {
    subtitle: "客户反馈工作台", tab_ask: "问数据", tab_reply: "回复草稿", tab_queue: "待处理", tab_reports: "周报",
    tab_search: "相似案例", as_of: "数据截至", api_key: "API 密钥", ask_placeholder: "例如：上周哪类投诉涨得最多？",
    ask: "提问", new_conversation: "新对话", pick_open: "从待处理中选一条", pick_none: "（手动输入）",
    customer_message: "客户消息", reply_placeholder: "粘贴客户的原话", customer_name: "称呼", order_id: "订单号",
    draft: "生成草稿", draft_title: "草稿（可编辑）", copy: "复制", copied: "已复制", promises: "承诺检查",
    citations: "引用的历史案例", queue_title: "优先处理队列", at_risk_title: "流失风险客户（提前干预）",
    alerts_title: "最近的预警", col_id: "编号", col_score: "分数", col_category: "类别", col_text: "内容",
    col_reasons: "原因", col_customer: "客户", col_risk: "风险", col_signals: "信号", col_action: "建议动作",
    week: "周", generate: "生成", send_report: "发送到配置的目标", search_placeholder: "描述问题，或输入订单号 / SKU",
    search: "搜索", kind: "类型", kind_feedback: "反馈", kind_resolution: "处理记录", days: "最近天数",
    channel: "渠道", product: "商品", carrier: "快递", close: "关闭", key_title: "输入 API 密钥",
    key_help: "密钥只保存在本浏览器会话中（关闭标签页即清除）。", save: "保存", clear: "清除",
    need_key: "这个服务需要 API 密钥：请在右上角输入。", thinking: "计算中…", understood_true: "已理解",
    understood_partial: "部分理解", understood_false: "未理解", not_answered: "没有回答的部分",
    plan: "执行的查询计划", figures: "数据", value: "值", current: "本期", previous: "上期", change: "变化",
    count: "数量", share: "占比", cited: "依据的记录", path_rules: "规则路径（无 LLM）", path_llm: "LLM 措辞",
    review: "需要人工复核", no_review: "无需复核", supported: "有依据", unsupported: "无依据",
    right_evidence: "这是对的依据", wrong_evidence: "不相关", marked_right: "已标记为正确依据",
    marked_wrong: "已标记为不相关", marked_before: "此前已被标记为正确依据", similarity: "相似度",
    action: "处理", outcome: "结果", reply_sent: "当时的回复", use_for_reply: "起草回复", no_items: "没有记录",
    records: "条反馈", resolutions: "条处理记录", newest: "最新一条", asof_set: "数据截至日期已设为最新一条记录的日期（清空即为今天）。",
    no_promises: "草稿没有承诺退款、补偿、换货、金额或时限", generating: "生成中…", sent: "已发送", sent_before: "这一周的周报已发送过", not_sent: "未发送",
    no_hits: "没有找到相似记录", resolution_of: "处理记录", open_case: "打开", store_empty: "存储中还没有反馈：先导入数据（feedback-agent ingest 文件）。",
    examples: ["最近用户投诉最多的是什么？", "上周物流投诉比前一周多了多少？", "最近30天物流投诉主要集中在哪家快递？", "最近8周投诉的周趋势", "为什么用户对智能保温杯 Pro 不满？"],
  },
  en: {
    subtitle: "customer feedback workbench", tab_ask: "Ask", tab_reply: "Reply", tab_queue: "Queue", tab_reports: "Reports",
    tab_search: "Search", as_of: "Data as of", api_key: "API key", ask_placeholder: "e.g. which complaint category rose most last week?",
    ask: "Ask", new_conversation: "New conversation", pick_open: "Pick an open case", pick_none: "(type it in)",
    customer_message: "Customer message", reply_placeholder: "Paste what the customer wrote", customer_name: "Name",
    order_id: "Order", draft: "Draft reply", draft_title: "Draft (editable)", copy: "Copy", copied: "Copied",
    promises: "Promises checked", citations: "Past cases cited", queue_title: "Priority queue",
    at_risk_title: "Customers at risk (act before they review)", alerts_title: "Recent alerts", col_id: "Id",
    col_score: "Score", col_category: "Category", col_text: "Text", col_reasons: "Reasons", col_customer: "Customer",
    col_risk: "Risk", col_signals: "Signals", col_action: "Suggested action", week: "Week", generate: "Generate",
    send_report: "Send to the destinations", search_placeholder: "Describe the problem, or type an order number / SKU",
    search: "Search", kind: "Kind", kind_feedback: "feedback", kind_resolution: "resolutions", days: "Last days",
    channel: "Channel", product: "Product", carrier: "Carrier", close: "Close", key_title: "API key",
    key_help: "Kept in this browser session only (gone when the tab closes).", save: "Save", clear: "Clear",
    need_key: "This server needs an API key: enter it at the top right.", thinking: "Working…",
    understood_true: "understood", understood_partial: "partly understood", understood_false: "not understood",
    not_answered: "Not answered", plan: "Query plan it ran", figures: "Figures", value: "value", current: "current",
    previous: "previous", change: "change", count: "count", share: "share", cited: "Records behind it",
    path_rules: "rules path (no LLM)", path_llm: "worded by the LLM", review: "needs review", no_review: "no review flags",
    supported: "supported", unsupported: "unsupported", right_evidence: "Right evidence", wrong_evidence: "Not relevant",
    marked_right: "marked as the right evidence", marked_wrong: "marked not relevant",
    marked_before: "marked right by an agent before", similarity: "similarity", action: "action", outcome: "outcome",
    reply_sent: "reply sent then", use_for_reply: "Draft reply", no_items: "nothing listed", records: "feedback records",
    resolutions: "resolutions", newest: "newest", asof_set: "Data as of is set to the newest record's date (clear it for today).",
    no_promises: "the draft promises no refund, compensation, replacement, amount or deadline", generating: "Generating…", sent: "sent", sent_before: "this week's report went out before", not_sent: "not sent",
    no_hits: "No similar records", resolution_of: "resolution", open_case: "open",
    store_empty: "The store holds no feedback yet: ingest a file first (feedback-agent ingest FILE).",
    examples: ["What are customers complaining about most lately?", "How many logistics complaints last week vs the week before?", "Which carrier concentrates logistics complaints in the last 30 days?", "Weekly trend of complaints over the last 8 weeks", "Why are customers unhappy with 智能保温杯 Pro?"],
  },
};

const state = {
  lang: "zh",
  conversation: null,
  overview: null,
  lastDraftText: "",
  queueItems: [],
};

const $ = (sel) => document.querySelector(sel);
const t = (key) => (WORDS[state.lang][key] ?? WORDS.zh[key] ?? key);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// ------------------------------------------------------------------ the API

class ApiError extends Error {}

async function api(path, { method = "GET", body, params } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  }
  const headers = {};
  const key = sessionStorage.getItem("fa-key");
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const type = res.headers.get("content-type") || "";
  const data = type.includes("json") ? await res.json() : await res.text();
  if (res.status === 401) {
    openKeyDialog();
    throw new ApiError(t("need_key"));
  }
  if (!res.ok) throw new ApiError((data && data.error) || `HTTP ${res.status}`);
  return data;
}

function notice(message, kind = "error") {
  const box = $("#notice");
  box.textContent = message;
  box.className = kind === "info" ? "notice info" : "notice";
  box.hidden = !message;
}

async function guarded(fn) {
  try {
    notice("");
    return await fn();
  } catch (err) {
    notice(err instanceof ApiError ? err.message : String(err));
    return undefined;
  }
}

function asOf() {
  return $("#as-of").value || null;
}

// ------------------------------------------------------------------ language and tabs

function applyLanguage() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
  const box = $("#examples");
  box.replaceChildren(
    ...t("examples").map((q) => el("button", { type: "button", class: "ghost", text: q, onclick: () => ask(q) })),
  );
  renderStoreLine();
  fillCategories();
}

function showTab(name) {
  for (const b of document.querySelectorAll("nav [data-tab]")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
  for (const p of document.querySelectorAll("main > section")) p.hidden = p.id !== `tab-${name}`;
  if (name === "queue") loadQueue();
  if (name === "reply") loadPicks();
  if (name === "reports") fillWeeks();
}

// ------------------------------------------------------------------ overview

async function loadOverview() {
  if (!sessionStorage.getItem("fa-key")) {
    // ask for the key before the first call rather than after a refusal
    const health = await guarded(() => api("/healthz"));
    if (health && health.api_key_required) {
      openKeyDialog();
      return;
    }
  }
  const data = await guarded(() => api("/v1/status"));
  if (!data) return;
  state.overview = data;
  renderStoreLine();
  fillCategories();
  for (const [facet, id] of [["channel", "channels"], ["product", "products"], ["carrier", "carriers"]]) {
    $(`#${id}`).replaceChildren(...(data.facets[facet] || []).map((v) => el("option", { value: v })));
  }
  $("#report-send").hidden = !(data.destinations.report || []).length;
  if (!data.feedback) notice(t("store_empty"), "info");
  const newest = data.newest_record ? data.newest_record.slice(0, 10) : null;
  if (newest && !$("#as-of").value) {
    const age = (Date.now() - Date.parse(data.newest_record)) / 86400000;
    if (age > 2) {
      $("#as-of").value = newest;
      notice(t("asof_set"), "info");
    }
  }
  fillWeeks();
}

function renderStoreLine() {
  const d = state.overview;
  if (!d) return;
  const newest = d.newest_record ? ` · ${t("newest")} ${d.newest_record.slice(0, 16).replace("T", " ")}` : "";
  $("#store-line").textContent = `${d.feedback} ${t("records")} · ${d.resolutions} ${t("resolutions")} · ${d.embedding} · LLM ${d.llm}${newest}`;
}

function categoryName(id) {
  const cats = (state.overview && state.overview.categories) || [];
  const c = cats.find((x) => x.id === id);
  if (!c) return id || "-";
  return state.lang === "zh" ? c.name_zh || c.id : c.name_en || c.id;
}

function fillCategories() {
  const select = $("#search-category");
  const keep = select.value;
  const cats = (state.overview && state.overview.categories) || [];
  select.replaceChildren(el("option", { value: "" }), ...cats.map((c) => el("option", { value: c.id, text: `${categoryName(c.id)} (${c.id})` })));
  select.value = keep;
}

// ------------------------------------------------------------------ records

async function openRecord(id) {
  const dialog = $("#record-dialog");
  const body = $("#record-body");
  $("#record-title").textContent = id;
  body.replaceChildren(el("p", { class: "muted", text: t("thinking") }));
  if (!dialog.open) dialog.showModal();
  const r = await guarded(() => api(`/v1/records/${encodeURIComponent(id)}`));
  if (!r) {
    body.replaceChildren();
    return;
  }
  const facts = ["created_at", "channel", "product", "carrier", "region", "order_id", "customer_tier", "rating"]
    .filter((k) => r[k] !== null && r[k] !== undefined && r[k] !== "")
    .map((k) => el("tr", {}, el("th", { text: k }), el("td", { text: r[k] })));
  const labels = ["category", "sentiment", "urgency"].map((k) =>
    el("tr", {}, el("th", { text: k }), el("td", { text: `${r[k] ?? "-"}${r[`${k}_source`] ? ` (${r[`${k}_source`]})` : ""}` })),
  );
  body.replaceChildren(
    el("p", { class: "record-text", text: r.text }),
    el("table", { class: "figures" }, el("tbody", {}, ...facts, ...labels)),
    ...(r.resolutions || []).map((res) =>
      el("div", { class: "card" },
        el("div", { class: "meta", text: `${t("resolution_of")} ${res.id} · ${res.outcome}` }),
        el("div", { text: res.action }),
        res.compensation ? el("div", { class: "meta", text: res.compensation }) : null),
    ),
  );
}

function chips(ids) {
  return el("div", { class: "chips" }, ...ids.map((id) => el("button", { type: "button", class: "chip", text: id, onclick: () => openRecord(id) })));
}

// ------------------------------------------------------------------ ask

function chartData(answer) {
  // The first tool result that is a series or a ranking (rows or groups) is the answer's measure;
  // later calls are context (e.g. the same facet over all feedback, for a share).
  for (const call of answer.tool_calls || []) {
    const r = call.result || {};
    const slice = { filters: r.filters || {}, period: r.period || r.current_period || null };
    if (Array.isArray(r.periods) && Array.isArray(r.totals) && r.periods.length > 1) {
      return { kind: "series", field: r.field, labels: r.periods, values: r.totals, ...slice };
    }
    if (Array.isArray(r.rows) && r.rows.length) {
      return { kind: "compare", field: r.field, rows: r.rows.slice(0, 8), before: r.previous_period, ...slice };
    }
    if (Array.isArray(r.groups) && r.groups.length) {
      return { kind: "groups", field: r.field, rows: r.groups.slice(0, 8), ...slice };
    }
  }
  return null;
}

function caption(data) {
  // What the figures count: the facet, the period and the filters, as the tool computed them.
  const parts = [];
  if (data.field) parts.push(data.field);
  if (data.period) parts.push(`${data.period.from} – ${data.period.to}`);
  for (const [k, v] of Object.entries(data.filters)) parts.push(`${k}=${k === "category" ? label("category", v) : v}`);
  return el("div", { class: "muted caption", text: `${t("figures")}: ${parts.join(" · ")}` });
}

function label(field, value) {
  return field === "category" ? `${categoryName(value)}` : value;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function barChart(items, { second } = {}) {
  // Horizontal bars: items = [{label, value, value2?}]
  const rowH = second ? 26 : 20;
  const width = 640, left = 170, right = 60;
  const height = items.length * rowH + 10;
  const max = Math.max(1, ...items.map((i) => Math.max(i.value, i.value2 || 0)));
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
  items.forEach((item, n) => {
    const y = 5 + n * rowH;
    const w = ((width - left - right) * item.value) / max;
    root.append(svg("text", { x: left - 6, y: y + 12, "text-anchor": "end" }, item.label.length > 22 ? `${item.label.slice(0, 21)}…` : item.label));
    root.append(svg("rect", { class: "bar", x: left, y, width: Math.max(1, w), height: second ? 11 : 14 }));
    root.append(svg("text", { x: left + w + 4, y: y + 11 }, String(item.value)));
    if (second) {
      const w2 = ((width - left - right) * (item.value2 || 0)) / max;
      root.append(svg("rect", { class: "bar prev", x: left, y: y + 12, width: Math.max(1, w2), height: 9 }));
    }
  });
  return root;
}

function seriesChart(labels, values) {
  const width = 640, height = 180, left = 30, bottom = 40, top = 10;
  const max = Math.max(1, ...values);
  const step = (width - left - 10) / values.length;
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
  root.append(svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width - 5, y2: height - bottom }));
  values.forEach((v, n) => {
    const h = ((height - bottom - top) * v) / max;
    const x = left + n * step + step * 0.15;
    root.append(svg("rect", { class: "bar", x, y: height - bottom - h, width: step * 0.7, height: Math.max(1, h) }));
    root.append(svg("text", { x: x + step * 0.35, y: height - bottom - h - 3, "text-anchor": "middle" }, String(v)));
    root.append(svg("text", { x: x + step * 0.35, y: height - bottom + 14, "text-anchor": "middle" }, String(labels[n]).replace(/^\d{4}-/, "")));
  });
  return root;
}

function figures(data) {
  if (!data) return null;
  return el("div", { class: "figures-block" }, caption(data), figureBody(data));
}

function figureBody(data) {
  if (data.kind === "series") {
    return el("div", {}, seriesChart(data.labels, data.values),
      el("table", { class: "figures" }, el("tbody", {},
        el("tr", {}, el("th", { text: t("value") }), ...data.labels.map((l) => el("th", { text: l }))),
        el("tr", {}, el("td", { text: t("count") }), ...data.values.map((v) => el("td", { class: "num", text: v }))))));
  }
  if (data.kind === "compare") {
    const items = data.rows.map((r) => ({ label: label(data.field, r.value), value: r.current, value2: r.previous }));
    return el("div", {}, barChart(items, { second: true }),
      el("table", { class: "figures" }, el("thead", {}, el("tr", {},
        el("th", { text: t("value") }), el("th", { text: `${t("current")} ${data.period ? `${data.period.from}–${data.period.to}` : ""}` }),
        el("th", { text: `${t("previous")} ${data.before ? `${data.before.from}–${data.before.to}` : ""}` }), el("th", { text: t("change") }))),
      el("tbody", {}, ...data.rows.map((r) => el("tr", {},
        el("td", { text: label(data.field, r.value) }), el("td", { class: "num", text: r.current }),
        el("td", { class: "num", text: r.previous }),
        el("td", { class: "num", text: `${r.change > 0 ? "+" : ""}${r.change}${r.change_pct === null || r.change_pct === undefined ? "" : ` (${r.change_pct > 0 ? "+" : ""}${r.change_pct}%)`}` }))))));
  }
  const items = data.rows.map((r) => ({ label: label(data.field, r.value), value: r.count }));
  return el("div", {}, barChart(items),
    el("table", { class: "figures" }, el("thead", {}, el("tr", {}, el("th", { text: t("value") }), el("th", { text: t("count") }), el("th", { text: t("share") }))),
      el("tbody", {}, ...data.rows.map((r) => el("tr", {}, el("td", { text: label(data.field, r.value) }),
        el("td", { class: "num", text: r.count }), el("td", { class: "num", text: `${(r.share * 100).toFixed(1)}%` }))))));
}

function renderAnswer(a) {
  const understood = a.understood === true ? "true" : a.understood === "partial" ? "partial" : "false";
  const badge = el("span", { class: `badge ${understood === "true" ? "yes" : understood === "partial" ? "partial" : "no"}`, text: t(`understood_${understood}`) });
  const path = el("span", { class: "badge", text: a.path === "llm" ? t("path_llm") : t("path_rules") });
  const node = el("div", { class: "msg agent" },
    el("div", { class: "answer", text: a.answer }),
    el("div", {}, badge, path),
    a.not_answered && a.not_answered.length
      ? el("div", { class: "not-answered" }, el("strong", { text: `${t("not_answered")}: ` }), a.not_answered.join("; "))
      : null,
    figures(chartData(a)),
    a.citations && a.citations.length ? el("div", {}, el("div", { class: "muted", text: t("cited") }), chips(a.citations)) : null,
    a.plan ? el("details", {}, el("summary", { text: t("plan") }), el("pre", { class: "plan", text: JSON.stringify(a.plan, null, 2) })) : null,
  );
  return node;
}

async function ask(question) {
  question = (question || "").trim();
  if (!question) return;
  const chat = $("#chat");
  chat.append(el("div", { class: "msg user", text: question }));
  const waiting = el("div", { class: "msg agent muted", text: t("thinking") });
  chat.append(waiting);
  chat.scrollTop = chat.scrollHeight;
  $("#ask-input").value = "";
  const body = { question, as_of: asOf() };
  if (state.conversation) body.conversation_id = state.conversation;
  const a = await guarded(() => api("/v1/ask", { method: "POST", body }));
  waiting.remove();
  if (!a) return;
  state.conversation = a.conversation_id;
  chat.append(renderAnswer(a));
  chat.scrollTop = chat.scrollHeight;
}

// ------------------------------------------------------------------ reply

async function loadPicks() {
  const q = await guarded(() => api("/v1/queue", { params: { limit: 50, as_of: asOf(), lang: state.lang } }));
  if (!q) return;
  state.queueItems = q.items;
  const select = $("#reply-pick");
  const keep = select.value;
  select.replaceChildren(el("option", { value: "", text: t("pick_none") }),
    ...q.items.map((i) => el("option", { value: i.id, text: `${i.id} · ${i.text.slice(0, 40)}` })));
  select.value = keep;
}

async function draftReply() {
  const text = $("#reply-text").value.trim();
  if (!text) return;
  const body = { text };
  if ($("#reply-customer").value.trim()) body.customer = $("#reply-customer").value.trim();
  if ($("#reply-order").value.trim()) body.order_id = $("#reply-order").value.trim();
  const d = await guarded(() => api("/v1/reply", { method: "POST", body }));
  if (!d) return;
  state.lastDraftText = text;
  $("#reply-result").hidden = false;
  $("#reply-draft").value = d.reply;
  $("#copy-state").textContent = "";
  $("#reply-path").textContent = d.path === "llm" ? t("path_llm") : t("path_rules");
  $("#reply-flags").replaceChildren(
    d.needs_review
      ? el("div", { class: "flag" }, el("strong", { text: `${t("review")}: ` }), d.reasons.join("; "))
      : el("div", { class: "flag ok", text: t("no_review") }),
  );
  $("#reply-promises").replaceChildren(
    ...(d.promises.length
      ? d.promises.map((p) =>
        el("li", { text: `${p.kind}: ${p.text} — ${p.supported_by ? `${t("supported")} (${p.supported_by})` : t("unsupported")}` }))
      : [el("li", { class: "muted", text: t("no_promises") })]),
  );
  const cited = new Set(d.citations);
  $("#reply-evidence").replaceChildren(
    ...d.evidence.map((ev) => evidenceCard(ev, cited.has(ev.resolution_id), text)),
  );
}

function evidenceCard(ev, cited, message) {
  const status = el("span", { class: "muted mark-state", text: ev.marked ? t("marked_before") : "" });
  const card = el("div", { class: `card evidence${ev.marked ? " marked" : ""}`, "data-resolution": ev.resolution_id },
    el("div", { class: "meta" },
      el("button", { type: "button", class: "chip", text: ev.resolution_id, onclick: () => openRecord(ev.feedback_id) }),
      ` ${cited ? "✓ " : ""}${t("similarity")} ${ev.similarity} · ${t("outcome")} ${ev.outcome}`),
    el("div", { class: "muted", text: ev.feedback_text }),
    el("div", {}, el("strong", { text: `${t("action")}: ` }), ev.action),
    el("div", { class: "meta" }, `${t("reply_sent")}: `, ev.reply),
    el("div", { class: "row" },
      el("button", { type: "button", class: "ghost mark-right", text: t("right_evidence"), onclick: () => mark(ev.resolution_id, "right", message, status, card) }),
      el("button", { type: "button", class: "ghost mark-wrong", text: t("wrong_evidence"), onclick: () => mark(ev.resolution_id, "wrong", message, status, card) }),
      status),
  );
  return card;
}

async function mark(resolutionId, verdict, message, status, card) {
  const m = await guarded(() => api("/v1/reply/marks", { method: "POST", body: { text: message, resolution_id: resolutionId, verdict } }));
  if (!m) return;
  status.textContent = verdict === "right" ? t("marked_right") : t("marked_wrong");
  card.classList.toggle("marked", verdict === "right");
}

async function copyDraft() {
  const text = $("#reply-draft").value;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    $("#reply-draft").select();
    document.execCommand("copy");
  }
  $("#copy-state").textContent = t("copied");
}

// ------------------------------------------------------------------ queue, at-risk, alerts

async function loadQueue() {
  const [q, risk, alerts] = await Promise.all([
    guarded(() => api("/v1/queue", { params: { limit: 30, as_of: asOf(), lang: state.lang } })),
    guarded(() => api("/v1/at-risk", { params: { limit: 15, as_of: asOf(), lang: state.lang } })),
    guarded(() => api("/v1/alerts", { params: { limit: 10 } })),
  ]);
  if (q) {
    state.queueItems = q.items;
    $("#queue-note").textContent = `${q.open_total} · ${Object.entries(q.weights).map(([k, v]) => `${k} ${v}`).join(", ")}`;
    const rows = q.items.map((item, n) => el("tr", {},
      el("td", { class: "num", text: n + 1 }),
      el("td", {}, el("button", { type: "button", class: "chip", text: item.id, onclick: () => openRecord(item.id) })),
      el("td", { class: "num", text: item.score }),
      el("td", { text: categoryName(item.category) }),
      el("td", { text: item.text }),
      el("td", { class: "reasons", text: item.reasons.map((r) => `${r.text} +${r.points}`).join("; ") }),
      el("td", {}, el("button", { type: "button", class: "ghost", text: t("use_for_reply"), onclick: () => useForReply(item) }))));
    $("#queue-table tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 7, class: "muted", text: t("no_items") }))]));
  }
  if (risk) {
    $("#risk-note").textContent = `${risk.candidates} · ${risk.method_note}`;
    const rows = risk.items.map((item, n) => el("tr", {},
      el("td", { class: "num", text: n + 1 }),
      el("td", { text: item.customer }),
      el("td", { class: "num", text: risk.method === "model" ? item.risk.toFixed(2) : item.risk }),
      el("td", { class: "reasons", text: item.signals.map((s) => s.text).join("; ") }),
      el("td", { text: item.suggestion ? `${item.suggestion.action} (${item.suggestion.resolution_id})` : item.suggestion_note || "" })));
    $("#risk-table tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 5, class: "muted", text: t("no_items") }))]));
  }
  if (alerts) {
    $("#alerts-list").replaceChildren(...(alerts.length ? alerts : []).map((a) => el("li", {},
      el("strong", { text: a.message.title }), " ",
      el("span", { class: "muted", text: a.deliveries.map((d) => `${d.destination}: ${d.status}`).join(", ") }),
      chips(a.message.record_ids))));
    if (!alerts.length) $("#alerts-list").replaceChildren(el("li", { class: "muted", text: t("no_items") }));
  }
}

function useForReply(item) {
  $("#reply-text").value = item.text;
  $("#reply-order").value = item.order_id || "";
  showTab("reply");
  $("#reply-pick").value = item.id;
}

// ------------------------------------------------------------------ reports

function isoWeek(date) {
  const d = new Date(Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()));
  const day = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - day);
  const yearStart = new Date(Date.UTC(d.getUTCFullYear(), 0, 1));
  const week = Math.ceil(((d - yearStart) / 86400000 + 1) / 7);
  return `${d.getUTCFullYear()}-W${String(week).padStart(2, "0")}`;
}

function fillWeeks() {
  const select = $("#report-week");
  const keep = select.value;
  const end = asOf() ? new Date(`${asOf()}T12:00:00`) : new Date();
  const weeks = [];
  const day = new Date(end);
  day.setDate(day.getDate() - 7); // the last full week first: the week before the reference day's
  for (let i = 0; i < 12; i++) {
    weeks.push(isoWeek(day));
    day.setDate(day.getDate() - 7);
  }
  const current = isoWeek(end);
  select.replaceChildren(...[current, ...weeks].map((w) => el("option", { value: w, text: w })));
  select.value = weeks.includes(keep) || keep === current ? keep : weeks[0];
}

async function loadReport() {
  const week = $("#report-week").value;
  $("#report-state").textContent = t("generating");
  const html = await guarded(() => api(`/v1/reports/${week}`, { params: { format: "html", lang: state.lang } }));
  $("#report-state").textContent = "";
  if (typeof html === "string") $("#report-frame").srcdoc = html;
}

async function sendReport() {
  const week = $("#report-week").value;
  const r = await guarded(() => api(`/v1/reports/${week}/send`, { method: "POST", params: { lang: state.lang } }));
  if (!r) return;
  const parts = r.deliveries.map((d) => `${d.destination}: ${d.status === "sent" ? t("sent") : `${t("not_sent")} (${d.error})`}`);
  $("#report-state").textContent = r.queued || parts.length ? parts.join("; ") : t("sent_before");
}

// ------------------------------------------------------------------ search

async function search() {
  const q = $("#search-q").value.trim();
  if (!q) return;
  const days = $("#search-days").value;
  const params = {
    q, k: 10, kind: $("#search-kind").value, days: days || null, as_of: days ? asOf() : null,
    category: $("#search-category").value, channel: $("#search-channel").value.trim(),
    product: $("#search-product").value.trim(), carrier: $("#search-carrier").value.trim(),
  };
  const hits = await guarded(() => api("/v1/similar", { params }));
  if (!hits) return;
  $("#search-results").replaceChildren(
    ...(hits.length ? hits.map((h) => el("div", { class: "card hit" },
      el("div", { class: "meta" },
        el("button", { type: "button", class: "chip", text: h.id, onclick: () => openRecord(h.kind === "resolution" ? h.record.feedback_id : h.id) }),
        ` ${t("similarity")} ${h.similarity === null || h.similarity === undefined ? "-" : h.similarity.toFixed(3)} · ${h.record.created_at ? h.record.created_at.slice(0, 10) : ""} · ${categoryName(h.record.category)}`),
      el("div", { text: h.text }),
      ...(h.resolutions || []).map((r) => el("div", { class: "meta", text: `${t("resolution_of")} ${r.id} · ${r.outcome}: ${r.action}` }))))
      : [el("p", { class: "muted", text: t("no_hits") })]),
  );
}

// ------------------------------------------------------------------ key

function openKeyDialog() {
  const dialog = $("#key-dialog");
  if (!dialog.open) dialog.showModal();
  $("#key-input").focus();
}

// ------------------------------------------------------------------ start

function start() {
  const saved = sessionStorage.getItem("fa-lang");
  state.lang = saved || (navigator.language && navigator.language.toLowerCase().startsWith("zh") ? "zh" : "en");
  $("#lang").value = state.lang;
  applyLanguage();
  for (const b of document.querySelectorAll("nav [data-tab]")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("#lang").addEventListener("change", () => {
    state.lang = $("#lang").value;
    sessionStorage.setItem("fa-lang", state.lang);
    applyLanguage();
  });
  $("#as-of").addEventListener("change", fillWeeks);
  $("#ask-form").addEventListener("submit", (e) => { e.preventDefault(); ask($("#ask-input").value); });
  $("#ask-reset").addEventListener("click", () => { state.conversation = null; $("#chat").replaceChildren(); });
  $("#reply-form").addEventListener("submit", (e) => { e.preventDefault(); draftReply(); });
  $("#reply-pick").addEventListener("change", () => {
    const item = state.queueItems.find((i) => i.id === $("#reply-pick").value);
    if (item) { $("#reply-text").value = item.text; $("#reply-order").value = item.order_id || ""; }
  });
  $("#reply-copy").addEventListener("click", copyDraft);
  $("#report-form").addEventListener("submit", (e) => { e.preventDefault(); loadReport(); });
  $("#report-send").addEventListener("click", sendReport);
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  $("#key-button").addEventListener("click", openKeyDialog);
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("#key-input").value.trim();
    if (key) sessionStorage.setItem("fa-key", key);
    $("#key-input").value = "";
    $("#key-dialog").close();
    loadOverview();
  });
  $("#key-clear").addEventListener("click", () => { sessionStorage.removeItem("fa-key"); $("#key-dialog").close(); });
  $("#record-dialog .close").addEventListener("click", () => $("#record-dialog").close());
  // A Chinese font fetched after the first paint: label the page again, so text first drawn
  // without it is shaped anew (Chromium keeps the missing glyphs of an unchanged text otherwise).
  document.fonts.addEventListener("loadingdone", () => applyLanguage());
  loadOverview();
}

document.addEventListener("DOMContentLoaded", start);
