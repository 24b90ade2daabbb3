// The emulator's page: polls GET /_emulator/overview about once a second and
// redraws. No framework, no build step; charts are SVG drawn here. Every text
// from the emulator goes in with textContent, never as HTML.
"use strict";
(function () {
  const POLL_MS = 1000;
  const KEEP_EVENTS = 20;
  const SVG = "http://www.w3.org/2000/svg";
  let cursor = 0;
  let events = [];
  let filter = "";
  let failures = 0;

  const $ = (id) => document.getElementById(id);
  const fmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 });
  const num = (v) => (v === null || v === undefined ? "–" : fmt.format(v));

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "title") node.title = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function badge(text, kind) {
    return el("span", { class: "badge " + kind }, text);
  }

  function time(iso) {
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleTimeString();
  }

  function fill(tbody, rows, empty, columns) {
    tbody.replaceChildren();
    if (!rows.length) {
      const td = el("td", { class: "empty", colspan: String(columns) }, empty);
      tbody.append(el("tr", {}, td));
      return;
    }
    for (const row of rows) tbody.append(row);
  }

  function chart(hourly) {
    const width = 360, height = 110, top = 6, bottom = 18, left = 34;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "chart");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("preserveAspectRatio", "none");
    const max = Math.max(0, ...hourly.map((h) => h.value));
    const plot = height - top - bottom;
    const step = (width - left) / Math.max(1, hourly.length);
    const add = (tag, attrs, text) => {
      const node = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      svg.append(node);
      return node;
    };
    add("line", { x1: left, x2: width, y1: top + plot, y2: top + plot });
    add("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, max ? compact(max) : "0");
    add("text", { x: left - 4, y: top + plot, "text-anchor": "end" }, "0");
    hourly.forEach((h, i) => {
      const tall = max ? (h.value / max) * plot : 0;
      const bar = add("rect", {
        class: "bar",
        x: (left + i * step + step * 0.12).toFixed(1),
        y: (top + plot - tall).toFixed(1),
        width: (step * 0.76).toFixed(1),
        height: Math.max(tall, h.value ? 1 : 0).toFixed(1),
      });
      const start = new Date(h.start * 1000);
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${start.toISOString().slice(0, 13)}:00Z  ${num(h.value)} (${h.events} events)`;
      bar.append(title);
      const lastBar = i === hourly.length - 1;
      if (i % 6 === 0 || lastBar) {
        add("text", { x: lastBar ? width : left + i * step + step / 2, y: height - 4,
          "text-anchor": lastBar ? "end" : "middle" }, start.toISOString().slice(11, 13) + "h");
      }
    });
    return svg;
  }

  function compact(v) {
    return new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 }).format(v);
  }

  function drawMeters(meters) {
    const box = $("meters");
    if (!meters.length) return;
    // Oldest first: a meter keeps its place as others are created.
    box.replaceChildren(...meters.slice().reverse().map((m) => {
      const card = el("div", { class: "meter", "data-event-name": m.event_name },
        el("div", { class: "head" },
          el("div", {}, el("span", { class: "name" }, m.display_name),
            el("span", { class: "formula" }, `${m.event_name} · ${m.formula}`)),
          el("div", { class: "value", title: "all customers, whole range" }, num(m.value))),
        el("div", { class: "meta" },
          `${num(m.events)} events · ${num(m.customers)} customer${m.customers === 1 ? "" : "s"} · ${m.id}` +
          (m.formula === "last" ? " · bars: events" : "")),
        chart(m.hourly));
      return card;
    }));
  }

  function drawSections(sections) {
    const box = $("sections");
    const names = Object.keys(sections || {});
    box.replaceChildren();
    for (const name of names) {
      const section = sections[name] || {};
      box.append(el("h2", {}, section.title || name));
      for (const [key, value] of Object.entries(section)) {
        if (key === "title") continue;
        if (Array.isArray(value)) {
          box.append(el("h3", {}, key.replace(/_/g, " ")));
          const columns = value.length ? Object.keys(value[0]) : [];
          const table = el("table", { "data-section": `${name}.${key}` },
            el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {}, c)))));
          const body = el("tbody");
          fill(body, value.map((row) => el("tr", {}, ...columns.map((c) =>
            el("td", { class: typeof row[c] === "number" ? "num" : "" },
              typeof row[c] === "number" ? num(row[c]) : JSON.stringify(row[c]).replace(/^"|"$/g, ""))))),
          "none yet", Math.max(1, columns.length));
          table.append(body);
          box.append(table);
        } else {
          box.append(el("p", { class: "note" }, `${key}: ${typeof value === "object" ? JSON.stringify(value) : value}`));
        }
      }
    }
  }

  function drawTotals(totals) {
    const rows = totals.data.map((t) => el("tr", { "data-customer": t.customer, "data-event-name": t.event_name },
      el("td", {}, t.event_name), el("td", {}, t.customer), el("td", { class: "num" }, num(t.value)),
      el("td", { class: "num" }, num(t.events))));
    fill($("totals").tBodies[0], rows, filter ? "no customer matches" : "no usage yet", 4);
    $("totals-note").textContent = totals.count > totals.data.length
      ? `showing ${num(totals.data.length)} of ${num(totals.count)}: each meter's largest customers` : "";
  }

  function status(e) {
    if (e.cancelled) return badge("cancelled", "muted");
    if (e.error) return badge(e.error, "bad");
    return badge("counted", "ok");
  }

  function drawEvents(page) {
    if (page.reset) events = [];
    const fresh = new Set(page.data.map((e) => e.identifier));
    events = page.data.concat(events.filter((e) => !fresh.has(e.identifier))).slice(0, KEEP_EVENTS);
    const rows = events.map((e) => el("tr", { class: fresh.has(e.identifier) && cursor ? "new" : "", "data-identifier": e.identifier, title: JSON.stringify(e.payload) },
      el("td", {}, time(e.received_at)), el("td", {}, e.event_name), el("td", {}, e.customer || "–"),
      el("td", { class: "num" }, num(e.value)), el("td", {}, status(e))));
    fill($("events").tBodies[0], rows, "no events yet", 5);
  }

  function drawTruth(data) {
    fill($("reports").tBodies[0], data.reports.recent.map((r) => el("tr", { "data-report": r.id, title: r.id },
      el("td", {}, time(r.created)), el("td", {}, r.type.replace("v1.billing.meter.", "")),
      el("td", { class: "num" }, num(r.error_count)), el("td", {}, r.summary))), "no error reports", 4);
    fill($("errors").tBodies[0], data.errors.recent.map((e) => el("tr", {},
      el("td", {}, badge(e.code, "bad")), el("td", {}, e.event_name), el("td", {}, e.identifier))),
    "every event counted", 3);
    const kind = { delivered: "ok", pending: "warn", failed: "bad" };
    fill($("deliveries").tBodies[0], data.webhooks.recent.map((d) => el("tr", {},
      el("td", { title: d.event }, d.type.replace("v1.billing.meter.", "")), el("td", {}, d.url),
      el("td", {}, badge(d.status, kind[d.status] || "muted")), el("td", { class: "num" }, d.attempts),
      el("td", {}, d.last_status === null ? (d.last_error || "–") : d.last_status))),
    data.webhooks.endpoints ? "no deliveries yet" : "no webhook endpoint (--webhook URL)", 5);
    const answered = Object.entries(data.requests).filter(([k]) => !k.startsWith("admin.") && k !== "page");
    fill($("requests").tBodies[0], answered.map(([endpoint, statuses]) => el("tr", {},
      el("td", {}, endpoint), el("td", {}, ...Object.entries(statuses).map(([s, n]) =>
        badge(`${s} × ${num(n)}`, s.startsWith("2") ? "ok" : s.startsWith("4") && s !== "429" ? "warn" : "bad"))))),
    "no requests yet", 2);
    fill($("refused").tBodies[0], data.refused.map((r) => el("tr", {},
      el("td", {}, r.endpoint), el("td", {}, r.status), el("td", {}, r.code), el("td", { class: "num" }, num(r.count)))),
    "none: no fault injected", 4);
  }

  function drawCards(data) {
    const c = data.counters;
    $("c-events").textContent = num(c.events_stored);
    $("c-events-sub").textContent = `${num(c.duplicates)} duplicates · ${num(c.cancelled)} cancelled`;
    $("c-meters").textContent = num(c.meters);
    $("c-customers").textContent = `${num(data.customers)} customer${data.customers === 1 ? "" : "s"} with usage`;
    $("c-invalid").textContent = num(c.invalid);
    $("c-reports").textContent = `${num(data.reports.count)} error report${data.reports.count === 1 ? "" : "s"}`;
    $("c-sessions").textContent = num(c.sessions_created);
    $("c-sessions-sub").textContent = `${num(c.sessions_active)} active`;
    const refused = data.refused.reduce((n, r) => n + r.count, 0);
    $("c-refused").textContent = num(refused);
    $("c-refused-sub").textContent = refused ? data.refused.map((r) => r.status).filter((s, i, a) => a.indexOf(s) === i).join(", ") : "no fault injected";
    const by = data.webhooks.by_status;
    const total = Object.values(by).reduce((n, v) => n + v, 0);
    $("c-webhooks").textContent = num(total);
    $("c-webhooks-sub").textContent = total ? Object.entries(by).map(([s, n]) => `${num(n)} ${s}`).join(" · ") : `${data.webhooks.endpoints} endpoint${data.webhooks.endpoints === 1 ? "" : "s"}`;
  }

  function setLive(ok, text) {
    $("live").className = "dot " + (ok ? "live" : "down");
    $("live-text").textContent = text;
  }

  async function poll() {
    try {
      const query = new URLSearchParams({ after: String(cursor), limit: String(KEEP_EVENTS) });
      if (filter) query.set("customer", filter);
      const response = await fetch(`/_emulator/overview?${query}`, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      drawCards(data);
      drawMeters(data.meters);
      drawSections(data.sections);
      drawTotals(data.totals);
      drawEvents(data.events);
      drawTruth(data);
      cursor = data.events.cursor;
      failures = 0;
      setLive(true, "live · " + new Date(data.now * 1000).toLocaleTimeString());
      document.body.dataset.cursor = String(cursor);
    } catch (err) {
      failures += 1;
      setLive(false, `emulator unreachable (${err.message || err}); retrying`);
    }
    setTimeout(poll, failures ? Math.min(5000, POLL_MS * (1 + failures)) : POLL_MS);
  }

  $("filter").addEventListener("input", (e) => { filter = e.target.value.trim(); });
  poll();
})();
