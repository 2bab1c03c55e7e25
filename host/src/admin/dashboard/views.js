// silo dashboard — the views other than the map: events, sagas, deploys, traces, isolation.
// Each `render*` takes the dashboard's state and its actions and rebuilds its section.
'use strict';

(function () {
  const Silo = (window.Silo = window.Silo || {});
  const { el, fmt } = Silo;
  const $ = (id) => document.getElementById(id);
  const SAGA_STATES = ['running', 'compensating', 'completed', 'compensated', 'failed'];
  const KINDS = ['store', 'call', 'statement', 'topic', 'saga'];

  function table(head, rows, empty) {
    if (!rows.length) return el('p', { class: 'muted empty', text: empty });
    return el('table', {}, el('thead', {}, el('tr', {}, head.map((h) => el('th', { text: h })))),
      el('tbody', {}, rows));
  }
  const dot = (service) => {
    const d = el('span', { class: 'dot' });
    d.style.background = Silo.color(service);
    return d;
  };
  const pill = (state) => el('span', { class: 'pill ' + String(state), text: state });

  // ---- events -------------------------------------------------------------------------
  Silo.renderEvents = function (st, act) {
    const subs = [...(st.subscriptions || [])].sort((a, b) => a.subscription.localeCompare(b.subscription));
    const now = Date.now();
    Silo.replace($('subscriptions'), subs.length ? subs.map((s) => {
      const h = st.history.get(s.subscription) || [];
      const chart = Silo.lineChart([
        { name: 'pending', cls: 'pending', points: h.map((p) => [p.t, p.pending]) },
        { name: 'oldest', cls: 'age', points: h.map((p) => [p.t, p.oldest]), format: fmt.ms },
      ], { width: 300, height: 64, now, windowMs: 5 * 60 * 1000, label: 'lag of ' + s.subscription });
      const bad = (s.deadLetters || 0) > 0 || s.stalled;
      return el('div', { class: 'card' + (bad ? ' bad' : ''), 'data-subscription': s.subscription },
        el('h3', { text: s.subscription }),
        el('div', { class: 'figures' },
          el('span', {}, 'pending ', el('b', { text: s.pending })),
          el('span', {}, 'oldest ', el('b', { text: s.pending ? fmt.ms(s.oldestPendingAgeMs) : '—' })),
          el('span', {}, 'p50/p99 ', el('b', { text: `${fmt.ms(s.latencyP50Ms)} / ${fmt.ms(s.latencyP99Ms)}` })),
          el('span', {}, 'delivered ', el('b', { text: s.delivered })),
          el('span', {}, 'retries ', el('b', { text: s.retries })),
          el('span', { class: s.deadLetters ? 'bad' : '' }, 'dead ', el('b', { text: s.deadLetters }))),
        s.stalled ? el('div', { class: 'error', text: 'stalled: ' + s.stalled }) : null,
        chart);
    }) : el('p', { class: 'muted empty', text: 'No subscriptions: no service subscribes to a topic.' }));

    const rows = (st.deadLetters || []).map((d) => el('tr', { 'data-id': d.id },
      el('td', { text: d.subscription }),
      el('td', { text: d.topic }),
      el('td', { text: fmt.short(d.key, 24) }),
      el('td', { text: d.attempts }),
      el('td', { class: 'error wrap', text: d.lastError }),
      el('td', { text: fmt.time(d.deadAt) }),
      el('td', {}, el('button', {
        type: 'button', class: 'replay', 'data-id': d.id, text: 'Replay',
        onclick: (e) => act.replay(d.id, e.target),
      }))));
    Silo.replace($('dead-letters'), table(
      ['subscription', 'topic', 'key', 'attempts', 'last error', 'dead since', ''], rows, 'No dead letters.'));
  };

  // ---- sagas --------------------------------------------------------------------------
  Silo.renderSagas = function (st, act) {
    const counts = Object.fromEntries(SAGA_STATES.map((s) => [s, 0]));
    for (const o of st.orchestrators || []) {
      for (const [k, v] of Object.entries(o.states || {})) counts[k] = (counts[k] || 0) + v;
    }
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    const button = (state, text) => el('button', {
      type: 'button', class: 'filter ' + (state || 'all') + (st.sagaFilter === state ? ' active' : ''),
      'data-state': state || 'all', text, onclick: () => act.filterSagas(state),
    });
    Silo.replace($('saga-counts'), button(null, `all ${total}`),
      SAGA_STATES.map((s) => button(s, `${s} ${counts[s] || 0}`)));

    const rows = (st.sagas || []).map((s) => {
      const done = (s.steps || []).filter((x) => x.state === 'succeeded').length;
      return el('tr', {
        class: 'saga clickable' + (s.id === st.sagaSelected ? ' selected' : ''),
        'data-saga-id': s.id, 'data-state': s.state, onclick: () => act.selectSaga(s.id),
      },
      el('td', { class: 'mono', text: fmt.short(s.id, 14), title: `${s.id} (orchestrated by ${s.service})` }),
      el('td', { text: s.kind }),
      el('td', { text: fmt.short(s.key, 20) }),
      el('td', {}, pill(s.state)),
      el('td', { text: `${done}/${(s.steps || []).length}` }),
      el('td', { class: 'error', text: fmt.short(s.reason || '', 30), title: s.reason || '' }));
    });
    Silo.replace($('saga-list'), table(['saga', 'kind', 'key', 'state', 'steps', 'reason'], rows,
      st.sagaFilter ? `No ${st.sagaFilter} sagas.` : 'No sagas yet: place an order.'));

    const saga = (st.sagas || []).find((s) => s.id === st.sagaSelected) || st.sagaDetail;
    Silo.replace($('saga-detail'), saga ? sagaDetail(saga, st, act) :
      el('p', { class: 'muted', text: 'Click a saga to see its steps.' }));
  };

  function sagaDetail(s, st, act) {
    const traceId = s.traceId || st.sagaTraces.get(s.id);
    const steps = s.steps || [];
    const forward = steps.map((x, i) => el('div', { class: 'step ' + x.state, 'data-step': x.name || i },
      el('div', { class: 'step-title', text: `${i + 1}. ${x.service} · ${x.command}` }),
      el('div', {}, pill(x.state), ` attempts ${x.attempts}`),
      x.detail ? el('div', { class: 'detail' + (x.state === 'succeeded' ? ' ok' : ''), text: fmt.short(x.detail, 160), title: x.detail }) : null));
    const comps = steps
      .map((x, i) => ({ x, i }))
      .filter(({ x }) => x.compensation && ((x.compensationAttempts || 0) > 0 || /compensat/.test(x.state)))
      .reverse()
      .map(({ x, i }) => el('div', { class: 'step compensation ' + x.state },
        el('div', { class: 'step-title', text: `↩ ${i + 1}. ${x.service} · ${x.compensation}` }),
        el('div', {}, pill(x.state), ` attempts ${x.compensationAttempts || 0}`)));
    return el('div', { class: 'saga-detail', 'data-saga-id': s.id },
      el('h2', {}, `${s.kind} `, el('span', { class: 'mono', text: s.key })),
      el('p', {}, pill(s.state), ' ', el('span', { class: 'mono muted', text: s.id }), ` · orchestrated by ${s.service}`),
      s.reason ? el('p', { class: 'error', text: s.reason }) : null,
      el('h3', { text: 'Steps' }),
      el('div', { class: 'timeline' }, forward.length ? forward : el('span', { class: 'muted', text: 'no steps' })),
      comps.length ? el('h3', { text: 'Compensations' }) : null,
      comps.length ? el('div', { class: 'timeline' }, comps) : null,
      el('p', {}, traceId
        ? el('button', { type: 'button', class: 'trace-link', 'data-trace-id': traceId, text: 'Open its trace',
          onclick: () => act.openTrace(traceId) })
        : el('span', { class: 'muted', text: st.tracesMissing ? 'No traces on this host yet.' : 'No trace found for this saga among the recent ones.' })));
  }

  // ---- deploys ------------------------------------------------------------------------
  Silo.renderDeploys = function (st, act) {
    const cards = [...(st.services || [])].sort((a, b) => a.name.localeCompare(b.name)).map((svc) => {
      const d = st.deploys.get(svc.name);
      const versions = d ? [...(d.versions || [])].sort((a, b) => b.version - a.version) : [];
      const oldest = versions.length ? versions[versions.length - 1].version : null;
      const canRollback = d && d.active !== null && d.active !== undefined && d.active > oldest;
      const rows = versions.map((v) => el('tr', { class: v.version === d.active ? 'active' : '', 'data-version': v.version },
        el('td', {}, 'v' + v.version, v.version === d.active ? el('span', { class: 'pill completed', text: 'active' }) : null),
        el('td', { class: 'mono', text: String(v.digest || '').replace(/^sha256:/, '').slice(0, 12), title: v.digest }),
        el('td', { text: fmt.time(v.deployedAt) }),
        el('td', { text: v.origin, title: 'route ' + v.route })));
      return el('div', { class: 'card', 'data-service': svc.name },
        el('h3', {}, svc.name, el('span', { class: 'muted', text: `  serving v${svc.version}` })),
        el('div', { class: 'scroll tiny' }, table(['version', 'sha256', 'deployed', 'origin'], rows, 'loading…')),
        el('button', {
          type: 'button', class: 'rollback danger', 'data-service': svc.name, disabled: !canRollback,
          title: canRollback ? 'Serve the version before the active one again' : 'No version before the active one',
          text: 'Rollback', onclick: (e) => act.rollback(svc.name, e.target),
        }));
    });
    Silo.replace($('deploys'), cards.length ? cards : el('p', { class: 'muted', text: 'No services.' }));
  };

  // ---- traces -------------------------------------------------------------------------
  /** Spans grouped by trace: [{traceId, root, start, duration, spans, services, error}]. */
  Silo.groupTraces = function (spans) {
    const byTrace = new Map();
    for (const s of spans || []) {
      if (!byTrace.has(s.traceId)) byTrace.set(s.traceId, []);
      byTrace.get(s.traceId).push(s);
    }
    const out = [];
    for (const [traceId, list] of byTrace) {
      const ids = new Set(list.map((s) => s.spanId));
      const start = Math.min(...list.map((s) => s.startMs));
      const end = Math.max(...list.map((s) => s.startMs + s.durationMs));
      const roots = list.filter((s) => !s.parentSpanId || !ids.has(s.parentSpanId)).sort((a, b) => a.startMs - b.startMs);
      out.push({
        traceId, root: roots[0] || list[0], start, duration: end - start, spans: list.length,
        services: [...new Set(list.map((s) => s.service))], error: list.some((s) => s.status === 'error'),
      });
    }
    return out.sort((a, b) => b.start - a.start);
  };

  Silo.renderTraces = function (st, act) {
    if (st.tracesMissing) {
      Silo.replace($('trace-list'), el('p', { class: 'muted empty', text: 'No traces yet: this host does not serve /admin/traces.' }));
    } else {
      const rows = Silo.groupTraces(st.traces).map((t) => el('tr', {
        class: 'trace clickable' + (t.traceId === st.traceSelected ? ' selected' : '') + (t.error ? ' bad' : ''),
        'data-trace-id': t.traceId, onclick: () => act.selectTrace(t.traceId),
      },
      el('td', { text: fmt.short(t.root.name, 32), title: t.root.name }),
      el('td', { class: 'muted', text: fmt.time(t.start) }),
      el('td', {}, dot(t.root.service), t.root.service),
      el('td', { text: fmt.ms(t.duration) }),
      el('td', { text: t.spans }),
      el('td', { text: t.error ? 'error' : '' })));
      Silo.replace($('trace-list'), table(['root', 'when', 'service', 'duration', 'spans', ''], rows, 'No traces yet.'));
    }
    Silo.replace($('trace-detail'), st.traceSpans && st.traceSpans.length ? waterfall(st) :
      el('p', { class: 'muted', text: st.traceSelected ? 'Loading the trace…' : 'Click a trace to see its waterfall.' }));
  };

  function waterfall(st) {
    const spans = st.traceSpans;
    const ids = new Set(spans.map((s) => s.spanId));
    const children = new Map();
    for (const s of spans) {
      const p = s.parentSpanId && ids.has(s.parentSpanId) ? s.parentSpanId : null;
      if (!children.has(p)) children.set(p, []);
      children.get(p).push(s);
    }
    const order = [];
    const walk = (parent, depth) => {
      for (const s of (children.get(parent) || []).sort((a, b) => a.startMs - b.startMs)) {
        order.push({ s, depth });
        walk(s.spanId, depth + 1);
      }
    };
    walk(null, 0);
    const start = Math.min(...spans.map((s) => s.startMs));
    const total = Math.max(1e-3, Math.max(...spans.map((s) => s.startMs + s.durationMs)) - start);
    const attrs = el('pre', { class: 'attributes', id: 'span-attributes', text: 'Click a span to see its attributes.' });
    const rows = order.map(({ s, depth }) => {
      const bar = el('div', { class: 'bar' + (s.status === 'error' ? ' error' : ''), title: `${s.name} ${fmt.ms(s.durationMs)}` });
      bar.style.left = ((100 * (s.startMs - start)) / total).toFixed(3) + '%';
      bar.style.width = Math.max(0.3, (100 * s.durationMs) / total).toFixed(3) + '%';
      bar.style.background = Silo.color(s.service);
      const name = el('div', { class: 'span-name', title: s.name }, el('span', { class: 'svc', text: s.service }), ' ', s.name);
      name.style.paddingLeft = 6 + depth * 14 + 'px';
      const row = el('div', {
        class: 'span-row' + (s.status === 'error' ? ' bad' : ''), 'data-span-id': s.spanId,
        onclick: () => {
          attrs.textContent = `${s.name} (${s.service}) ${fmt.ms(s.durationMs)} ${s.status}\n` +
            JSON.stringify(s.attributes || {}, null, 2);
        },
      }, name, el('div', { class: 'track' }, bar), el('div', { class: 'span-ms', text: fmt.ms(s.durationMs) }));
      row.appendChild(el('div', { class: 'tooltip', text: Object.entries(s.attributes || {}).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join('\n') || 'no attributes' }));
      return row;
    });
    const root = order.length ? order[0].s : spans[0];
    return el('div', { id: 'waterfall', 'data-trace-id': root.traceId },
      el('h2', {}, root.name, el('span', { class: 'muted', text: `  ${fmt.ms(total)} · ${spans.length} spans · ` }),
        el('span', { class: 'mono muted', text: root.traceId })),
      el('div', { class: 'spans scroll' }, rows), attrs);
  }

  // ---- isolation ----------------------------------------------------------------------
  Silo.renderIsolation = function (st) {
    const key = (l) => `${l.service}\u0000${l.kind}`;
    const totals = Silo.sumBy(st.cur, 'silo_refusals_total', key);
    const rates = Silo.rateBy(st.cur, st.prev, 'silo_refusals_total', key);
    const services = new Set((st.services || []).map((s) => s.name));
    for (const k of totals.keys()) services.add(k.split('\u0000')[0]);
    const kinds = new Set(KINDS);
    for (const k of totals.keys()) kinds.add(k.split('\u0000')[1]);
    const known = Silo.samplesOf(st.cur, 'silo_refusals_total').length > 0;
    const rows = [...services].sort().map((svc) => el('tr', { 'data-service': svc },
      el('th', { text: svc }),
      [...kinds].map((kind) => {
        const total = totals.get(`${svc}\u0000${kind}`);
        const rate = rates.get(`${svc}\u0000${kind}`) || 0;
        return el('td', { class: (total ? 'some' : '') + (rate > 0 ? ' rising' : ''), 'data-kind': kind },
          known ? String(total || 0) : '—', rate > 0 ? el('small', { text: ` +${fmt.rate(rate)}` }) : null);
      })));
    Silo.replace($('isolation'), table(['service', ...[...kinds].map((k) => 'refused ' + k)], rows, 'No services.'));
  };

  /** True when some refusal counter rose since the snapshot ~10 s ago. */
  Silo.refusalsRising = (st) => [...Silo.rateBy(st.cur, st.prev, 'silo_refusals_total', (l) => l.service).values()].some((r) => r > 0);
})();
