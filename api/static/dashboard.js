// streamrec's live dashboard: the metrics topic through /v1/metrics/stream (server-sent events
// read with fetch, so the API key travels in a header, never in a URL), folded per second.
"use strict";

const SPAN_S = 120;            // seconds the charts show
const openedAt = Date.now();
const windows = new Map();     // window end (ms) -> figures of that second
const gauges = new Map();      // name|source|labels -> {labels, value}
const decisions = [];
let appliedSinceOpen = 0, deadSinceOpen = 0;

function windowAt(end) {
  let w = windows.get(end);
  if (!w) {
    w = { applied: 0, dup: 0, requests: 0, e2f: null, e2r: null, api: null, lists: {}, hits: {} };
    windows.set(end, w);
    for (const k of windows.keys()) if (k < end - (SPAN_S + 5) * 1000) windows.delete(k);
  }
  return w;
}

function merge(hist, d) {
  if (!hist) return { bounds: d.bounds, counts: d.counts.slice() };
  d.counts.forEach((c, i) => { hist.counts[i] += c; });
  return hist;
}

function quantile(hist, q) {
  if (!hist) return null;
  const total = hist.counts.reduce((a, b) => a + b, 0);
  if (!total) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < hist.counts.length; i++) {
    const n = hist.counts[i];
    if (n && seen + n >= rank) {
      if (i === hist.bounds.length) return hist.bounds[hist.bounds.length - 1];
      const lower = i ? hist.bounds[i - 1] : 0;
      return lower + (hist.bounds[i] - lower) * (rank - seen) / n;
    }
    seen += n;
  }
  return hist.bounds[hist.bounds.length - 1];
}

function onRecord(r) {
  if (r.type === "io.streamrec.decision.v1") {
    decisions.unshift(r.data);
    decisions.length = Math.min(decisions.length, 20);
    return;
  }
  if (r.type !== "io.streamrec.metric.v1") return;  // a newer schema: not ours to read
  const d = r.data, w = windowAt(d.end_ms), fresh = d.end_ms > openedAt;
  const arm = (d.labels.model_version || "") + " · " + (d.labels.bucket || "");
  switch (d.name) {
    case "streamrec_events_applied": w.applied += d.value; if (fresh) appliedSinceOpen += d.value; break;
    case "streamrec_events_duplicate": w.dup += d.value; break;
    case "streamrec_dead_letters": if (fresh) deadSinceOpen += d.value; break;
    case "streamrec_event_to_feature": w.e2f = merge(w.e2f, d); break;
    case "streamrec_event_to_recs": w.e2r = merge(w.e2r, d); break;
    case "streamrec_api_requests": w.requests += d.value; break;
    case "streamrec_api_latency": w.api = merge(w.api, d); break;
    case "streamrec_recs_served": w.lists[arm] = (w.lists[arm] || 0) + d.value; break;
    case "streamrec_recs_hits": w.hits[arm] = (w.hits[arm] || 0) + d.value; break;
    default:
      if (d.kind === "gauge") {
        const key = d.name + "|" + r.source + "|" + JSON.stringify(d.labels);
        gauges.set(key, { name: d.name, labels: d.labels, value: d.value, at: d.end_ms });
      }
  }
}

function gaugeSum(name) {
  let total = 0, any = false;
  for (const g of gauges.values()) if (g.name === name) { total += g.value; any = true; }
  return any ? total : null;
}

function seconds() {
  const last = Math.max(...windows.keys(), 0);
  const out = [];
  for (let t = last - (SPAN_S - 1) * 1000; t <= last; t += 1000) out.push(windows.get(t) || null);
  return out;
}

const fmt = (v, unit = "") => v == null ? "–"
  : (Number.isInteger(v) || v >= 100 ? Math.round(v).toLocaleString() : v.toFixed(1)) + unit;
const COLORS = ["#5ad1a4", "#6ea8fe", "#f6c177", "#eb6f92", "#c4a7e7", "#9ccfd8"];

function chart(id, series) {
  const canvas = document.getElementById(id);
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * dpr; canvas.height = height * dpr;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, width, height);
  const values = series.flatMap(s => s.points.filter(v => v != null));
  const top = Math.max(1e-9, ...values) * 1.15;
  const left = 44, bottom = height - 16;
  ctx.strokeStyle = "#243047"; ctx.fillStyle = "#8b96ad"; ctx.font = "11px system-ui";
  for (let i = 0; i <= 3; i++) {
    const y = bottom - (bottom - 8) * i / 3;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(width, y); ctx.stroke();
    ctx.fillText(fmt(top * i / 3), 2, y + 4);
  }
  series.forEach((s, n) => {
    ctx.strokeStyle = COLORS[n % COLORS.length]; ctx.lineWidth = 1.6; ctx.beginPath();
    let pen = false;
    s.points.forEach((v, i) => {
      if (v == null) { pen = false; return; }
      const x = left + (width - left) * i / (s.points.length - 1), y = bottom - (bottom - 8) * v / top;
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true;
    });
    ctx.stroke();
  });
  let x = left + 6;  // the legend, one label after the other
  series.forEach((s, n) => {
    ctx.fillStyle = COLORS[n % COLORS.length];
    ctx.fillText(s.label, x, height - 2);
    x += ctx.measureText(s.label).width + 14;
  });
}

function render() {
  const secs = seconds(), recent = secs.slice(-5).filter(Boolean);
  const per = f => recent.length ? recent.reduce((a, w) => a + f(w), 0) / recent.length : null;
  const mergeAll = key => recent.reduce((h, w) => w[key] ? merge(h, w[key]) : h, null);
  document.getElementById("t-applied").textContent = fmt(per(w => w.applied));
  document.getElementById("events-applied-total").textContent = appliedSinceOpen.toLocaleString();
  document.getElementById("t-dead").textContent = deadSinceOpen.toLocaleString();
  document.getElementById("t-e2r").textContent = fmt(quantile(mergeAll("e2r"), 0.99), " ms");
  document.getElementById("t-lag").textContent = fmt(gaugeSum("streamrec_consumer_lag"));
  document.getElementById("t-rps").textContent = fmt(per(w => w.requests));
  document.getElementById("t-api-p99").textContent = fmt(quantile(mergeAll("api"), 0.99), " ms");
  const served = [...gauges.values()].filter(g => g.name === "streamrec_served_version" && g.labels.family === "cf")
    .sort((a, b) => b.at - a.at)[0];
  document.getElementById("t-version").textContent = served ? served.labels.version : "–";

  chart("c-events", [
    { label: "applied", points: secs.map(w => w && w.applied) },
    { label: "duplicates", points: secs.map(w => w && w.dup) },
  ]);
  chart("c-fresh", [
    { label: "→ features p99", points: secs.map(w => w && quantile(w.e2f, 0.99)) },
    { label: "→ recs p50", points: secs.map(w => w && quantile(w.e2r, 0.5)) },
    { label: "→ recs p99", points: secs.map(w => w && quantile(w.e2r, 0.99)) },
  ]);
  chart("c-api", [
    { label: "requests/s", points: secs.map(w => w && w.requests) },
    { label: "p99 ms", points: secs.map(w => w && quantile(w.api, 0.99)) },
  ]);
  // Hit rate over a sliding 10 s, per arm: a second holds too few lists to read alone.
  const arms = [...new Set(secs.flatMap(w => w ? Object.keys(w.lists) : []))];
  chart("c-quality", arms.map(arm => ({
    label: arm.replace(/^\d{8}T(\d{6})-/, "…$1-"),  // versions are long: keep the time
    points: secs.map((_, i) => {
      const span = secs.slice(Math.max(0, i - 9), i + 1).filter(Boolean);
      const lists = span.reduce((a, w) => a + (w.lists[arm] || 0), 0);
      // Hits land a moment after their lists: with few lists in the span (a version that just
      // stopped serving) the ratio says nothing.
      if (lists < 20) return null;
      return Math.min(1, span.reduce((a, w) => a + (w.hits[arm] || 0), 0) / lists);
    }),
  })));
  const body = document.querySelector("#decisions tbody");
  body.replaceChildren(...decisions.map(d => {
    const row = document.createElement("tr");
    for (const text of [new Date(d.at_ms).toLocaleTimeString(), d.action, d.version, d.reason]) {
      const cell = document.createElement("td"); cell.textContent = text; row.append(cell);
    }
    return row;
  }));
}

async function watch(key) {
  const status = document.getElementById("status");
  for (;;) {
    try {
      const resp = await fetch("/v1/metrics/stream", { headers: { "X-API-Key": key } });
      if (resp.status === 401 || resp.status === 403) {
        status.textContent = "the key was refused"; sessionStorage.removeItem("streamrec-key");
        document.getElementById("login").hidden = false; return;
      }
      status.textContent = "live"; status.classList.add("ok");
      const reader = resp.body.getReader(), decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const message = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          for (const line of message.split("\n")) {
            if (line.startsWith("data: ")) onRecord(JSON.parse(line.slice(6)));
          }
        }
      }
    } catch (err) { /* the API restarted or the network blinked: reconnect */ }
    status.textContent = "reconnecting…"; status.classList.remove("ok");
    await new Promise(r => setTimeout(r, 1000));
  }
}

function start() {
  // The key comes in the URL's fragment (#key=...), which a browser never sends to a server.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromHash) { sessionStorage.setItem("streamrec-key", fromHash); history.replaceState(null, "", location.pathname); }
  const key = sessionStorage.getItem("streamrec-key");
  const form = document.getElementById("login");
  form.addEventListener("submit", e => {
    e.preventDefault();
    sessionStorage.setItem("streamrec-key", document.getElementById("key").value);
    form.hidden = true; watch(sessionStorage.getItem("streamrec-key"));
  });
  if (key) watch(key); else form.hidden = false;
  setInterval(render, 250);
}

start();
