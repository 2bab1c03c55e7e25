// silo dashboard — the token, the polling loop, the tabs and the actions (replay, rollback).
// The token comes from the `#token=` fragment (then removed from the address bar) or the
// form, lives in this tab's sessionStorage only, and is sent in the Authorization header,
// never in a URL.
'use strict';

(function () {
  const Silo = (window.Silo = window.Silo || {});
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 2000;
  const KEEP_MS = 6 * 60 * 1000;
  const TOKEN_KEY = 'silo.adminToken';

  const st = (Silo.state = {
    tab: 'map',
    services: [],
    subscriptions: [],
    deadLetters: [],
    orchestrators: [],
    sagas: [],
    sagaFilter: null,
    sagaSelected: null,
    sagaDetail: null,
    sagaTraces: new Map(),
    traces: [],
    tracesMissing: false,
    traceSelected: null,
    traceSpans: null,
    deploys: new Map(),
    history: new Map(),
    snapshots: [],
    cur: null,
    prev: null,
    base: null,
  });
  let token = null;
  let busy = false;
  let timer = null;

  class Unauthorized extends Error {}

  function needToken(message) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $('login-error').textContent = message || '';
    $('login').hidden = false;
    $('views').hidden = true;
    setStatus('bad', 'needs the admin token');
    $('token-input').focus();
  }

  function setStatus(kind, text) {
    $('status-dot').className = kind;
    $('status-text').textContent = text;
  }

  /** A call to the admin API with the token in its header. */
  async function api(path, options) {
    const opts = options || {};
    const resp = await fetch(path, {
      method: opts.method || 'GET',
      headers: { Authorization: 'Bearer ' + token },
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
    if (resp.status === 401) {
      needToken('The host refused that token.');
      throw new Unauthorized('unauthorized');
    }
    return resp;
  }

  async function json(path, options) {
    const resp = await api(path, options);
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const msg = body && body.error ? body.error.message : resp.statusText;
      const e = new Error(`${resp.status}: ${msg}`);
      e.status = resp.status;
      throw e;
    }
    return body;
  }

  /** The newest snapshot at least `ageMs` older than the current one, else the oldest. */
  function pick(ageMs) {
    const older = st.snapshots.filter((s) => s !== st.cur);
    let best = older.length ? older[0] : null;
    for (const s of older) if (st.cur.t - s.t >= ageMs) best = s;
    return best;
  }

  async function poll() {
    if (!token || busy) return;
    busy = true;
    try {
      const sagaQuery = '/admin/sagas?limit=100' + (st.sagaFilter ? '&state=' + encodeURIComponent(st.sagaFilter) : '');
      const [services, events, dead, sagas, metrics] = await Promise.allSettled([
        json('/admin/services'), json('/admin/events'), json('/admin/dead-letters'), json(sagaQuery),
        api('/metrics').then((r) => (r.ok ? r.text() : '')),
      ]);
      const all = [services, events, dead, sagas, metrics];
      if (all.some((r) => r.status === 'rejected' && r.reason instanceof Unauthorized)) return;
      const now = Date.now();
      if (services.status === 'fulfilled') st.services = services.value.services || [];
      if (events.status === 'fulfilled') st.subscriptions = events.value.subscriptions || [];
      if (dead.status === 'fulfilled') st.deadLetters = dead.value.deadLetters || [];
      if (sagas.status === 'fulfilled') {
        st.orchestrators = sagas.value.orchestrators || [];
        st.sagas = sagas.value.sagas || [];
        // The newest saga until one is chosen: an order's steps are on screen at once.
        if (!st.sagaSelected && st.sagas.length) st.sagaSelected = st.sagas[0].id;
        const sel = st.sagas.find((s) => s.id === st.sagaSelected);
        if (sel) st.sagaDetail = sel;
      }
      const snap = Silo.parseMetrics(metrics.status === 'fulfilled' ? metrics.value : '');
      snap.t = now;
      // The admin API's request totals: request rates even without the metrics families.
      snap.samples.set('dashboard:requests', st.services.map((s) => ({ labels: { service: s.name }, value: s.requests || 0 })));
      st.snapshots.push(snap);
      while (st.snapshots.length > 2 && now - st.snapshots[0].t > KEEP_MS) st.snapshots.shift();
      st.cur = snap;
      st.prev = pick(10000);
      st.base = pick(60000);
      for (const s of st.subscriptions) {
        if (!st.history.has(s.subscription)) st.history.set(s.subscription, []);
        const h = st.history.get(s.subscription);
        h.push({ t: now, pending: s.pending || 0, oldest: s.pending ? s.oldestPendingAgeMs || 0 : 0 });
        while (h.length && now - h[0].t > KEEP_MS) h.shift();
      }
      if (st.tab === 'traces' || (st.tab === 'sagas' && st.sagaSelected)) await loadTraces();
      if (st.tab === 'deploys') await loadDeploys();
      const failed = all.filter((r) => r.status === 'rejected');
      if (failed.length === all.length) setStatus('bad', 'the admin API does not answer');
      else if (failed.length) setStatus('warn', 'partly live: ' + failed[0].reason.message);
      else setStatus('ok', 'live · ' + new Date(now).toLocaleTimeString());
      render();
    } catch (e) {
      if (!(e instanceof Unauthorized)) setStatus('bad', String(e.message || e));
    } finally {
      busy = false;
    }
  }

  async function loadTraces() {
    try {
      const body = await json('/admin/traces?limit=200');
      st.tracesMissing = false;
      st.traces = body.spans || [];
      // The newest trace until one is chosen.
      if (!st.traceSelected && st.traces.length) st.traceSelected = Silo.groupTraces(st.traces)[0].traceId;
      for (const s of st.traces) {
        const a = s.attributes || {};
        const sagaId = a['silo.saga_id'];
        if (sagaId && !st.sagaTraces.has(sagaId)) st.sagaTraces.set(String(sagaId), s.traceId);
      }
      if (st.traceSelected) {
        const t = await json('/admin/traces/' + encodeURIComponent(st.traceSelected));
        st.traceSpans = t.spans || [];
      }
    } catch (e) {
      if (e instanceof Unauthorized) throw e;
      if (e.status === 404 && !st.traces.length) st.tracesMissing = true;
      else if (e.status === 404 && st.traceSelected) st.traceSpans = [];
    }
  }

  async function loadDeploys() {
    await Promise.all(st.services.map(async (s) => {
      try {
        st.deploys.set(s.name, await json('/admin/services/' + encodeURIComponent(s.name)));
      } catch (e) {
        if (e instanceof Unauthorized) throw e;
      }
    }));
  }

  function render() {
    const failed = st.orchestrators.reduce((n, o) => n + ((o.states || {}).failed || 0), 0);
    $('badge-events').textContent = st.deadLetters.length ? String(st.deadLetters.length) : '';
    $('badge-sagas').textContent = failed ? String(failed) : '';
    $('badge-isolation').textContent = Silo.refusalsRising(st) ? '!' : '';
    switch (st.tab) {
      case 'map': {
        const pending = st.subscriptions.reduce((n, s) => n + (s.pending || 0), 0);
        $('map-summary').textContent = `${st.services.length} services · ${st.subscriptions.length} subscriptions · ${pending} events pending`;
        Silo.replace($('map-wrap'), Silo.renderMap(st));
        break;
      }
      case 'events': Silo.renderEvents(st, actions); break;
      case 'sagas': Silo.renderSagas(st, actions); break;
      case 'deploys': Silo.renderDeploys(st, actions); break;
      case 'traces': Silo.renderTraces(st, actions); break;
      case 'isolation': Silo.renderIsolation(st); break;
      default: break;
    }
  }

  function show(tab) {
    st.tab = tab;
    sessionStorage.setItem('silo.tab', tab);
    for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.tab === tab);
    for (const v of document.querySelectorAll('.view')) v.hidden = v.dataset.view !== tab;
    render();
    poll();
  }

  const actions = {
    async replay(id, button) {
      if (button) button.disabled = true;
      try {
        await json('/admin/dead-letters/' + encodeURIComponent(id) + '/replay', { method: 'POST' });
        Silo.toast('Replayed: the event is back in line for its subscriber.');
      } catch (e) {
        if (!(e instanceof Unauthorized)) Silo.toast('Replay failed — ' + e.message, true);
      }
      poll();
    },
    async rollback(name, button) {
      const d = st.deploys.get(name);
      const active = d ? d.active : '?';
      if (!window.confirm(`Roll ${name} back from v${active} to the version before it?`)) return;
      if (button) button.disabled = true;
      try {
        const o = await json('/admin/services/' + encodeURIComponent(name) + '/rollback', { method: 'POST' });
        Silo.toast(`${name} now serves v${o.version}.`);
      } catch (e) {
        if (!(e instanceof Unauthorized)) Silo.toast('Rollback failed — ' + e.message, true);
      }
      poll();
    },
    filterSagas(state) {
      st.sagaFilter = state;
      render();
      poll();
    },
    selectSaga(id) {
      st.sagaSelected = id;
      st.sagaDetail = st.sagas.find((s) => s.id === id) || null;
      render();
      poll();
    },
    selectTrace(id) {
      st.traceSelected = id;
      st.traceSpans = null;
      render();
      poll();
    },
    openTrace(id) {
      st.traceSelected = id;
      st.traceSpans = null;
      show('traces');
    },
  };
  Silo.actions = actions;

  function start() {
    $('login').hidden = true;
    $('views').hidden = false;
    clearInterval(timer);
    timer = setInterval(poll, POLL_MS);
    show(sessionStorage.getItem('silo.tab') || 'map');
  }

  document.addEventListener('DOMContentLoaded', () => {
    // The fragment never reaches the server; take the token and clear the address bar.
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    const tab = /(?:^#|&)tab=(\w+)/.exec(location.hash);
    if (tab && document.querySelector(`#tabs button[data-tab="${tab[1]}"]`)) sessionStorage.setItem('silo.tab', tab[1]);
    if (m || tab) {
      if (m) sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
    for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => show(b.dataset.tab));
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const t = $('token-input').value.trim();
      if (!t) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      $('token-input').value = '';
      token = t;
      start();
    });
    $('forget').addEventListener('click', () => {
      clearInterval(timer);
      needToken('Signed out: the token is gone from this tab.');
    });
    token = sessionStorage.getItem(TOKEN_KEY);
    if (token) start();
    else needToken('');
  });
})();
