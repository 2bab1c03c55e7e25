// silo dashboard — DOM and SVG helpers, number formats, the small line chart.
// Every string from the server goes into the page as text (textContent, attributes set one
// by one): nothing here parses HTML.
'use strict';

(function () {
  const Silo = (window.Silo = window.Silo || {});
  const SVGNS = 'http://www.w3.org/2000/svg';

  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function append(e, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  /** An HTML element: `el('td', {class: 'x'}, 'text', child)`. */
  Silo.el = function (tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  };

  /** An SVG element. */
  Silo.svg = function (tag, attrs, ...children) {
    const e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  };

  /** Replaces the children of `node`, keeping its scroll position. */
  Silo.replace = function (node, ...children) {
    const top = node.scrollTop;
    const kids = [];
    append({ appendChild: (c) => kids.push(c) }, children);
    node.replaceChildren(...kids);
    node.scrollTop = top;
  };

  const fmt = (Silo.fmt = {});
  /** A number for a person: 3, 2.5, 0.12, or — when unknown. */
  fmt.num = function (n, digits) {
    if (n === null || n === undefined || Number.isNaN(n)) return '—';
    if (digits !== undefined) return Number(n).toFixed(digits);
    const a = Math.abs(n);
    if (a === 0 || Number.isInteger(n)) return String(n);
    if (a >= 100) return n.toFixed(0);
    if (a >= 10) return n.toFixed(1);
    return n.toFixed(2);
  };
  fmt.rate = (n) => (n === null || n === undefined ? '—' : fmt.num(n) + '/s');
  /** Milliseconds as `850 ms`, `2.4 s`, `3m 10s`. */
  fmt.ms = function (ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
    if (ms === 0) return '0 ms';
    if (ms < 1) return ms.toFixed(2) + ' ms';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
    const s = Math.round(ms / 1000);
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  };
  fmt.secs = (s) => (s === null || s === undefined ? '—' : fmt.ms(s * 1000));
  /** A time (epoch ms, or an RFC 3339 string) as local HH:MM:SS, with the date if not today. */
  fmt.time = function (t) {
    if (t === null || t === undefined || t === '') return '—';
    // A number below 10^11 is seconds since the epoch (the deploy history's), else ms.
    const d = typeof t === 'number' ? new Date(t < 1e11 ? t * 1000 : t) : new Date(String(t));
    if (Number.isNaN(d.getTime())) return String(t);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  };
  fmt.short = (s, n) => {
    const t = String(s === null || s === undefined ? '' : s);
    return t.length > n ? t.slice(0, n - 1) + '…' : t;
  };

  /** A stable colour per service name. */
  Silo.color = function (name, light) {
    let h = 0;
    for (const c of String(name)) h = (h * 31 + c.codePointAt(0)) % 360;
    return light ? `hsl(${h}, 70%, 92%)` : `hsl(${h}, 55%, 48%)`;
  };

  /**
   * A small line chart: `series` is [{name, cls, points: [[tMs, value], …]}], drawn over the
   * last `windowMs` with one y axis per series (each scaled to its own maximum).
   */
  Silo.lineChart = function (series, opts) {
    const w = opts.width || 300;
    const h = opts.height || 70;
    const now = opts.now || Date.now();
    const span = opts.windowMs || 5 * 60 * 1000;
    const pad = { l: 4, r: 4, t: 14, b: 4 };
    // Over the last `windowMs`, or since the first point when that is more recent (at
    // least 20 s), so a fresh page fills its charts.
    const first = Math.min(now, ...series.flatMap((s) => s.points.map((p) => p[0])));
    const from = Math.max(now - span, Math.min(first, now - 20000));
    const chart = Silo.svg('svg', {
      class: 'chart',
      viewBox: `0 0 ${w} ${h}`,
      width: w,
      height: h,
      role: 'img',
      'aria-label': opts.label || 'chart',
    });
    chart.appendChild(Silo.svg('rect', { x: 0, y: 0, width: w, height: h, class: 'chart-bg' }));
    series.forEach((s, i) => {
      const pts = s.points.filter((p) => p[0] >= from);
      const max = Math.max(1e-9, ...pts.map((p) => p[1]));
      const x = (t) => pad.l + ((t - from) / (now - from || 1)) * (w - pad.l - pad.r);
      const y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
      if (pts.length > 0) {
        const d = pts.map((p, i) => (i ? 'L' : 'M') + x(p[0]).toFixed(1) + ' ' + y(p[1]).toFixed(1)).join(' ');
        chart.appendChild(Silo.svg('path', { d, class: 'line ' + s.cls }));
      }
      const last = pts.length ? pts[pts.length - 1][1] : null;
      const f = s.format || Silo.fmt.num;
      const label = `${s.name} ${f(last)}` + (pts.length ? ` (max ${f(max < 1e-6 ? 0 : max)})` : '');
      // The first legend at the left, the second at the right.
      const right = i > 0;
      chart.appendChild(Silo.svg('text', {
        x: right ? w - pad.r : pad.l, y: 10, 'text-anchor': right ? 'end' : 'start', class: 'legend ' + s.cls, text: label,
      }));
    });
    return chart;
  };

  /** A short message at the bottom of the screen. */
  Silo.toast = function (text, isError) {
    const t = document.getElementById('toast');
    t.textContent = text;
    t.className = isError ? 'error' : '';
    t.hidden = false;
    clearTimeout(Silo.toast.timer);
    Silo.toast.timer = setTimeout(() => (t.hidden = true), isError ? 8000 : 4000);
  };
})();
