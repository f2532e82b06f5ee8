/**
 * The script of the HTML report (report.ts), run by the browser that opens it: hand-written canvas
 * drawing of the timeline (no library, so the file needs nothing from the network), zoom and pan,
 * hover details, and the finding panel. It reads the page's data from the JSON script element
 * `#report-data` and exposes it as `window.iommuLedgerReport` (the browser tests read it there).
 * Kept free of backquotes and dollar-brace so that it can live in this template string.
 */
export const CLIENT_JS = String.raw`
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('report-data').textContent);
  window.iommuLedgerReport = data;
  var canvas = document.getElementById('timeline');
  var ctx = canvas.getContext('2d');
  var tip = document.getElementById('tip');
  var panel = document.getElementById('explain');
  var select = document.getElementById('domain');
  var dom = null, view = null, layout = null, markers = [], visible = null;
  var PAD_L = 110, PAD_B = 28, PAD_T = 8, PAD_R = 8;

  function big(h) { return BigInt(h); }
  var colours = [];
  function colour(k) {
    return colours[k] || (colours[k] = 'hsla(' + hue(data.callers[k]) + ',60%,55%,0.55)');
  }
  // The same colours, opaque, as drawn over white (for the raster: little-endian RGBA words).
  var solids = [];
  function solid(k) {
    if (solids[k] !== undefined) return solids[k];
    var h = hue(data.callers[k]) / 360, s = 0.6, l = 0.55, a = 0.55;
    var q = l + s - l * s, p = 2 * l - q;
    function channel(t) {
      if (t < 0) t += 1;
      if (t > 1) t -= 1;
      var v = t < 1 / 6 ? p + (q - p) * 6 * t : t < 1 / 2 ? q : t < 2 / 3 ? p + (q - p) * (2 / 3 - t) * 6 : p;
      return Math.round(255 * (v * a + (1 - a)));
    }
    var r = channel(h + 1 / 3), g = channel(h), b = channel(h - 1 / 3);
    return (solids[k] = ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0);
  }
  function hue(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return h % 360;
  }
  function fmtSize(b) {
    var units = ['', 'K', 'M', 'G', 'T', 'P', 'E'];
    var u = 0;
    while (b >= 1024n && b % 1024n === 0n && u < units.length - 1) { b = b / 1024n; u++; }
    return b.toString() + units[u];
  }

  // The used ranges are stacked from the top, each a band of height proportional to the square
  // root of its bytes (so small regions stay visible), with a fold line between bands.
  function makeLayout(d) {
    var bands = [], total = 0;
    d.used.forEach(function (u) {
      var s = big(u[0]), e = big(u[1]);
      var w = Math.max(1, Math.sqrt(Number(e - s)));
      bands.push({ start: s, end: e, weight: w });
      total += w;
    });
    var y = 0;
    bands.forEach(function (b) { b.y0 = y / total; y += b.weight; b.y1 = y / total; });
    return { bands: bands };
  }
  // An IOVA (BigInt) to a fraction of the height [0, 1], or -1 when it lies in a folded gap.
  function yOf(a) {
    var bs = layout.bands;
    for (var i = 0; i < bs.length; i++) {
      var b = bs[i];
      if (a >= b.start && a <= b.end) {
        var span = Number(b.end - b.start) || 1;
        return b.y0 + (b.y1 - b.y0) * (Number(a - b.start) / span);
      }
      if (a < b.start) return b.y0;
    }
    return 1;
  }
  // The trace time of the last sampled event at or before a position ([position, time] pairs, sorted).
  function timeAt(pos) {
    var t = data.times, lo = 0, hi = t.length - 1, best = null;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (t[mid][0] <= pos) { best = t[mid][1]; lo = mid + 1; } else hi = mid - 1;
    }
    return best;
  }
  // A position's trace time from the samples: exact when the position is sampled, else between the
  // samples around it, in proportion (marked \u2248; trace seconds only), else the one before it.
  function approx(pos) {
    var t = data.times, lo = 0, hi = t.length - 1, i = -1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (t[mid][0] <= pos) { i = mid; lo = mid + 1; } else hi = mid - 1;
    }
    if (i < 0) return '';
    var a = t[i], b = t[i + 1];
    if (a[0] === pos) return ' (' + a[1] + ')';
    var ta = Number(a[1]), tb = b ? Number(b[1]) : NaN;
    if (isFinite(ta) && isFinite(tb) && tb >= ta) {
      var digits = (a[1].split('.')[1] || '').length;
      return ' (\u2248' + (ta + ((tb - ta) * (pos - a[0])) / (b[0] - a[0])).toFixed(digits) + ')';
    }
    return ' (\u2248' + a[1] + ')';
  }
  function plotW() { return canvas.width - PAD_L - PAD_R; }
  function plotH() { return canvas.height - PAD_T - PAD_B; }
  function px(pos) { return PAD_L + ((pos - view.x0) / (view.x1 - view.x0)) * plotW(); }
  function py(f) { return PAD_T + ((f - view.y0) / (view.y1 - view.y0)) * plotH(); }
  function posAt(x) { return view.x0 + ((x - PAD_L) / plotW()) * (view.x1 - view.x0); }

  function draw() {
    var W = canvas.width, H = canvas.height;
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, W, H);
    ctx.save();
    ctx.beginPath();
    ctx.rect(PAD_L, PAD_T, plotW(), plotH());
    ctx.clip();
    // Runs, coloured by caller: one rectangle each while few are in view; past RASTER_OVER, merged
    // into a raster of the plot's pixels (level of detail: a pixel takes the colour of the last
    // run that covers it, every run covers at least one, so none vanishes).
    var t0 = performance.now();
    var seen = visible || (visible = new Int32Array(dom.decoded.length));
    if (seen.length < dom.decoded.length) seen = visible = new Int32Array(dom.decoded.length);
    var n = 0;
    for (var i = 0; i < dom.decoded.length; i++) {
      var r = dom.decoded[i];
      var x0 = px(r[0]), x1 = px(r[1] === null ? dom.lastAt + 1 : r[1]);
      if (x1 < PAD_L || x0 > W) continue;
      var y0 = py(r[4]), y1 = py(r[5]);
      if (y1 < PAD_T || y0 > H - PAD_B) continue;
      seen[n++] = i;
    }
    dom.runsDrawn = n;
    dom.drawMode = n > data.rasterOver ? 'raster' : 'rects';
    if (dom.drawMode === 'rects') {
      for (var j = 0; j < n; j++) {
        var q = dom.decoded[seen[j]];
        var qx0 = px(q[0]), qy0 = py(q[4]);
        ctx.fillStyle = colour(q[2]);
        ctx.fillRect(qx0, qy0, Math.max(1, px(q[1] === null ? dom.lastAt + 1 : q[1]) - qx0), Math.max(1, py(q[5]) - qy0));
      }
    } else {
      var pw = Math.max(1, Math.floor(plotW())), ph = Math.max(1, Math.floor(plotH()));
      var img = ctx.createImageData(pw, ph);
      var words = new Uint32Array(img.data.buffer);
      words.fill(0xffffffff);
      for (var k = 0; k < n; k++) {
        var u = dom.decoded[seen[k]];
        var X0 = Math.max(0, Math.floor(px(u[0]) - PAD_L));
        var X1 = Math.min(pw, Math.max(X0 + 1, Math.ceil(px(u[1] === null ? dom.lastAt + 1 : u[1]) - PAD_L)));
        var Y0 = Math.max(0, Math.floor(py(u[4]) - PAD_T));
        var Y1 = Math.min(ph, Math.max(Y0 + 1, Math.ceil(py(u[5]) - PAD_T)));
        if (X0 >= pw || Y0 >= ph) continue;
        var c = solid(u[2]);
        for (var yy = Y0; yy < Y1; yy++) words.fill(c, yy * pw + X0, yy * pw + X1);
      }
      ctx.putImageData(img, PAD_L, PAD_T);
    }
    var runsMs = performance.now() - t0;
    // Fold lines between bands.
    ctx.strokeStyle = '#999';
    ctx.setLineDash([4, 4]);
    layout.bands.forEach(function (b, k) {
      if (k === 0) return;
      var y = py(b.y0);
      ctx.beginPath(); ctx.moveTo(PAD_L, y); ctx.lineTo(W, y); ctx.stroke();
    });
    ctx.setLineDash([]);
    // Markers: collateral of over-unmaps (red, harmful; grey, stepped), divergences, faults.
    markers = [];
    dom.findings.forEach(function (f, k) {
      var x = px(f.position);
      if (x < PAD_L - 6 || x > W + 6) return;
      if (f.kind === 'over-unmap') {
        ctx.fillStyle = f.verdict === 'stepped' ? 'rgba(120,120,120,0.8)' : 'rgba(220,0,0,0.85)';
        f.ranges.forEach(function (c) {
          var y0 = py(yOf(big(c[0]))), y1 = py(yOf(big(c[1])));
          ctx.fillRect(x - 2, y0, 4, Math.max(2, y1 - y0));
        });
        var yt = py(yOf(big(f.iova)));
        ctx.beginPath(); ctx.moveTo(x, yt); ctx.lineTo(x - 6, yt - 9); ctx.lineTo(x + 6, yt - 9); ctx.closePath(); ctx.fill();
        markers.push({ x: x, y: yt - 4, k: k });
      } else if (f.kind === 'fault') {
        var y = py(yOf(big(f.iova)));
        ctx.strokeStyle = '#000'; ctx.lineWidth = 2;
        ctx.beginPath(); ctx.moveTo(x - 5, y - 5); ctx.lineTo(x + 5, y + 5); ctx.moveTo(x + 5, y - 5); ctx.lineTo(x - 5, y + 5); ctx.stroke();
        ctx.lineWidth = 1;
        markers.push({ x: x, y: y, k: k });
      } else {
        var yd = py(yOf(big(f.iova)));
        ctx.fillStyle = '#e08000';
        ctx.beginPath(); ctx.moveTo(x, yd - 6); ctx.lineTo(x + 6, yd); ctx.lineTo(x, yd + 6); ctx.lineTo(x - 6, yd); ctx.closePath(); ctx.fill();
        markers.push({ x: x, y: yd, k: k });
      }
    });
    ctx.restore();
    // Axes: event positions (with trace time where known) below, IOVA band starts on the left.
    ctx.fillStyle = '#222';
    ctx.font = '11px sans-serif';
    for (var t = 0; t <= 6; t++) {
      var pos = Math.round(view.x0 + ((view.x1 - view.x0) * t) / 6);
      var tx = px(pos);
      var tm = timeAt(pos);
      var label = '#' + pos + (tm ? ' (' + tm + ')' : '');
      ctx.fillText(label, Math.min(tx, W - 90), H - 10);
    }
    layout.bands.forEach(function (b) {
      var y = py(b.y0);
      if (y >= PAD_T && y <= H - PAD_B) ctx.fillText('0x' + b.start.toString(16), 4, Math.max(y + 10, PAD_T + 10));
    });
    data.lastDraw = { domain: dom.name, mode: dom.drawMode, runs: dom.runsDrawn, runsMs: runsMs, ms: performance.now() - t0 };
  }

  // The runs of a domain, for drawing: [from, to (null: live), caller, mapPos, y0, y1] with the
  // heights as fractions, computed from the columns (report.ts encodeRuns) without BigInt; the
  // addresses are made only when asked for (runOf: hover, tests).
  function decodeRuns(d) {
    var e = d.runs, out, i;
    if (e.hex) {
      out = new Array(e.hex.length);
      for (i = 0; i < e.hex.length; i++) {
        var h = e.hex[i];
        out[i] = [h[3], h[4], h[5], h[6], yOf(big(h[0])), yOf(big(h[1]))];
      }
      return out;
    }
    var unit = Number(big(e.unit)), from = 0, off = 0, bands = layout.bands;
    out = new Array(e.f.length);
    for (i = 0; i < e.f.length; i++) {
      from += e.f[i];
      off += e.o[i];
      e.o[i] = off;
      var b = bands[e.b[i]];
      var span = Number(b.end - b.start) || 1;
      var y0 = b.y0 + (b.y1 - b.y0) * ((e.o[i] * unit) / span);
      var y1 = b.y0 + (b.y1 - b.y0) * (((e.o[i] + e.n[i]) * unit) / span);
      out[i] = [from, e.l[i] < 0 ? null : from + e.l[i], e.c[i], from - e.m[i], y0, y1];
    }
    return out;
  }
  // Run i of a domain as [iova, end, pageSize (hex), from, to, caller, mapPos].
  function runOf(d, i) {
    var e = d.encoded;
    if (e.hex) return e.hex[i];
    var r = d.decoded[i], unit = big(e.unit);
    var start = big(d.used[e.b[i]][0]) + BigInt(e.o[i]) * unit;
    var end = start + BigInt(e.n[i]) * unit;
    return ['0x' + start.toString(16), '0x' + end.toString(16), '0x' + (1n << BigInt(e.p[i])).toString(16), r[0], r[1], r[2], r[3]];
  }
  // A column as report.ts wrote it: an array, or {r: [value, repeat, ...]} when run-length coded.
  function column(c) {
    if (Array.isArray(c)) return c;
    var out = [];
    for (var i = 0; i < c.r.length; i += 2) for (var k = 0; k < c.r[i + 1]; k++) out.push(c.r[i]);
    return out;
  }
  function prepare(d) {
    if (d.decoded) return;
    if (!d.runs.hex) ['f', 'l', 'b', 'o', 'n', 'p', 'c', 'm'].forEach(function (k) { d.runs[k] = column(d.runs[k]); });
    d.encoded = d.runs;
    d.layout = makeLayout(d);
    var keep = layout;
    layout = d.layout;
    d.decoded = decodeRuns(d);
    layout = keep;
    d.runCount = d.decoded.length;
  }
  data.runOf = function (name, i) {
    var d = data.domains.find(function (x) { return x.name === name; });
    prepare(d);
    return runOf(d, i);
  };

  function showDomain(i) {
    dom = data.domains[i];
    prepare(dom);
    layout = dom.layout;
    view = { x0: dom.createdAt, x1: dom.lastAt + 1, y0: 0, y1: 1 };
    document.querySelectorAll('#findings tr.finding, #findings tr.more').forEach(function (row) { row.style.display = row.dataset.domain === dom.name ? '' : 'none'; });
    draw();
  }

  function show(f) {
    panel.textContent = f.explain || ('iommu-ledger --db LEDGER explain ' + f.iova + ' --domain ' + dom.name + ' --at ' + f.position);
    panel.dataset.position = String(f.position);
    document.querySelectorAll('tr.finding.selected').forEach(function (r) { r.classList.remove('selected'); });
    var row = document.getElementById('finding-' + dom.name + '-' + f.position + '-' + f.kind);
    if (row) row.classList.add('selected');
  }

  canvas.addEventListener('mousemove', function (ev) {
    var rect = canvas.getBoundingClientRect();
    var x = ev.clientX - rect.left, y = ev.clientY - rect.top;
    var text = '';
    for (var m = 0; m < markers.length; m++) {
      if (Math.abs(markers[m].x - x) < 7 && Math.abs(markers[m].y - y) < 9) { text = dom.findings[markers[m].k].title; break; }
    }
    if (!text) {
      var pos = posAt(x);
      for (var i = dom.decoded.length - 1; i >= 0; i--) {
        var d = dom.decoded[i];
        var end = d[1] === null ? dom.lastAt + 1 : d[1];
        if (pos < d[0] || pos >= end) continue;
        var y0 = py(d[4]), y1 = py(d[5]);
        if (y < y0 - 1 || y > Math.max(y1, y0 + 2)) continue;
        var r = runOf(dom, i);
        text = r[0] + '+' + fmtSize(big(r[1]) - big(r[0])) + ' in ' + fmtSize(big(r[2])) + ' pages, mapped by #' + r[6] + approx(r[6]) + ' ' + data.callers[r[5]] +
          ', live from #' + r[3] + approx(r[3]) + (r[4] === null ? ' on' : ' to #' + r[4] + approx(r[4]));
        break;
      }
    }
    tip.textContent = text;
    tip.style.display = text ? 'block' : 'none';
    tip.style.left = (ev.pageX + 12) + 'px';
    tip.style.top = (ev.pageY + 12) + 'px';
  });
  canvas.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
  canvas.addEventListener('click', function (ev) {
    var rect = canvas.getBoundingClientRect();
    var x = ev.clientX - rect.left, y = ev.clientY - rect.top;
    for (var m = 0; m < markers.length; m++) {
      if (Math.abs(markers[m].x - x) < 7 && Math.abs(markers[m].y - y) < 9) { show(dom.findings[markers[m].k]); return; }
    }
  });
  // Zoom: the wheel zooms time around the pointer; with Shift, the address axis.
  canvas.addEventListener('wheel', function (ev) {
    ev.preventDefault();
    var rect = canvas.getBoundingClientRect();
    var k = ev.deltaY > 0 ? 1.25 : 0.8;
    if (ev.shiftKey) {
      var fy = view.y0 + ((ev.clientY - rect.top - PAD_T) / plotH()) * (view.y1 - view.y0);
      view.y0 = fy - (fy - view.y0) * k; view.y1 = fy + (view.y1 - fy) * k;
    } else {
      var fx = posAt(ev.clientX - rect.left);
      view.x0 = fx - (fx - view.x0) * k; view.x1 = fx + (view.x1 - fx) * k;
    }
    draw();
  }, { passive: false });
  var drag = null;
  canvas.addEventListener('mousedown', function (ev) { drag = { x: ev.clientX, y: ev.clientY, v: Object.assign({}, view) }; });
  window.addEventListener('mouseup', function () { drag = null; });
  window.addEventListener('mousemove', function (ev) {
    if (!drag) return;
    var dx = ((ev.clientX - drag.x) / plotW()) * (drag.v.x1 - drag.v.x0);
    var dy = ((ev.clientY - drag.y) / plotH()) * (drag.v.y1 - drag.v.y0);
    view.x0 = drag.v.x0 - dx; view.x1 = drag.v.x1 - dx; view.y0 = drag.v.y0 - dy; view.y1 = drag.v.y1 - dy;
    draw();
  });
  document.getElementById('reset').addEventListener('click', function () { showDomain(select.selectedIndex); });
  // The findings table, made here from the data (one row per finding, up to ROWS_AT_FIRST per
  // address space, the rest on request), with one click handler for all rows.
  var ROWS_AT_FIRST = 1000;
  var table = document.getElementById('findings');
  function addRows(d, from, to) {
    var frag = document.createDocumentFragment();
    for (var i = from; i < to; i++) {
      var f = d.findings[i];
      var tr = document.createElement('tr');
      tr.className = 'finding';
      tr.id = 'finding-' + d.name + '-' + f.position + '-' + f.kind;
      tr.dataset.domain = d.name;
      tr.dataset.index = String(i);
      tr.dataset.kind = f.kind;
      if (f.verdict) tr.dataset.verdict = f.verdict;
      [ '#' + f.position, d.name, f.kind + (f.verdict ? ' (' + f.verdict + ')' : ''), f.title ].forEach(function (t) {
        var td = document.createElement('td');
        td.textContent = t;
        tr.appendChild(td);
      });
      frag.appendChild(tr);
    }
    return frag;
  }
  data.domains.forEach(function (d) {
    var first = Math.min(d.findings.length, ROWS_AT_FIRST);
    table.appendChild(addRows(d, 0, first));
    if (first < d.findings.length) {
      var more = document.createElement('tr');
      more.className = 'more';
      more.dataset.domain = d.name;
      var td = document.createElement('td');
      td.colSpan = 4;
      var button = document.createElement('button');
      button.textContent = 'show the other ' + (d.findings.length - first) + ' findings of ' + d.name;
      button.addEventListener('click', function () { table.replaceChild(addRows(d, first, d.findings.length), more); showDomain(select.selectedIndex); });
      td.appendChild(button);
      more.appendChild(td);
      table.appendChild(more);
    }
  });
  table.addEventListener('click', function (ev) {
    var row = ev.target.closest('tr.finding');
    if (!row) return;
    var d = data.domains.findIndex(function (x) { return x.name === row.dataset.domain; });
    if (d !== select.selectedIndex) { select.selectedIndex = d; showDomain(d); }
    show(dom.findings[Number(row.dataset.index)]);
  });
  select.addEventListener('change', function () { showDomain(select.selectedIndex); });
  function resize() {
    canvas.width = Math.max(600, canvas.clientWidth);
    canvas.height = 460;
    if (dom) draw();
  }
  window.addEventListener('resize', resize);
  resize();
  if (data.domains.length) showDomain(0);
  data.readyMs = performance.now();
  document.body.dataset.ready = 'true';
})();
`;
