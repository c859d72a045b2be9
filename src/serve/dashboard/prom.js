// Reading /metrics in the browser: Prometheus' text format (version 0.0.4) into samples, and the
// arithmetic PromQL does on them (counter deltas with resets, histogram_quantile), so the page
// shows what a Prometheus server scraping kiln would compute. No DOM here: Node can import this
// module as it is (the dashboard test does).

// One sample line: name, optional {labels}, value, optional timestamp.
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)/y;

function unescapeLabel(text) {
  return text.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
}

function parseValue(text, lineNumber) {
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  const v = Number(text);
  if (text === "" || Number.isNaN(v)) throw new Error(`line ${lineNumber}: '${text}' is not a number`);
  return v;
}

function parseLabels(text, lineNumber) {
  const labels = {};
  LABEL.lastIndex = 0;
  while (LABEL.lastIndex < text.length) {
    const start = LABEL.lastIndex;
    const m = LABEL.exec(text);
    if (!m || m.index !== start) throw new Error(`line ${lineNumber}: bad labels {${text}}`);
    labels[m[1]] = unescapeLabel(m[2]);
    if (m[3] === "") break;
  }
  return labels;
}

// Every sample of a scrape, grouped by metric name (a histogram's are under NAME_bucket,
// NAME_sum and NAME_count, as on the page). Throws an Error naming the line on malformed text.
export function parseMetrics(text) {
  const byName = new Map();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`line ${i + 1}: not a sample: ${line.slice(0, 80)}`);
    const sample = { labels: m[2] ? parseLabels(m[2], i + 1) : {}, value: parseValue(m[3], i + 1) };
    if (!byName.has(m[1])) byName.set(m[1], []);
    byName.get(m[1]).push(sample);
  }
  return new Scrape(byName);
}

const matches = (labels, match) => Object.entries(match).every(([k, v]) => (labels[k] ?? "") === v);

export class Scrape {
  constructor(byName) {
    this.byName = byName;
  }
  samples(name, match = {}) {
    return (this.byName.get(name) ?? []).filter((s) => matches(s.labels, match));
  }
  has(name, match = {}) {
    return this.samples(name, match).length > 0;
  }
  // sum(name{match}); 0 when no series matches.
  sum(name, match = {}) {
    return this.samples(name, match).reduce((a, s) => a + s.value, 0);
  }
  // sum by (label) (name{match}), as a Map from the label's value.
  sumBy(name, label, match = {}) {
    const out = new Map();
    for (const s of this.samples(name, match)) {
      const key = s.labels[label] ?? "";
      out.set(key, (out.get(key) ?? 0) + s.value);
    }
    return out;
  }
  // A histogram's cumulative buckets summed over the series that match (sum by (le)), sorted by
  // upper bound: [{le, count}], the last one +Inf.
  buckets(name, match = {}) {
    const byLe = new Map();
    for (const s of this.samples(`${name}_bucket`, match)) {
      const le = parseValue(s.labels.le ?? "", 0);
      byLe.set(le, (byLe.get(le) ?? 0) + s.value);
    }
    return [...byLe.entries()].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count }));
  }
}

// How much a counter grew from `before` to `after`. A counter that went down was reset (the
// server restarted): like rate(), count what it holds now as the growth.
export function counterDelta(after, before) {
  return after >= before ? after - before : after;
}

// The observations that fell into each bucket between two scrapes of a histogram (as
// rate(x_bucket[...]) gives them, unscaled): cumulative buckets again. A reset of the histogram
// (its count went down) counts everything it holds now.
export function bucketDeltas(after, before) {
  const prev = new Map(before.map((b) => [b.le, b.count]));
  const total = (bs) => (bs.length ? bs[bs.length - 1].count : 0);
  const reset = total(after) < total(before);
  return after.map((b) => ({ le: b.le, count: reset ? b.count : Math.max(0, b.count - (prev.get(b.le) ?? 0)) }));
}

// PromQL's histogram_quantile(q, buckets): the q-quantile of the observations in cumulative
// buckets, interpolated linearly within the bucket that holds it (prometheus/promql/quantile.go).
// NaN when there is no observation; a quantile in the +Inf bucket is the highest finite bound.
export function histogramQuantile(q, buckets) {
  if (Number.isNaN(q)) return NaN;
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  if (buckets.length < 2 || buckets[buckets.length - 1].le !== Infinity) return NaN;
  // Counts that are not monotonic (a scrape taken mid-update) are made so, as Prometheus does.
  const b = [];
  let max = 0;
  for (const { le, count } of buckets) {
    max = Math.max(max, count);
    b.push({ le, count: max });
  }
  const observations = b[b.length - 1].count;
  if (observations === 0) return NaN;
  let rank = q * observations;
  let i = b.findIndex((x) => x.count >= rank);
  if (i === b.length - 1) return b[b.length - 2].le;
  if (i === 0 && b[0].le <= 0) return b[0].le;
  let start = 0;
  let count = b[i].count;
  if (i > 0) {
    start = b[i - 1].le;
    count -= b[i - 1].count;
    rank -= b[i - 1].count;
  }
  return start + (b[i].le - start) * (rank / count);
}
