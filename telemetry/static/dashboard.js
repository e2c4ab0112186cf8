// ragward live dashboard: fetches the metrics snapshot every few seconds and draws
// SVG line charts itself (no library, no CDN).
(function () {
  "use strict";
  var SNAPSHOT_URL = "__SNAPSHOT_URL__";
  var REFRESH_MS = 3000;
  var SVG = "http://www.w3.org/2000/svg";
  var PALETTE = ["#4f6df5", "#e8590c", "#12b886", "#d6336c", "#7950f2", "#f59f00",
                 "#1c9fd6", "#82c91e", "#ae3ec9", "#868e96"];
  var state = { window: "1m", snap: null, failures: 0 };

  // ---------------------------------------------------------------- helpers
  function colorFor(tenant, tenants) {
    var i = tenants.indexOf(tenant);
    return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
  }
  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function fmt(v, kind) {
    if (v === null || v === undefined || isNaN(v)) return "–";
    switch (kind) {
      case "rate": return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
      case "pct": return (v * 100).toFixed(v * 100 >= 10 ? 1 : 2) + " %";
      case "ms": return (v * 1000 >= 100 ? (v * 1000).toFixed(0) : (v * 1000).toFixed(1)) + " ms";
      case "usd": return "$" + (v >= 1 ? v.toFixed(2) : v.toFixed(4));
      case "int": return v >= 1e6 ? (v / 1e6).toFixed(2) + "M" : v >= 1e4 ? (v / 1e3).toFixed(1) + "k" : String(Math.round(v));
      default: return String(v);
    }
  }
  // a round tick step (1, 2, 2.5, 5 x 10^k) giving about four intervals up to v
  function niceStep(v) {
    if (!(v > 0)) return 0.25;
    var raw = v / 4, exp = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * exp >= raw) return steps[i] * exp;
    return 10 * exp;
  }
  function tickLabel(v, step) {
    var decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    if (step % 1 !== 0 && (step * Math.pow(10, decimals)) % 1 !== 0) decimals += 1;
    if (v >= 10000) return (v / 1000).toFixed(v % 1000 === 0 ? 0 : 1) + "k";
    return v.toFixed(decimals);
  }
  function hhmm(t) {
    var d = new Date(t * 1000);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  // ---------------------------------------------------------------- charts
  // lines: [{color, values[], cls}]; values may hold null (a gap)
  function drawChart(fig, t, lines, scale) {
    var title = fig.getAttribute("data-title"), unit = fig.getAttribute("data-unit");
    fig.textContent = "";
    var cap = document.createElement("figcaption");
    cap.textContent = title;
    fig.appendChild(cap);
    var W = Math.max(320, fig.clientWidth - 24), H = 210;
    var max = 0;
    lines.forEach(function (line) {
      line.values.forEach(function (v) { if (v !== null && v * scale > max) max = v * scale; });
    });
    var step = niceStep(max), ticks = Math.max(1, Math.ceil(max / step - 1e-9)), top = step * ticks;
    var widest = 0;
    for (var w = 0; w <= ticks; w++) widest = Math.max(widest, tickLabel(step * w, step).length);
    var m = { l: 30 + widest * 7, r: 14, t: 10, b: 34 };  // room for the tick labels and unit
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title }, fig);
    var pw = W - m.l - m.r, ph = H - m.t - m.b;
    var n = t.length;
    function x(i) { return m.l + (n <= 1 ? 0 : (i / (n - 1)) * pw); }
    function y(v) { return m.t + ph - (v * scale / top) * ph; }
    var grid = el("g", { "class": "grid" }, svg), axis = el("g", { "class": "axis" }, svg);
    for (var k = 0; k <= ticks; k++) {
      var v = step * k, yy = m.t + ph - (k / ticks) * ph;
      el("line", { x1: m.l, x2: m.l + pw, y1: yy, y2: yy }, grid);
      el("text", { x: m.l - 8, y: yy + 4, "text-anchor": "end" }, axis).textContent = tickLabel(v, step);
    }
    for (var i = 0; i < n; i += 10) {
      var xx = x(i);
      el("line", { x1: xx, x2: xx, y1: m.t + ph, y2: m.t + ph + 4 }, axis);
      el("text", { x: xx, y: m.t + ph + 16, "text-anchor": "middle" }, axis).textContent = hhmm(t[i]);
    }
    if (n) {
      el("text", { x: x(n - 1), y: m.t + ph + 16, "text-anchor": "end" }, axis).textContent = "now";
    }
    el("line", { x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph }, axis);
    el("text", { "class": "label", x: m.l + pw / 2, y: H - 2, "text-anchor": "middle" }, svg)
      .textContent = "time (last hour, 1-minute buckets)";
    el("text", { "class": "label", transform: "rotate(-90)", x: -(m.t + ph / 2), y: 12,
                 "text-anchor": "middle" }, svg).textContent = unit;
    var drawn = 0;
    lines.forEach(function (line) {
      var run = [];
      function flush() {
        if (run.length > 1) {
          el("polyline", { points: run.join(" "), stroke: line.color, "class": line.cls || "",
                           "data-tenant": line.tenant }, svg);
          drawn++;
        } else if (run.length === 1) {
          var p = run[0].split(",");
          el("circle", { cx: p[0], cy: p[1], r: 3, fill: line.color }, svg);
          drawn++;
        }
        run = [];
      }
      line.values.forEach(function (v, i) {
        if (v === null || v === undefined) { flush(); return; }
        run.push(x(i).toFixed(1) + "," + y(v).toFixed(1));
      });
      flush();
      var last = null;
      for (var j = line.values.length - 1; j >= 0; j--) { if (line.values[j] !== null) { last = j; break; } }
      if (last !== null && line.cls !== "p50") {
        var c = el("circle", { cx: x(last), cy: y(line.values[last]), r: 3.5, fill: line.color }, svg);
        el("title", {}, c).textContent = line.tenant + ": " + line.values[last];
      }
    });
    if (!drawn) {
      el("text", { "class": "empty", x: m.l + pw / 2, y: m.t + ph / 2, "text-anchor": "middle" }, svg)
        .textContent = "no events in the last hour";
    }
  }

  // ---------------------------------------------------------------- page
  function render(snap) {
    state.snap = snap;
    var series = snap.series || { t: [], tenants: {} };
    var tenants = Object.keys(series.tenants).sort();
    var win = snap.windows[state.window] || {};
    Object.keys(win).forEach(function (t) { if (tenants.indexOf(t) < 0) tenants.push(t); });

    // status line
    var c = snap.consumer || {};
    var silence = c.silence_s;
    var stale = silence === null || silence === undefined || silence > 60;
    document.getElementById("status").innerHTML =
      '<span class="dot' + (stale ? " stale" : "") + '"></span>' +
      "events " + fmt(c.events || 0, "int") + " · lag " + (c.lag === null || c.lag === undefined ? "–" : fmt(c.lag, "int")) +
      " · last event " + (c.last_event_ts ? Math.max(0, Math.round(silence)) + " s ago" : "never") +
      (c.dead_lettered ? " · dead-lettered " + c.dead_lettered : "");

    // summary cards (overall, selected window)
    var o = (snap.overall || {})[state.window] || {};
    var cards = [["requests / s", fmt(o.request_rate, "rate")], ["error rate", fmt(o.error_rate, "pct")],
                 ["p50", fmt(o.latency_p50, "ms")], ["p99", fmt(o.latency_p99, "ms")],
                 ["tokens", fmt(o.tokens_total, "int")], ["cost", fmt(o.cost_total, "usd")]];
    document.getElementById("summary").innerHTML = cards.map(function (kv) {
      return '<div class="card"><div class="k">' + kv[0] + " · " + state.window +
             '</div><div class="v">' + kv[1] + "</div></div>";
    }).join("");

    // tenant table
    var body = document.querySelector("#tenants tbody");
    body.textContent = "";
    tenants.forEach(function (t) {
      var f = win[t];
      var tr = document.createElement("tr");
      var cells = f ? [fmt(f.request_rate, "rate"), fmt(f.error_rate, "pct"), fmt(f.latency_p50, "ms"),
                       fmt(f.latency_p99, "ms"), fmt(f.tokens_total, "int"), fmt(f.cost_total, "usd"),
                       fmt(f.cache_hit_rate, "pct")]
                    : ["0", "–", "–", "–", "0", "$0", "–"];
      var name = document.createElement("td");
      var sw = document.createElement("span");
      sw.className = "sw"; sw.style.background = colorFor(t, tenants);
      name.appendChild(sw); name.appendChild(document.createTextNode(t));
      tr.appendChild(name);
      cells.forEach(function (text, i) {
        var td = document.createElement("td");
        td.textContent = text;
        if (i === 1 && f && f.error_rate > 0.05) td.className = "bad";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    if (!tenants.length) {
      body.innerHTML = '<tr><td colspan="8" style="text-align:center;color:var(--muted)">waiting for events…</td></tr>';
    }

    // legend
    var legend = document.getElementById("legend");
    legend.textContent = "";
    tenants.forEach(function (t) {
      var s = document.createElement("span");
      s.innerHTML = '<i style="background:' + colorFor(t, tenants) + '"></i>';
      s.appendChild(document.createTextNode(t));
      legend.appendChild(s);
    });

    // charts
    function lines(metric, cls) {
      return tenants.filter(function (t) { return series.tenants[t]; }).map(function (t) {
        return { tenant: t, color: colorFor(t, tenants), values: series.tenants[t][metric], cls: cls };
      });
    }
    drawChart(document.getElementById("chart-rate"), series.t, lines("request_rate"), 1);
    drawChart(document.getElementById("chart-errors"), series.t, lines("error_rate"), 100);
    drawChart(document.getElementById("chart-latency"), series.t,
              lines("latency_p50", "p50").concat(lines("latency_p99", "p99")), 1000);
    drawChart(document.getElementById("chart-tokens"), series.t, lines("tokens_total"), 1);
    drawChart(document.getElementById("chart-cost"), series.t, lines("cost_total"), 1);
    document.getElementById("footer").textContent =
      "per-minute buckets over the last hour · refreshes every " + REFRESH_MS / 1000 +
      " s · updated " + new Date().toLocaleTimeString();
  }

  function refresh() {
    fetch(SNAPSHOT_URL, { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (snap) { state.failures = 0; render(snap); })
      .catch(function (err) {
        state.failures++;
        document.getElementById("status").innerHTML =
          '<span class="dot stale"></span>snapshot unavailable (' + String(err.message || err) + ")";
      });
  }

  // ---------------------------------------------------------------- controls
  var themes = ["auto", "light", "dark"];
  function applyTheme(name) {
    if (name === "auto") document.documentElement.removeAttribute("data-theme");
    else document.documentElement.setAttribute("data-theme", name);
    document.getElementById("theme").textContent = "◐ " + name;
    try { localStorage.setItem("ragward-theme", name); } catch (e) { /* private mode */ }
  }
  var fromQuery = new URLSearchParams(location.search).get("theme");
  var saved = null;
  try { saved = localStorage.getItem("ragward-theme"); } catch (e) { saved = null; }
  applyTheme(themes.indexOf(fromQuery) >= 0 ? fromQuery : themes.indexOf(saved) >= 0 ? saved : "auto");
  document.getElementById("theme").addEventListener("click", function () {
    var current = document.documentElement.getAttribute("data-theme") || "auto";
    applyTheme(themes[(themes.indexOf(current) + 1) % themes.length]);
  });
  Array.prototype.forEach.call(document.querySelectorAll(".seg button"), function (b) {
    b.addEventListener("click", function () {
      state.window = b.getAttribute("data-window");
      Array.prototype.forEach.call(document.querySelectorAll(".seg button"), function (o) {
        o.classList.toggle("on", o === b);
      });
      if (state.snap) render(state.snap);
    });
  });
  window.addEventListener("resize", function () { if (state.snap) render(state.snap); });
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
