/* Insight Engine report: draws every panel from the inline JSON (#report-data) with uPlot.
   No network: the data, this script, uPlot and the styles are all inline in the page. */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var S = D.series || {};
  var COLORS = ["#1f77b4", "#e8710a", "#2a9d5c", "#c8372d", "#8e5ac8", "#17a2b8",
    "#b5651d", "#e377c2", "#7f7f7f", "#bcbd22", "#4e79a7", "#59a14f"];
  // What each panel drew: the browser test reads it (panel -> charts, points).
  var drawn = (window.__insightPanels = {});

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function panel(id) { return document.querySelector('section[data-panel="' + id + '"] .body'); }
  function mark(id, charts, points) {
    var d = drawn[id] || (drawn[id] = { charts: 0, points: 0 });
    d.charts += charts; d.points += points;
  }
  function num(v) { return v === null || v === undefined || !isFinite(v) ? null : Number(v); }
  function fmt(v, digits, pct) {
    v = num(v);
    if (v === null) return "–";
    return pct ? (100 * v).toFixed(digits === undefined ? 1 : digits) + "%" : v.toFixed(digits === undefined ? 3 : digits);
  }
  // An interval in words where it could not be computed, never "0.000 (– –)".
  function ci(t, digits, pct) {
    if (!t || num(t[0]) === null) return "not measured";
    var s = fmt(t[0], digits, pct);
    if (num(t[1]) !== null && num(t[2]) !== null) s += " (" + fmt(t[1], digits, pct) + " – " + fmt(t[2], digits, pct) + ")";
    else s += " (interval not computed: too few rows)";
    return s;
  }
  function spansZero(t) { return t && num(t[1]) !== null && num(t[2]) !== null && t[1] <= 0 && t[2] >= 0; }
  function int(v) { v = num(v); return v === null ? "–" : Math.round(v).toLocaleString("en"); }
  function empty(body, text) { body.appendChild(el("div", { "class": "empty" }, text)); }
  function width(body) { return Math.max(280, Math.floor(body.getBoundingClientRect().width) - 4); }
  function count(arrs) {
    var n = 0;
    arrs.forEach(function (a) { (a || []).forEach(function (v) { if (num(v) !== null) n++; }); });
    return n;
  }

  // Distinct times with a value: a trend needs two.
  function times(xs, ys) {
    var seen = {};
    (ys || []).forEach(function (v, i) { if (num(v) !== null) seen[xs[i]] = 1; });
    return Object.keys(seen).length;
  }

  // One uPlot chart: xs and named series [{label, data, color, dash, band: [lo, hi]}].
  function chart(body, id, title, xs, series, opts) {
    opts = opts || {};
    // A line needs two points: with fewer, say so instead of drawing an empty frame.
    var most = Math.max.apply(null, series.map(function (s) { return times(xs, s.data); }));
    if (most < 2) {
      body.appendChild(el("p", { "class": "note", "data-chart": title }, title + ": " +
        (most === 1 ? "one window so far; the trend shows from the second." : "not measured yet.")));
      mark(id, 0, most);
      return null;
    }
    var box = el("div", { "class": "chart", "data-chart": title, role: "img", "aria-label": describe(title, xs, series, opts) });
    body.appendChild(box);
    var data = [xs], cfgSeries = [{}], bands = [];
    series.forEach(function (s, i) {
      var c = s.color || COLORS[i % COLORS.length];
      data.push(s.data.map(num));
      cfgSeries.push({ label: s.label, stroke: c, width: s.width || 2, dash: s.dash,
        points: { show: count([s.data]) < 40, size: 6, fill: c }, spanGaps: true,
        value: function (u, v) { return v === null ? "–" : (opts.pct ? (100 * v).toFixed(1) + "%" : v.toFixed(opts.digits || 3)); } });
      if (s.band) {
        var lo = data.length, hi = data.length + 1;
        data.push(s.band[0].map(num)); data.push(s.band[1].map(num));
        cfgSeries.push({ label: s.label + " low", stroke: "transparent", points: { show: false } });
        cfgSeries.push({ label: s.label + " high", stroke: "transparent", points: { show: false } });
        bands.push({ series: [hi, lo], fill: c + "33" });
      }
    });
    var u = new uPlot({
      title: title, width: width(body), height: opts.height || 220,
      scales: { x: { time: opts.time !== false } },
      axes: [{ label: opts.xlabel }, { label: opts.ylabel, size: 56,
        values: opts.pct ? function (u, vs) { return vs.map(function (v) { return (100 * v).toFixed(0) + "%"; }); } : undefined }],
      series: cfgSeries, bands: bands
    }, data, box);
    mark(id, 1, count(data.slice(1)));
    return u;
  }
  // The chart's text alternative: each series' latest value and its range.
  function describe(title, xs, series, opts) {
    var parts = series.map(function (s) {
      var vs = (s.data || []).map(num).filter(function (v) { return v !== null; });
      if (!vs.length) return s.label + ": no value";
      var f = function (v) { return opts.pct ? (100 * v).toFixed(1) + "%" : v.toFixed(opts.digits === undefined ? 3 : opts.digits); };
      return s.label + ": latest " + f(vs[vs.length - 1]) + ", range " + f(Math.min.apply(null, vs)) + " to " + f(Math.max.apply(null, vs));
    });
    return title + ". " + parts.join("; ") + ".";
  }
  function spark(box, id, xs, ys, color) {
    var d = [xs, ys.map(num)];
    new uPlot({ width: 190, height: 42, padding: [6, 8, 6, 8], legend: { show: false }, cursor: { show: false },
      scales: { x: { time: true } }, axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: color, width: 2, spanGaps: true,
        points: { show: count([d[1]]) < 10, size: 5, fill: color } }]
    }, d, box);
    mark(id, 1, count([d[1]]));
  }
  function last(a) {
    for (var i = (a || []).length - 1; i >= 0; i--) if (num(a[i]) !== null) return a[i];
    return null;
  }

  function header() {
    var h = D.header, m = document.querySelector("header.top .meta");
    var parts = h.kind === "forecast" ? [
      ["project", h.project], ["model", h.model], ["champion", h.champion ? "v" + h.champion : "none"],
      ["forecasts issued", h.from_iso ? h.from_iso + " → " + h.to_iso + " (the last forecast monitor run's window)" : "not scored yet: `insight forecast monitor`"],
      ["forecast monitor runs", h.monitor_runs],
      ["forecast log", h.chain_ok ? "chain verified by every run" : "chain BROKEN (see the alerts)"],
      ["versions scored", h.versions_served.map(function (v) { return "v" + v; }).join(", ") || "none"],
      ["versions registered", h.versions_registered.map(function (v) { return "v" + v; }).join(", ")],
      ["generated", h.generated_at]
    ] : [
      ["project", h.project], ["model", h.model], ["champion", h.champion ? "v" + h.champion : "none"],
      ["windows", h.from_iso ? h.from_iso + " → " + h.to_iso : "no monitor run yet"],
      ["monitor runs", h.monitor_runs + (h.points < h.monitor_runs ? " (" + h.points + " plotted)" : "")],
      ["requests", h.requests_as_of ? h.requests + " as of the last monitor run (" + h.requests_as_of +
        "; later traffic is counted by the next `insight monitor`)" : "not counted yet: `insight monitor` reads the audit log"],
      ["audit", h.audit_segments.length + " segment(s), " + int(h.audit_records) + " record(s) read once each" +
        (h.audit_ranges ? " (seq " + Object.keys(h.audit_ranges).map(function (s) { return h.audit_ranges[s].map(function (r) { return r[0] + "–" + r[1]; }).join(", "); }).join("; ") + ")" : "") +
        ", chain " + (h.chain_ok ? "verified" : "BROKEN")],
      ["versions served", h.versions_served.map(function (v) { return "v" + v; }).join(", ") || "none"],
      ["versions registered", h.versions_registered.map(function (v) { return "v" + v; }).join(", ")],
      ["generated", h.generated_at]
    ];
    parts.forEach(function (p, i) {
      if (i) m.appendChild(document.createTextNode(" · "));
      m.appendChild(document.createTextNode(p[0] + " "));
      m.appendChild(el("b", {}, p[1]));
    });
    var seg = document.querySelector("header.top .segments");
    if (seg && h.audit_segments.length) seg.textContent = "audit segments: " + h.audit_segments.join(", ");
  }

  function kpis() {
    var body = panel("kpi"), T = D.training || {}, B = D.business || {}, xs = S.t || [];
    var tiles = el("div", { "class": "tiles" });
    body.appendChild(tiles);
    function tile(label, value, sub, trend, color) {
      var t = el("div", { "class": "tile", "data-kpi": label });
      t.appendChild(el("div", { "class": "label" }, label));
      t.appendChild(el("div", { "class": "value" }, value));
      t.appendChild(el("div", { "class": "sub" }, sub));
      tiles.appendChild(t);
      var n = trend ? times(xs, trend) : 0;
      if (n >= 2) { var b = el("div", {}); t.appendChild(b); spark(b, "kpi", xs, trend, color); }
      else t.appendChild(el("div", { "class": "sub trend" }, !xs.length ? "no monitor run yet" :
        n === 1 ? "trend: one monitor window so far" : "not measured on live traffic yet"));
    }
    var lv = last(S.version), live = lv ? "live v" + lv : "live", card = T.version ? "v" + T.version + " card, test split" : "no card";
    tile("positive rate, observed", fmt(last(S.observed_rate), 1, true),
      live + ": predicted (mean score) " + fmt(last(S.predicted_rate), 1, true) + " · " + card + " " + fmt(T.positive_rate, 1, true),
      S.observed_rate && count([S.observed_rate]) ? S.observed_rate : S.predicted_rate, COLORS[0]);
    tile("lift, top decile", fmt(last(S.lift_top_decile), 2) + "×",
      live + " · " + card + " " + fmt(T.lift_top_decile, 2) + "×" +
      (lv && T.version && String(lv) !== String(T.version) ? " (different versions: not comparable)" : ""), S.lift_top_decile, COLORS[1]);
    var ate = T.ate || {};
    var ateT = [ate.estimate, ate.low, ate.high];
    tile("campaign ATE", ci(ateT, 1, true) + (spansZero(ateT) ? " · not significant" : ""),
      (num(last(S.ate)) !== null ? live + " " + fmt(last(S.ate), 1, true) + " · " : "") +
      card + ": " + int(T.uplift_rows || 0) + " held-out campaign rows" +
      (spansZero(ateT) ? "; the interval spans 0: no effect is shown" : ""), S.ate, COLORS[2]);
    if (B.set) tile("ROI", fmt(last(S.roi), 2) + "×",
      live + " · " + card + " " + fmt(T.roi, 2) + "× · assumes " + B.retained_value + " " + B.currency + " a kept customer, " +
      B.contact_cost + " a contact and that a contact keeps " + fmt(B.save_rate, 0, true) + " of would-be churners (your numbers, not measured)", S.roi, COLORS[3]);
    else tile("ROI", "not set",
      "give business.retained_value, contact_cost and save_rate in the project file (your own numbers: none is assumed)", null, COLORS[3]);
    tile("decision rate", fmt(last(S.decision_rate), 1, true),
      live + " · " + card + " " + fmt(T.selection_rate, 1, true) + " at threshold " + D.threshold, S.decision_rate, COLORS[4]);
  }

  function drift() {
    var body = panel("drift"), dr = (S.drift || {}), feats = dr.features || {}, kinds = dr.kind || {};
    var xs = S.t || [];
    if (!xs.length || !Object.keys(feats).length) return empty(body, "No monitor run yet: `insight monitor` measures drift per feature.");
    ["psi", "js"].forEach(function (k) {
      var names = Object.keys(feats).filter(function (f) { return kinds[f] === k; });
      if (!names.length) return;
      var ser = names.map(function (f) { return { label: f, data: feats[f], width: 1.5 }; });
      var rules = (dr.rules || {})[k] || [];
      rules.forEach(function (r, i) {
        ser.push({ label: "rule " + r.rule + " " + r.op + " " + r.threshold, data: xs.map(function () { return r.threshold; }), color: i ? "#8e5ac8" : "#c8372d", dash: [6, 4], width: 2 });
      });
      chart(body, "drift", k === "psi" ? "PSI per numeric feature" : "Jensen–Shannon per categorical feature",
        xs, ser, { ylabel: k.toUpperCase(), height: 260 });
      if (!rules.length) body.appendChild(el("p", { "class": "note" }, "No alert rule watches feature." + k + ": no threshold is drawn."));
    });
  }

  function uplift() {
    var body = panel("uplift"), c = (D.training || {}).curves;
    if (!c) return empty(body, !D.header.champion ? "No champion yet: `insight train` registers one." :
      "The champion's card has no uplift curves (no treatment in the project, or a card from before curves).");
    chart(body, "uplift", "Qini curve, " + (D.training.best_learner || "best learner") + " (95% bootstrap band)", c.fraction,
      [{ label: "Qini", data: c.qini, band: [c.qini_low, c.qini_high] }, { label: "random targeting", data: c.random, color: "#7f7f7f", dash: [5, 4] }],
      { time: false, xlabel: "share targeted", ylabel: "incremental responders", height: 240 });
    chart(body, "uplift", "Uplift curve", c.fraction, [{ label: "uplift", data: c.uplift, color: COLORS[2] }],
      { time: false, xlabel: "share targeted", ylabel: "uplift × rows", height: 200 });
    var q = D.training.qini || {};
    body.appendChild(el("p", { "class": "note" }, "Qini AUC " + ci([q.estimate, q.low, q.high], 3) + " on " + c.rows + " test rows; band: " + c.n_boot + " bootstrap resamples, pointwise."));
  }

  function fairness() {
    var body = panel("fairness"), F = (D.training || {}).fairness || {}, live = S.fairness || {}, xs = S.t || [];
    var attrs = Object.keys(F);
    if (!attrs.length) return empty(body, !D.header.champion ? "No champion yet: fairness comes from its model card." :
      "The champion's card has no fairness numbers (declare `sensitive:` in the project file and train).");
    attrs.forEach(function (a) {
      body.appendChild(el("h3", {}, a));
      var tbl = el("table", { "data-attr": a }), hd = el("tr");
      ["group", "rows", "selection rate (95% CI)", "", "TPR", "FPR"].forEach(function (h) { hd.appendChild(el("th", {}, h)); });
      tbl.appendChild(hd);
      var groups = F[a].groups, maxHi = 0;
      Object.keys(groups).forEach(function (g) { maxHi = Math.max(maxHi, num(groups[g].selection_rate[2]) || 0); });
      Object.keys(groups).forEach(function (g) {
        var r = groups[g], sr = r.selection_rate, tr = el("tr");
        tr.appendChild(el("td", {}, g)); tr.appendChild(el("td", {}, r.count));
        tr.appendChild(el("td", {}, ci(sr, 1, true)));
        var cell = el("td"), bar = el("div", { "class": "bar" }), sc = 100 / (maxHi || 1);
        var f = el("div", { "class": "fill" }); f.style.width = (sc * (num(sr[0]) || 0)) + "%";
        var w = el("div", { "class": "ci" }); w.style.left = (sc * (num(sr[1]) || 0)) + "%";
        w.style.width = (sc * ((num(sr[2]) || 0) - (num(sr[1]) || 0))) + "%";
        bar.appendChild(f); bar.appendChild(w); cell.appendChild(bar); tr.appendChild(cell);
        tr.appendChild(el("td", {}, fmt(r.tpr, 1, true))); tr.appendChild(el("td", {}, fmt(r.fpr, 1, true)));
        tbl.appendChild(tr);
      });
      body.appendChild(tbl);
      mark("fairness", 0, Object.keys(groups).length);
      var ms = F[a].metrics, ul = el("p", { "class": "note" });
      ul.textContent = Object.keys(ms).map(function (k) { return k.replace(/_/g, " ") + " " + ci(ms[k], 3); }).join(" · ") + " (test split; intervals: Newcombe, Bonferroni)";
      body.appendChild(ul);
      var l = live[a];
      if (l && xs.length && count([l.map(function (x) { return x && x[0]; })])) {
        chart(body, "fairness", "live selection-rate gap, " + a, xs, [{ label: "gap",
          data: l.map(function (x) { return x && x[0]; }),
          band: [l.map(function (x) { return x && x[1]; }), l.map(function (x) { return x && x[2]; })] }], { height: 180 });
      }
    });
  }

  function latency() {
    var body = panel("latency"), xs = S.t || [];
    if (!xs.length) return empty(body, "No monitor run yet: latency and volume come from `insight monitor`.");
    var slo = num(S.latency_slo_p95_ms);
    chart(body, "latency", "latency (ms)", xs, [{ label: "p50", data: S.p50_ms }, { label: "p95", data: S.p95_ms }, { label: "p99", data: S.p99_ms }]
      .concat(slo !== null ? [{ label: "p95 SLO " + slo + " ms", data: xs.map(function () { return slo; }), color: "#c8372d", dash: [6, 4] }] : []), { ylabel: "ms", digits: 1 });
    // requests and rows on axes of their own: one scale flattened the smaller
    chart(body, "latency", "requests per window", xs, [{ label: "requests", data: S.requests, color: COLORS[4] }], { ylabel: "requests", digits: 0, height: 160 });
    chart(body, "latency", "rows scored per window", xs, [{ label: "rows", data: S.rows, color: COLORS[1] }], { ylabel: "rows", digits: 0, height: 160 });
    chart(body, "latency", "decision rate", xs, [{ label: "decision rate", data: S.decision_rate, color: COLORS[2] }], { pct: true, height: 160 });
  }

  function chip(text, cls) { return el("span", { "class": "chip " + (cls || text) }, text); }
  function cardLink(v) { return (D.card_links || {})[v]; }

  function alerts() {
    var body = panel("alerts"), A = D.alerts || {}, ev = A.events || [], now = A.now || {};
    var keys = Object.keys(now);
    if (keys.length) {
      var t = el("table", { "data-table": "alert-states" }), h = el("tr");
      ["rule", "state now", "since", "value (interval)"].forEach(function (x) { h.appendChild(el("th", {}, x)); });
      t.appendChild(h);
      keys.forEach(function (k) {
        var r = el("tr"); r.appendChild(el("td", {}, k));
        var c = el("td"); c.appendChild(chip(now[k].state)); r.appendChild(c);
        r.appendChild(el("td", {}, now[k].since_iso || ""));
        var iv = now[k].interval;
        r.appendChild(el("td", {}, num(now[k].value) === null ? "" : fmt(now[k].value, 3) +
          (iv && iv.length === 2 ? " (" + fmt(iv[0], 3) + " – " + fmt(iv[1], 3) + ")" : "")));
        t.appendChild(r);
      });
      body.appendChild(t);
    }
    if (!ev.length) { if (!keys.length) empty(body, "No alert has changed state."); return; }
    if ((A.total_events || 0) > ev.length) {
      var older = A.older || {};
      body.appendChild(el("p", { "class": "note", "data-note": "older-events" }, "The newest " + ev.length + " of " + int(A.total_events) +
        " state changes are listed; older ones, per alert: " + Object.keys(older).map(function (k) { return k + " " + older[k]; }).join(", ") + "."));
    }
    var tl = el("table", { "data-table": "alert-timeline" }), hd = el("tr");
    ["time", "rule", "from", "to", "model card"].forEach(function (x) { hd.appendChild(el("th", {}, x)); });
    tl.appendChild(hd);
    ev.forEach(function (e) {
      var r = el("tr"); r.appendChild(el("td", {}, e.at_iso)); r.appendChild(el("td", {}, e.key));
      var a = el("td"); a.appendChild(chip(e.from || "ok", e.from || "ok")); r.appendChild(a);
      var b = el("td"); b.appendChild(chip(e.to)); r.appendChild(b);
      var m = /\|v(\d+)\|/.exec(e.key), c = el("td"), href = m && cardLink(m[1]);
      if (href) c.appendChild(el("a", { href: href }, "v" + m[1])); r.appendChild(c);
      tl.appendChild(r);
    });
    body.appendChild(tl);
    mark("alerts", 0, ev.length);
  }

  function models() {
    var body = panel("models"), V = D.versions || [];
    if (!V.length) return empty(body, "No registered version.");
    var t = el("table", { "data-table": "versions" }), h = el("tr");
    ["version", "registered", "family", "test AUC (its own test split)", "gate: paired AUC vs champion, same rows", "aliases", "gate", "rollout", "card"].forEach(function (x) { h.appendChild(el("th", {}, x)); });
    t.appendChild(h);
    V.forEach(function (v) {
      var r = el("tr", { "data-version": v.version });
      r.appendChild(el("td", {}, "v" + v.version)); r.appendChild(el("td", {}, v.created_iso || ""));
      r.appendChild(el("td", {}, v.family)); r.appendChild(el("td", {}, v.test_auc ? Number(v.test_auc).toFixed(3) : "not measured"));
      var gp = v.gate_paired, gd = gp && gp.difference;
      r.appendChild(el("td", {}, gd ? "v" + v.version + " " + fmt(gp.challenger, 4) + " vs v" + gp.vs + " " + fmt(gp.champion, 4) +
        " on " + int(gp.rows) + " rows: " + (gd.estimate >= 0 ? "+" : "") + fmt(gd.estimate, 4) + " (" + fmt(gd.low, 4) + " – " + fmt(gd.high, 4) + ")" : "no paired comparison"));
      var al = el("td"); v.aliases.forEach(function (a) { al.appendChild(chip(a)); al.appendChild(document.createTextNode(" ")); });
      if (v.rolled_back) al.appendChild(chip("rolled back", "rolled-back"));
      r.appendChild(al);
      var g = el("td"); if (v.gate) g.appendChild(chip(v.gate)); else if (v.promoted_reason) g.appendChild(document.createTextNode(v.promoted_reason)); r.appendChild(g);
      r.appendChild(el("td", {}, (v.rollout || []).map(function (s) { return s.percent + "% (" + s.challenger_rows + " rows" + (s.breaches && s.breaches.length ? ", breach" : "") + ")"; }).join(" → ")));
      var c = el("td"), href = cardLink(v.version);
      if (href) c.appendChild(el("a", { href: href }, "card")); r.appendChild(c);
      t.appendChild(r);
    });
    body.appendChild(t);
    body.appendChild(el("p", { "class": "note" }, "Each version's test AUC is on its own test split: compare versions by the gate's paired figure, measured on the same rows. Model card pages are in cards/ beside report.html: share the folder, not the page alone."));
    var E = (D.control || {}).events || [];
    if (E.length) {
      var tl = el("table", { "data-table": "control" }), hd = el("tr");
      ["time", "what", "version", "detail"].forEach(function (x) { hd.appendChild(el("th", {}, x)); });
      tl.appendChild(hd);
      E.forEach(function (e) {
        var r = el("tr"); r.appendChild(el("td", {}, e.at_iso));
        var w = el("td"); w.appendChild(chip(e.kind + " " + e.event, e.event)); r.appendChild(w);
        var vc = el("td"), href = e.version && cardLink(e.version);
        if (href) vc.appendChild(el("a", { href: href }, "v" + e.version)); else vc.textContent = e.version ? "v" + e.version : "";
        r.appendChild(vc);
        var d = [];
        if (e.percent !== undefined) d.push(e.percent + "%");
        if (e.passed !== undefined) d.push(e.passed ? "gate passed" : "gate failed");
        if (e.rule) d.push("rule " + e.rule);
        if (e.breaches && e.breaches.length) d.push(e.breaches.join("; "));
        r.appendChild(el("td", {}, d.join(" · "))); tl.appendChild(r);
      });
      body.appendChild(el("h3", {}, "retrains and rollouts (control audit log, chain " + (D.control.chain_ok ? "verified" : "BROKEN") + ")"));
      body.appendChild(tl);
    }
    mark("models", 0, V.length + E.length);
  }


  // Demand: per forecasting model, the champion's held-out backtest, the latest batch
  // run's stock figures and the forecast monitor's realized accuracy, each with its version.
  function demand() {
    var body = panel("demand"), M = D.demand || [];
    if (!M.length) {
      mark("demand", 0, 0);
      return empty(body, "No forecasting model in this workspace. Train one: insight forecast train -p PROJECT (a project file with a forecast: block; insight init --target COLUMN --time COLUMN --series KEYS writes one).");
    }
    function table(name, head, rows) {
      var t = el("table", { "data-table": name }), hd = el("tr");
      head.forEach(function (h) { hd.appendChild(el("th", {}, h)); });
      t.appendChild(hd);
      rows.forEach(function (r) {
        var tr = el("tr");
        r.forEach(function (c) { tr.appendChild(el("td", {}, c)); });
        t.appendChild(tr);
      });
      body.appendChild(t);
      mark("demand", 0, rows.length);
    }
    M.forEach(function (m) {
      var H = m.holdout || {}, cov = H.coverage || {};
      body.appendChild(el("h3", {}, m.model + " v" + m.version + " (champion): " + int(m.series) + " series, " + m.freq + ", horizon " + m.horizon));
      var rows = [["all series", fmt(H.mase), fmt(cov["80"], 1, true), fmt(cov["95"], 1, true)]];
      Object.keys(H.by_group || {}).forEach(function (g) {
        var b = H.by_group[g], c = b.coverage || {};
        rows.push([g + " (" + int(b.series) + ")", fmt(b.mase), fmt(c["80"], 1, true), fmt(c["95"], 1, true)]);
      });
      body.appendChild(el("p", { "class": "note" }, "Held-out backtest of v" + m.version + " (windows its choice never saw): MASE " + fmt(H.mase) +
        " vs the best single candidate for every series, " + H.best_single + ", " + fmt(H.best_single_mase) +
        (num(H.mase) !== null && num(H.best_single_mase) ? " (" + fmt(1 - H.mase / H.best_single_mase, 1, true) + " lower)" : "") +
        "; WAPE " + fmt(H.wape, 1, true) + ", bias " + fmt(H.bias, 1, true) + ". Families chosen: " +
        Object.keys(m.wins || {}).map(function (k) { return k + " " + m.wins[k]; }).join(", ") + "."));
      table("demand-backtest", ["series (demand kind)", "MASE, v" + m.version + " backtest", "80% interval holds", "95% interval holds"], rows);
      var I = m.inventory;
      if (I) {
        body.appendChild(el("p", { "class": "note" }, "Stock from the batch forecast of v" + I.version + " (" + I.at_iso + ") at a " +
          fmt(I.target_service_level, 0, true) + " cycle service level, lead time " + I.lead_time + ", an order every " + I.review_period + " period(s):"));
        table("demand-stock", ["series", "safety stock (units)", "expected fill rate", "inventory turnover (per year)"],
          [[int(I.series), int(I.safety_stock), fmt(I.fill_rate, 1, true), fmt(I.inventory_turnover, 1)]]);
      } else {
        empty(body, "No stock figures yet: give business.inventory in the project file and run insight forecast -o forecasts.parquet.");
      }
      var L = m.live;
      if (!L) {
        empty(body, "Not measured on actuals yet: once actuals arrive (the series table grows, or insight labels ingest FILE), run insight forecast monitor.");
        return;
      }
      body.appendChild(el("p", { "class": "note" }, "Live accuracy of v" + L.version + ": forecasts issued " + L.from_iso + " – " + L.to_iso +
        ", scored against the actuals known at " + L.ran_at + " (intervals: bootstrap over series)." +
        (L.firing.length ? " Firing: " + L.firing.join(", ") + "." : " No forecast alert firing.")));
      var lrows = Object.keys(L.groups).map(function (g) {
        var q = L.groups[g], c = q.coverage || {};
        return [g, int(q.series), int(q.points) + " of " + int(q.issued_points), ci(q.mase, 3), ci(q.mase_ratio, 2), ci(q.bias, 1, true),
          ci(c["80"], 1, true), ci(c["95"], 1, true)];
      });
      table("demand-live", ["group", "series", "points with actuals", "MASE, v" + L.version + " live", "vs its backtest", "bias", "80% holds", "95% holds"], lrows);
      var tr = (m.trend || []).filter(function (x) { return x.ratio; });
      if (tr.length) {
        var xs = tr.map(function (x) { return x.t; });
        chart(body, "demand", "realized MASE / backtest MASE, all series", xs, [{ label: "v" + tr[tr.length - 1].version,
          data: tr.map(function (x) { return x.ratio[0]; }),
          band: [tr.map(function (x) { return x.ratio[1]; }), tr.map(function (x) { return x.ratio[2]; })] }], { height: 180, digits: 2 });
      }
    });
  }

  // Targeting: per targeting model, the champion's card (held-out Qini with its band, profit
  // over budgets, the policy against its rivals, segments with BH) and the live lift.
  function targeting() {
    var body = panel("targeting"), M = D.targeting || [];
    if (!M.length) {
      mark("targeting", 0, 0);
      return empty(body, "No targeting model in this workspace. Train one: insight target train -p PROJECT (insight init --from campaign.csv --treatment COLUMN --control VALUE --outcome COLUMN writes the project).");
    }
    function table(name, head, rows) {
      var t = el("table", { "data-table": name }), hd = el("tr");
      head.forEach(function (h) { hd.appendChild(el("th", {}, h)); });
      t.appendChild(hd);
      rows.forEach(function (r) {
        var tr = el("tr");
        r.forEach(function (c) { tr.appendChild(el("td", {}, c)); });
        t.appendChild(tr);
      });
      body.appendChild(t);
      mark("targeting", 0, rows.length);
    }
    M.forEach(function (m) {
      var C = m.campaign, cur = m.currency, v = "v" + m.version;
      body.appendChild(el("h3", {}, m.model + " " + v + " (champion): " + int(C.rows) + " customers, arms " +
        Object.keys(C.rows_per_arm).map(function (a) { return a + " " + int(C.rows_per_arm[a]); }).join(", ") +
        "; outcome " + C.outcome + " (" + C.outcome_kind + ")"));
      body.appendChild(el("p", { "class": "note" }, "Chosen " + m.chosen.name + ": out-of-fold Qini " + fmt(m.chosen.qini, 4) +
        " (bootstrap SE " + fmt(m.chosen.se, 4) + "); " + m.why + ". Every number below is " + v +
        "'s, on the campaign's rows scored by models that never saw them (cross-fitting)." +
        (m.randomisation.looks_randomised ? "" : " Warning: the arms were not balanced on every feature (" + m.randomisation.flagged.length + " comparison(s)): the uplift may be confounded.")));
      table("targeting-effects", ["arm", "rows", "ATE, " + v + " campaign (95% CI)", "held-out Qini AUC (95% CI)"],
        C.effects.map(function (e, i) {
          var q = ((m.chosen.per_arm || [])[i] || {}).qini_auc || {};
          return [e.arm, int(e.rows), ci([e.ate.estimate, e.ate.low, e.ate.high], 4), ci([q.estimate, q.low, q.high], 4)];
        }));
      (m.curves || []).forEach(function (c) {
        var s = [{ label: "Qini, " + c.arm, data: c.qini }];
        if (c.qini_low) s[0].band = [c.qini_low, c.qini_high];
        s.push({ label: "random targeting", data: c.random, color: "#7f7f7f", dash: [5, 4] });
        chart(body, "targeting", "Qini curve of " + v + ", " + c.arm + " vs control" + (c.qini_low ? " (95% bootstrap band)" : ""),
          c.fraction, s, { time: false, xlabel: "share contacted", ylabel: "incremental " + C.outcome, height: 220 });
      });
      var P = m.profit_curve || [];
      chart(body, "targeting", "profit of " + v + "'s policy over the budget (" + cur + ", 95% CI), held out", P.map(function (p) { return p.contacts; }),
        [{ label: "profit", data: P.map(function (p) { return p.profit; }), band: [P.map(function (p) { return p.low; }), P.map(function (p) { return p.high; })] }],
        { time: false, xlabel: "contacts", ylabel: cur, height: 220, digits: 0 });
      var A = m.at_budget || {}, names = Object.keys(A);
      body.appendChild(el("p", { "class": "note" }, "At the budget (" + (m.budget ? JSON.stringify(m.budget) : "none: every profitable contact") +
        "), the policy against the strategies it must beat, on the same rows (doubly robust estimate):"));
      table("targeting-policy", ["strategy", "contacts", "incremental " + C.outcome, "profit (" + cur + ", 95% CI)"],
        names.map(function (k) { var a = A[k]; return [k.replace(/_/g, " "), int(a.contacts), fmt(a.incremental, 1), ci([a.profit, a.low, a.high], 0)]; }));
      ["kmeans", "effect_tree"].forEach(function (kind) {
        var S = m.segments[kind];
        body.appendChild(el("p", { "class": "note" }, (kind === "kmeans" ? "K-means segments: " : "Effect-tree segments: ") + S.criterion +
          ". Benjamini-Hochberg at " + fmt(m.segments.fdr, 0, true) + " across every row of the table."));
        table("targeting-" + kind, ["segment", "arm", "rows (arm / control)", "lift, " + v + " (95% CI)", "BH-adjusted p", "differs from 0"],
          S.table.map(function (r) {
            return [r.segment, r.arm, int(r.rows_arm) + " / " + int(r.rows_control), ci([r.lift, r.low, r.high], 4),
              r.p_adjusted === null ? "not tested (too few rows)" : fmt(r.p_adjusted, 3), r.significant ? "yes" : "no"];
          }));
      });
      var L = m.live;
      if (!L) {
        empty(body, "Live lift not measured yet: serve it (insight target serve), record outcomes (insight target outcomes FILE), then run insight target monitor.");
        return;
      }
      body.appendChild(el("p", { "class": "note" }, "Live lift of v" + L.version + ": decisions " + L.from_iso + " – " + L.to_iso +
        ", contacted vs held out at random among the customers the policy chose, outcomes known at " + L.ran_at + "." +
        ((L.firing || []).length ? " Firing: " + L.firing.join(", ") + "." : " No targeting alert firing.")));
      table("targeting-live", ["segment", "contacted / held out", "live lift (95% CI)", "expected (card)", "change vs expected"],
        Object.keys(L.segments || {}).map(function (s) {
          var q = L.segments[s];
          return [s, int(q.contacted) + " / " + int(q.held_out), ci(q.lift, 4), fmt(q.expected, 4), ci(q.change, 1, true)];
        }));
    });
  }

  var steps = [header, kpis, drift, uplift, fairness, latency, alerts, models, demand, targeting];
  var ids = { kpis: "kpi", drift: "drift", uplift: "uplift", fairness: "fairness", latency: "latency",
    alerts: "alerts", models: "models", demand: "demand", targeting: "targeting" };
  steps.forEach(function (f) {
    if (ids[f.name] && !panel(ids[f.name])) return;  // a panel this page does not show
    try { f(); } catch (e) { console.error("panel " + f.name + ": " + e); throw e; }
  });
  document.body.setAttribute("data-drawn", "true");
})();
