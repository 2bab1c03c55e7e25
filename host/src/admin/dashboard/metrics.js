// silo dashboard — reading /metrics: the Prometheus text format (0.0.4) and OpenMetrics
// (`# EOF`, counters typed `x` with samples `x_total`), rates from counter deltas between
// polls, and quantiles from histogram buckets.
'use strict';

(function () {
  const Silo = (window.Silo = window.Silo || {});

  function parseLabels(s, i, labels) {
    // s[i] is just after `{`; returns the index after `}`.
    while (i < s.length) {
      while (s[i] === ' ' || s[i] === ',') i++;
      if (s[i] === '}') return i + 1;
      const eq = s.indexOf('=', i);
      if (eq < 0) return -1;
      const name = s.slice(i, eq).trim();
      i = eq + 1;
      if (s[i] !== '"') return -1;
      i++;
      let v = '';
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) {
          const n = s[i + 1];
          v += n === 'n' ? '\n' : n;
          i += 2;
        } else v += s[i++];
      }
      labels[name] = v;
      i++;
    }
    return -1;
  }

  function parseValue(v) {
    if (v === '+Inf' || v === 'Inf') return Infinity;
    if (v === '-Inf') return -Infinity;
    return Number(v);
  }

  /**
   * Parses an exposition: returns {samples: Map(sampleName → [{labels, value}]),
   * types: Map(familyName → type)}. Unknown or broken lines are skipped.
   */
  Silo.parseMetrics = function (text) {
    const samples = new Map();
    const types = new Map();
    for (const raw of String(text).split('\n')) {
      const line = raw.trim();
      if (!line) continue;
      if (line.startsWith('#')) {
        const m = /^#\s+TYPE\s+(\S+)\s+(\S+)/.exec(line);
        if (m) types.set(m[1], m[2]);
        continue;
      }
      const brace = line.indexOf('{');
      const space = line.indexOf(' ');
      let name;
      let rest;
      const labels = {};
      if (brace >= 0 && (space < 0 || brace < space)) {
        name = line.slice(0, brace);
        const end = parseLabels(line, brace + 1, labels);
        if (end < 0) continue;
        rest = line.slice(end).trim();
      } else {
        if (space < 0) continue;
        name = line.slice(0, space);
        rest = line.slice(space + 1).trim();
      }
      const value = parseValue(rest.split(/\s+/)[0]);
      if (Number.isNaN(value)) continue;
      if (!samples.has(name)) samples.set(name, []);
      samples.get(name).push({ labels, value });
    }
    return { samples, types };
  };

  /** The samples named `name` (a counter's may be `x_total` in either format). */
  function samplesOf(snap, name) {
    if (!snap) return [];
    return snap.samples.get(name) || [];
  }
  Silo.samplesOf = samplesOf;

  /** Sums the samples of `name` by `key(labels)` (skipping null keys): Map key → sum. */
  Silo.sumBy = function (snap, name, key) {
    const out = new Map();
    for (const s of samplesOf(snap, name)) {
      const k = key(s.labels);
      if (k === null || k === undefined) continue;
      out.set(k, (out.get(k) || 0) + s.value);
    }
    return out;
  };

  /** Per-second rate of counter `name` by key between two snapshots (a reset counts from 0). */
  Silo.rateBy = function (cur, prev, name, key) {
    const out = new Map();
    if (!cur || !prev || cur.t <= prev.t) return out;
    const now = Silo.sumBy(cur, name, key);
    const before = Silo.sumBy(prev, name, key);
    const dt = (cur.t - prev.t) / 1000;
    for (const [k, v] of now) {
      const b = before.get(k) || 0;
      out.set(k, (v >= b ? v - b : v) / dt);
    }
    return out;
  };

  /**
   * Quantile `q` of cumulative buckets [{le, count}] (sorted by le), as Prometheus'
   * histogram_quantile does: linear within the bucket, the lower bound of +Inf otherwise.
   */
  Silo.bucketQuantile = function (q, buckets) {
    if (!buckets.length) return null;
    const total = buckets[buckets.length - 1].count;
    if (!(total > 0)) return null;
    const rank = q * total;
    let prevLe = 0;
    let prevCount = 0;
    for (const b of buckets) {
      if (b.count >= rank) {
        if (b.le === Infinity) return prevLe;
        const inBucket = b.count - prevCount;
        if (inBucket <= 0) return b.le;
        return prevLe + (b.le - prevLe) * ((rank - prevCount) / inBucket);
      }
      prevLe = b.le;
      prevCount = b.count;
    }
    return prevLe;
  };

  function bucketsBy(snap, family, key) {
    const groups = new Map();
    for (const s of samplesOf(snap, family + '_bucket')) {
      const k = key(s.labels);
      if (k === null || k === undefined) continue;
      const le = parseValue(s.labels.le);
      if (!groups.has(k)) groups.set(k, new Map());
      const g = groups.get(k);
      g.set(le, (g.get(le) || 0) + s.value);
    }
    return groups;
  }

  /**
   * Quantile `q` (in the family's unit, seconds) of histogram `family` by key: over the
   * observations since `base` when there are any, else over all since the host started.
   * Returns Map key → {value, count, recent}.
   */
  Silo.quantileBy = function (cur, base, family, key, q) {
    const out = new Map();
    const now = bucketsBy(cur, family, key);
    const before = base ? bucketsBy(base, family, key) : new Map();
    for (const [k, g] of now) {
      const les = [...g.keys()].sort((a, b) => a - b);
      const all = les.map((le) => ({ le, count: g.get(le) }));
      const b = before.get(k);
      let recent = false;
      let use = all;
      if (b) {
        const delta = les.map((le) => ({ le, count: g.get(le) - (b.get(le) || 0) }));
        if (delta.length && delta[delta.length - 1].count > 0 && delta.every((d) => d.count >= 0)) {
          use = delta;
          recent = true;
        }
      }
      const count = use.length ? use[use.length - 1].count : 0;
      out.set(k, { value: Silo.bucketQuantile(q, use), count, recent });
    }
    return out;
  };
})();
