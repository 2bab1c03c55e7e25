// silo dashboard — the service map: services as nodes (version, route, stores and their
// backends, request and 5xx rates), declared calls and saga commands as edges (rate, p99),
// subscriptions as edges from publisher to subscriber (pending, oldest age, delivery p99):
// the pattern's sync lag, drawn where it happens.
'use strict';

(function () {
  const Silo = (window.Silo = window.Silo || {});
  const { svg, fmt } = Silo;
  const NODE_W = 220;
  const NODE_H = 96;

  /** Columns by call direction: a callee (or saga participant) right of its caller. */
  function layers(names, edges, subs) {
    const layer = new Map(names.map((n) => [n, 0]));
    const linked = new Set();
    for (const e of edges) linked.add(e.from).add(e.to);
    for (let i = 0; i < names.length; i++) {
      for (const e of edges) {
        if (e.from !== e.to && layer.has(e.from) && layer.has(e.to)) {
          layer.set(e.to, Math.min(names.length, Math.max(layer.get(e.to), layer.get(e.from) + 1)));
        }
      }
      for (const s of subs) {
        if (!linked.has(s.to) && s.from !== s.to && layer.has(s.from) && layer.has(s.to)) {
          layer.set(s.to, Math.min(names.length, Math.max(layer.get(s.to), layer.get(s.from) + 1)));
        }
      }
    }
    return layer;
  }

  /** Where the segment from the centre of `box` towards (dx, dy) leaves the box. */
  function border(box, dx, dy) {
    const hw = NODE_W / 2 + 3;
    const hh = NODE_H / 2 + 3;
    const t = Math.min(dx ? hw / Math.abs(dx) : Infinity, dy ? hh / Math.abs(dy) : Infinity);
    return { x: box.x + dx * t, y: box.y + dy * t };
  }

  /** A curve from box `a` to box `b`, bent by `bend` px to its left; returns path and midpoint. */
  function curve(a, b, bend) {
    const mx = (a.x + b.x) / 2;
    const my = (a.y + b.y) / 2;
    const len = Math.hypot(b.x - a.x, b.y - a.y) || 1;
    const c = { x: mx + (-(b.y - a.y) / len) * bend, y: my + ((b.x - a.x) / len) * bend };
    const p0 = border(a, c.x - a.x, c.y - a.y);
    const p2 = border(b, c.x - b.x, c.y - b.y);
    const d = `M${p0.x.toFixed(1)} ${p0.y.toFixed(1)} Q${c.x.toFixed(1)} ${c.y.toFixed(1)} ${p2.x.toFixed(1)} ${p2.y.toFixed(1)}`;
    const mid = { x: 0.25 * p0.x + 0.5 * c.x + 0.25 * p2.x, y: 0.25 * p0.y + 0.5 * c.y + 0.25 * p2.y };
    return { d, mid };
  }

  function label(at, lines, cls, title) {
    const width = Math.max(...lines.map((l) => l.length)) * 6.4 + 10;
    const height = lines.length * 13 + 4;
    const g = svg('g', { class: 'edge-label ' + (cls || '') });
    if (title) g.appendChild(svg('title', { text: title }));
    g.appendChild(svg('rect', { x: at.x - width / 2, y: at.y - height / 2, width, height, rx: 3 }));
    lines.forEach((l, i) => g.appendChild(svg('text', {
      x: at.x, y: at.y - height / 2 + 13 + i * 13, 'text-anchor': 'middle', text: l,
    })));
    return g;
  }

  /**
   * The map as an SVG element. `data`: {services, subscriptions, cur, prev, base} (the
   * /metrics snapshots now, ~10 s ago and ~60 s ago).
   */
  Silo.renderMap = function (data) {
    const services = data.services || [];
    const names = services.map((s) => s.name).sort();
    const byName = new Map(services.map((s) => [s.name, s]));
    const edges = [];
    for (const s of services) {
      for (const c of s.calls || []) edges.push({ kind: 'call', from: s.name, to: c });
      for (const p of s.sagaParticipants || []) edges.push({ kind: 'saga', from: s.name, to: p });
    }
    // Subscriptions, one edge per publisher → subscriber pair.
    const subPairs = new Map();
    for (const sub of data.subscriptions || []) {
      const k = sub.source + '>' + sub.subscriber;
      if (!subPairs.has(k)) subPairs.set(k, { from: sub.source, to: sub.subscriber, subs: [] });
      subPairs.get(k).subs.push(sub);
    }
    for (const s of services) {
      for (const sub of s.subscribes || []) {
        const k = sub.source + '>' + s.name;
        if (!subPairs.has(k)) subPairs.set(k, { from: sub.source, to: s.name, subs: [] });
      }
    }
    const layer = layers(names, edges, [...subPairs.values()]);
    const columns = [];
    for (const n of names) {
      const l = layer.get(n);
      (columns[l] = columns[l] || []).push(n);
    }
    const cols = columns.filter(Boolean);
    const rows = Math.max(1, ...cols.map((c) => c.length));
    const W = Math.max(1100, cols.length * (NODE_W + 200));
    const H = Math.max(520, rows * (NODE_H + 46) + 40);
    const pos = new Map();
    cols.forEach((col, i) => {
      col.forEach((n, j) => pos.set(n, {
        x: (W * (i + 0.5)) / cols.length,
        y: (H * (j + 0.5)) / col.length,
      }));
    });

    const { cur, prev, base } = data;
    const svcKey = (l) => l.service;
    const httpKnown = Silo.samplesOf(cur, 'silo_http_requests_total').length > 0;
    let reqRate = Silo.rateBy(cur, prev, 'silo_http_requests_total', svcKey);
    if (!httpKnown) {
      reqRate = Silo.rateBy(cur, prev, 'dashboard:requests', svcKey);
    }
    const errRate = Silo.rateBy(cur, prev, 'silo_http_requests_total',
      (l) => (String(l.status || '').startsWith('5') ? l.service : null));
    const pairKey = (l) => l.caller + '>' + l.callee;
    const callRate = Silo.rateBy(cur, prev, 'silo_calls_total', pairKey);
    const callErr = Silo.rateBy(cur, prev, 'silo_calls_total',
      (l) => (l.status && l.status !== 'ok' && !String(l.status).startsWith('2') ? pairKey(l) : null));
    const callP99 = Silo.quantileBy(cur, base, 'silo_call_duration_seconds', pairKey, 0.99);
    const lagP99 = Silo.quantileBy(cur, base, 'silo_events_delivery_lag_seconds', (l) => l.subscription, 0.99);

    const root = svg('svg', {
      id: 'map', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'xMidYMid meet',
      role: 'img', 'aria-label': 'service map',
    });
    const defs = svg('defs');
    for (const k of ['call', 'saga', 'sub', 'lag']) {
      defs.appendChild(svg('marker', {
        id: 'arrow-' + k, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
        orient: 'auto-start-reverse',
      }, svg('path', { d: 'M0 0 L10 5 L0 10 z', class: 'arrow ' + k })));
    }
    root.appendChild(defs);
    const edgeLayer = svg('g', { class: 'edges' });
    const labelLayer = svg('g', { class: 'labels' });

    for (const e of edges) {
      const a = pos.get(e.from);
      const b = pos.get(e.to);
      if (!a || !b) continue;
      const k = e.from + '>' + e.to;
      const c = curve(a, b, e.kind === 'call' ? 0 : 34);
      edgeLayer.appendChild(svg('path', {
        d: c.d, class: 'edge ' + e.kind, 'marker-end': `url(#arrow-${e.kind})`,
        'data-from': e.from, 'data-to': e.to,
      }));
      if (e.kind === 'call') {
        const p99 = callP99.get(k);
        const err = callErr.get(k) || 0;
        const text = `${fmt.rate(callRate.get(k) ?? null)} · p99 ${fmt.secs(p99 ? p99.value : null)}`;
        labelLayer.appendChild(label(c.mid, err > 0 ? [text, `errors ${fmt.rate(err)}`] : [text],
          'call' + (err > 0 ? ' bad' : ''), `calls ${e.from} → ${e.to}`));
      }
    }

    for (const pair of subPairs.values()) {
      const a = pos.get(pair.from);
      const b = pos.get(pair.to);
      if (!a || !b) continue;
      const pending = pair.subs.reduce((n, s) => n + (s.pending || 0), 0);
      const oldest = Math.max(0, ...pair.subs.map((s) => s.oldestPendingAgeMs || 0));
      const dead = pair.subs.reduce((n, s) => n + (s.deadLetters || 0), 0);
      const p99s = pair.subs.map((s) => {
        const m = lagP99.get(s.subscription);
        return m && m.value !== null ? m.value * 1000 : s.latencyP99Ms;
      }).filter((v) => v !== null && v !== undefined);
      const p99 = p99s.length ? Math.max(...p99s) : null;
      const lagging = oldest > 2000 || dead > 0;
      const c = curve(a, b, 80);
      edgeLayer.appendChild(svg('path', {
        d: c.d, class: 'edge sub' + (lagging ? ' lag' : ''), 'marker-end': `url(#arrow-${lagging ? 'lag' : 'sub'})`,
        'data-from': pair.from, 'data-to': pair.to,
      }));
      const topics = pair.subs.map((s) => s.topic);
      const lines = [
        `${topics.length === 1 ? topics[0] : topics.length + ' topics'} · ${pending} pending`,
        `oldest ${pending ? fmt.ms(oldest) : '—'} · p99 ${fmt.ms(p99)}`,
      ];
      if (dead) lines.push(`${dead} dead letter${dead > 1 ? 's' : ''}`);
      const title = pair.subs.map((s) => `${s.subscription}: ${s.pending} pending, ${s.delivered} delivered, ` +
        `${s.retries} retries, ${s.deadLetters} dead${s.stalled ? ', stalled: ' + s.stalled : ''}`).join('\n');
      labelLayer.appendChild(label(c.mid, lines, 'sub' + (lagging ? ' bad' : ''), title));
    }
    root.appendChild(edgeLayer);

    for (const n of names) {
      const s = byName.get(n);
      const p = pos.get(n);
      const x = p.x - NODE_W / 2;
      const y = p.y - NODE_H / 2;
      const err = errRate.get(n) || 0;
      const stores = (s.stores || []).map((st) => `${st.name}: ${st.backend}`).join(', ') || 'no stores';
      const g = svg('g', { class: 'node' + (err > 0 ? ' bad' : ''), 'data-service': n },
        svg('title', { text: `${n} v${s.version} — ${s.digest || ''}` }),
        svg('rect', { x, y, width: NODE_W, height: NODE_H, rx: 8, fill: Silo.color(n, true), stroke: Silo.color(n) }),
        svg('text', { x: x + 10, y: y + 20, class: 'name', text: n }),
        svg('text', { x: x + NODE_W - 10, y: y + 20, class: 'version', 'text-anchor': 'end', text: 'v' + s.version }),
        svg('text', { x: x + 10, y: y + 40, class: 'route', text: s.route }),
        svg('text', { x: x + 10, y: y + 58, class: 'stores', text: fmt.short(stores, 34) }),
        svg('text', { x: x + 10, y: y + 80, class: 'rate', text: `${fmt.rate(reqRate.get(n) ?? null)} req` }),
        svg('text', { x: x + NODE_W - 10, y: y + 80, 'text-anchor': 'end', class: 'errors' + (err > 0 ? ' bad' : ''), text: `5xx ${fmt.rate(httpKnown && prev ? err : null)}` }),
      );
      root.appendChild(g);
    }
    root.appendChild(labelLayer);
    return root;
  };
})();
