// The Integrations dashboard. It reads the service's Connect/JSON API on the same origin, keeps
// a WatchTenant stream open to refresh only the sections whose numbers moved, and draws every
// chart as plain SVG; every number a chart shows is also in a table.
'use strict';

const SERVICE = '/integration_health.v1.IntegrationHealth/';
const TYPES = [
  ['INBOUND_WEBHOOK', 'Inbound webhooks'],
  ['OUTBOUND_WEBHOOK', 'Outbound webhooks'],
  ['PREBUILT_INTEGRATION', 'Pre-built integrations'],
  ['CUSTOM_NODE', 'Custom nodes'],
  ['CUSTOM_EVENT', 'Custom events'],
];
const LABEL = Object.fromEntries(TYPES);
// The error classes, as docs/events.md maps codes to them.
const CLASSES = [
  ['AUTH', 'Authentication'],
  ['RATE_LIMITED', 'Rate limited'],
  ['PROVIDER_UNAVAILABLE', 'Provider unavailable'],
  ['CONFIG', 'Configuration'],
  ['CLIENT', 'Request refused'],
];
const CLASS_LABEL = Object.fromEntries(CLASSES);
const DASHES = ['', '6 3', '2 3', '8 3 2 3', '1 2'];
const PERIOD_SECONDS = { '1d': 86400, '7d': 7 * 86400, '30d': 30 * 86400, '90d': 90 * 86400, '1y': 365 * 86400 };
const PAGE_SIZE = 10;
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

/** `custom_node:crm` → the type as the API names it and the id (an id alone: any type). */
function focusFromLink(text) {
  const at = text.indexOf(':');
  const type = at > 0 ? text.slice(0, at).toUpperCase() : '';
  return {
    integration: at > 0 ? text.slice(at + 1) : text,
    integrationType: LABEL[type] ? type : '',
  };
}

const state = {
  tenant: '',
  token: sessionStorage.getItem('ih-token') || '',
  period: { overview: '1d', change: '1d', errors: '30d', trends: '30d', integrations: '30d', failures: '30d' },
  hiddenInDonut: new Set(),
  hiddenInTrends: new Set(),
  trendType: '',
  granularity: 'DAY',
  failureType: '',
  failureCode: 0,
  failureClass: '',
  order: 'TOTAL_ERRORS_DESC',
  pageTokens: [''],
  catalogType: '',
  integrationOrder: 'FAILURES_DESC',
  // From ?integration=<type>:<id>: the integration a link (an alert's, say) opened the page
  // on. The failures table lists only its failures; its health row is highlighted.
  ...focusFromLink(new URLSearchParams(location.search).get('integration') || ''),
  // What GetCaller said of the token: issue actions are offered only when it may write.
  caller: null,
  canWrite: false,
  // The failure whose details the dialog shows: live updates refresh it.
  detailsFor: '',
  refreshMs: 1000,
  paused: false,
  watch: null,
  version: null,
};

class RpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

async function rpc(method, request) {
  const headers = { 'Content-Type': 'application/json', 'Connect-Protocol-Version': '1' };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  let response;
  try {
    response = await fetch(SERVICE + method, { method: 'POST', headers, body: JSON.stringify(request) });
  } catch (err) {
    throw new RpcError('unavailable', `cannot reach the service (${err.message})`);
  }
  const text = await response.text();
  let body = {};
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    body = {};
  }
  if (!response.ok) throw new RpcError(body.code || 'unknown', body.message || response.statusText);
  return body;
}

// Elements are built with text nodes only: descriptions and names come from events.
function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

function svg(tag, attrs, ...children) {
  return fill(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs, children);
}

function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    // Through the CSSOM: the page's content security policy refuses style attributes.
    else if (key === 'style') el.style.cssText = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const num = (value) => Number(value || 0);
const fmt = new Intl.NumberFormat();
const count = (value) => fmt.format(num(value));
const when = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const day = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: ZONE });
const time = (iso) => (iso ? when.format(new Date(iso)) : '—');
const rangeText = (range) => (range ? `${time(range.start)} – ${time(range.end)}` : '');
// What an answer covers, and in whole UTC days when it reached back past the hour buckets.
const covers = (answer) => `Covers ${rangeText(answer.effectiveRange)}${answer.granularity === 'DAY' ? ', in whole UTC days' : ''}`;

function lastPeriod(key) {
  const end = Math.ceil(Date.now() / 60000) * 60000;
  const start = end - PERIOD_SECONDS[key] * 1000;
  return { start: new Date(start).toISOString(), end: new Date(end).toISOString() };
}

function cell(value, field) {
  return h('td', { class: 'num', 'data-field': field, 'data-value': num(value) }, count(value));
}

function emptyState(text) {
  return h('p', { class: 'state empty' }, text);
}

// Loads one section: shows loading on first load, then the answer, an empty state or the error.
async function load(id, fetcher, render) {
  const section = document.getElementById(id);
  const body = section.querySelector('.body');
  section.setAttribute('aria-busy', 'true');
  if (!body.dataset.state || body.dataset.state === 'error') {
    body.dataset.state = 'loading';
    body.replaceChildren(h('p', { class: 'state loading' }, 'Loading…'));
  }
  try {
    const answer = await fetcher();
    const rendered = render(answer);
    body.dataset.state = rendered.empty ? 'empty' : 'ready';
    body.replaceChildren(...incompleteNotice(answer), ...rendered.nodes);
    const range = section.querySelector('.range');
    if (range && rendered.range) range.textContent = rendered.range;
  } catch (err) {
    body.dataset.state = 'error';
    body.replaceChildren(h('p', { class: 'state error', role: 'alert' }, `Could not load: ${err.message} (${err.code || 'error'})`));
    if (err.code === 'unauthenticated' || err.code === 'permission_denied') askForToken(err.message);
  } finally {
    section.setAttribute('aria-busy', 'false');
  }
}

// An answer whose events were partly deleted from Kafka before they were counted says so.
function incompleteNotice(answer) {
  if (!answer || !answer.incomplete) return [];
  const lost = (answer.lostOffsets || []).reduce((sum, l) => sum + (num(l.toOffset) - num(l.fromOffset)), 0);
  return [h('p', { class: 'state incomplete', role: 'status' },
    `Incomplete: ${count(lost)} Kafka offsets were deleted before they were counted, so these numbers may be lower than the truth.`)];
}

function askForToken(why) {
  const form = document.getElementById('auth');
  document.getElementById('auth-why').textContent = why
    ? `The service refused the request: ${why}.`
    : 'Enter the bearer token this service gave you.';
  form.hidden = false;
  document.getElementById('token').focus();
}

// ---- Overview: the donut of failures per type ----

function renderOverview(answer) {
  const rows = TYPES.map(([type, label]) => {
    const found = (answer.types || []).find((t) => t.integrationType === type) || {};
    return { type, label, failed: num(found.failed), succeeded: num(found.succeeded) };
  });
  const shown = rows.filter((r) => !state.hiddenInDonut.has(r.type));
  const total = shown.reduce((sum, r) => sum + r.failed, 0);
  const radius = 60;
  const circumference = 2 * Math.PI * radius;
  let offset = 0;
  const arcs = shown.filter((r) => r.failed > 0).map((r) => {
    const length = (r.failed / total) * circumference;
    const arc = svg('circle', {
      r: radius, cx: 80, cy: 80, fill: 'none', class: `t-${r.type}`, 'stroke-width': 28,
      'stroke-dasharray': `${length} ${circumference - length}`, 'stroke-dashoffset': -offset,
      transform: 'rotate(-90 80 80)',
    });
    offset += length;
    return arc;
  });
  const summary = shown.map((r) => `${r.label} ${r.failed}`).join(', ');
  const chart = svg('svg', { viewBox: '0 0 160 160', class: 'donut', role: 'img', 'aria-labelledby': 'donut-title' },
    svg('title', { id: 'donut-title' }, `Failures per integration type: ${summary || 'none'}. Total ${total}.`),
    svg('circle', { r: radius, cx: 80, cy: 80, fill: 'none', class: 'track', 'stroke-width': 28 }),
    arcs,
    svg('text', { x: 80, y: 76, class: 'total', 'text-anchor': 'middle' }, count(total)),
    svg('text', { x: 80, y: 96, class: 'caption', 'text-anchor': 'middle' }, 'failures'));
  const table = h('table', { class: 'legend' },
    h('caption', {}, 'Failures per integration type. Press a type to show or hide it in the chart.'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Integration type'), h('th', { scope: 'col' }, 'Failed'),
      h('th', { scope: 'col' }, 'Share'), h('th', { scope: 'col' }, 'Succeeded'))),
    h('tbody', {}, rows.map((r) => {
      const hidden = state.hiddenInDonut.has(r.type);
      const share = hidden || total === 0 ? '—' : `${((r.failed / total) * 100).toFixed(1)}%`;
      return h('tr', { 'data-type': r.type, class: hidden ? 'off' : '' },
        h('th', { scope: 'row' }, h('button', {
          type: 'button', class: 'toggle', 'aria-pressed': String(!hidden),
          onclick: () => { toggle(state.hiddenInDonut, r.type); refreshOverview(); },
        }, h('span', { class: `swatch t-${r.type}`, 'aria-hidden': 'true' }), r.label)),
        cell(r.failed, 'failed'), h('td', { class: 'num', 'data-field': 'share' }, share), cell(r.succeeded, 'succeeded'));
    })),
    h('tfoot', {}, h('tr', {}, h('th', { scope: 'row' }, 'Total shown'), cell(total, 'total'), h('td'), h('td'))));
  return {
    nodes: [h('div', { class: 'overview' }, chart, table, classTable(answer.classes || []))],
    empty: rows.every((r) => r.failed + r.succeeded === 0),
    range: covers(answer),
  };
}

// The failures of the shown types per class, beside the donut; a class's button keeps the
// failures table to that class (pressed again, to every class).
function classTable(classes) {
  const rows = CLASSES.map(([name, label]) => ({
    name, label, failed: num((classes.find((c) => c.class === name) || {}).failed),
  }));
  const total = rows.reduce((sum, r) => sum + r.failed, 0);
  return h('table', { class: 'classes' },
    h('caption', {}, 'Failures per error class. Press a class to list only its failures below.'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Error class'), h('th', { scope: 'col' }, 'Failed'),
      h('th', { scope: 'col' }, 'Share'))),
    h('tbody', {}, rows.map((r) => h('tr', { 'data-class': r.name },
      h('th', { scope: 'row' }, h('button', {
        type: 'button', class: 'class-filter', 'aria-pressed': String(state.failureClass === r.name),
        onclick: () => setFailureClass(state.failureClass === r.name ? '' : r.name),
      }, r.label)),
      cell(r.failed, 'failed'),
      h('td', { class: 'num', 'data-field': 'share' }, total === 0 ? '—' : `${((r.failed / total) * 100).toFixed(1)}%`)))));
}

function setFailureClass(name) {
  state.failureClass = name;
  state.pageTokens = [''];
  document.getElementById('failure-class').value = name;
  refreshOverview();
  return refreshFailures();
}

function toggle(set, value) {
  if (set.has(value)) set.delete(value);
  else set.add(value);
}

let lastOverview = null;
function refreshOverview() {
  return load('overview', async () => {
    if (!lastOverview || lastOverview.tenant !== state.tenant || lastOverview.period !== state.period.overview) {
      const answer = await rpc('GetOverview', { tenantId: state.tenant, range: lastPeriod(state.period.overview) });
      lastOverview = { tenant: state.tenant, period: state.period.overview, answer };
    }
    return lastOverview.answer;
  }, renderOverview);
}

// ---- Percentage change ----

function changeCell(current, previous, percent, risingIsBad, field) {
  if (percent === undefined || percent === null) {
    return h('td', { class: 'num change', 'data-field': field, 'data-value': '' }, num(current) === 0 ? '—' : 'new');
  }
  const value = Number(percent);
  if (value === 0) return h('td', { class: 'num change', 'data-field': field, 'data-value': 0 }, '0%');
  const rising = value > 0;
  const bad = rising === risingIsBad;
  return h('td', { class: `num change ${bad ? 'bad' : 'good'}`, 'data-field': field, 'data-value': value },
    h('span', { 'aria-hidden': 'true' }, rising ? '▲ ' : '▼ '),
    h('span', { class: 'sr' }, `${rising ? 'up' : 'down'} `),
    `${Math.abs(value).toFixed(1)}%`,
    h('span', { class: 'sr' }, bad ? ' (worse)' : ' (better)'));
}

function renderChange(answer) {
  const rows = TYPES.map(([type, label]) => {
    const t = (answer.types || []).find((x) => x.integrationType === type) || {};
    return h('tr', { 'data-type': type },
      h('th', { scope: 'row' }, label),
      cell(t.failedCurrent, 'failed_current'), cell(t.failedPrevious, 'failed_previous'),
      changeCell(t.failedCurrent, t.failedPrevious, t.failedChangePercent, true, 'failed_change'),
      cell(t.succeededCurrent, 'succeeded_current'), cell(t.succeededPrevious, 'succeeded_previous'),
      changeCell(t.succeededCurrent, t.succeededPrevious, t.succeededChangePercent, false, 'succeeded_change'));
  });
  const table = h('table', {},
    h('caption', {}, 'Failed and succeeded transactions against the previous period of the same length.'),
    h('thead', {}, h('tr', {}, ['Integration type', 'Failed', 'Failed before', 'Change', 'Succeeded', 'Succeeded before', 'Change']
      .map((title) => h('th', { scope: 'col' }, title)))),
    h('tbody', {}, rows));
  const empty = (answer.types || []).every((t) => num(t.failedCurrent) + num(t.failedPrevious) + num(t.succeededCurrent) + num(t.succeededPrevious) === 0);
  return {
    nodes: [table, ...renderDrivers(answer)],
    empty,
    range: `Now ${rangeText(answer.currentRange)}; before ${rangeText(answer.previousRange)}${answer.granularity === 'DAY' ? '; whole UTC days' : ''}`,
  };
}

const refreshChange = () => load('change', () => rpc('GetPercentageChange', {
  tenantId: state.tenant, period: `${PERIOD_SECONDS[state.period.change]}s`, includeDrivers: true,
}), renderChange);

// What moved each type's failures: the integrations and codes whose counts changed most.
function renderDrivers(answer) {
  const moved = (answer.types || []).filter((t) => (t.integrationDrivers || []).length > 0);
  if (moved.length === 0) return [];
  const signed = (n) => (num(n) > 0 ? `+${count(n)}` : count(n));
  return [h('h3', {}, 'What drove the change in failures'),
    h('ul', { class: 'drivers' }, moved.map((t) => h('li', { 'data-type': t.integrationType },
      h('strong', {}, `${LABEL[t.integrationType] || t.integrationType}: `),
      (t.integrationDrivers || []).map((d) => h('span', { class: 'driver', 'data-key': d.key, 'data-value': num(d.change) },
        `${d.name || d.key} ${signed(d.change)}`)),
      (t.codeDrivers || []).length ? h('span', { class: 'codes' }, ` · codes ${(t.codeDrivers || [])
        .map((c) => `${c.key} ${signed(c.change)}`).join(', ')}`) : '')))];
}

// ---- Errors on integrations ----

function renderErrors(answer) {
  const errors = answer.errors || [];
  if (errors.length === 0) return { nodes: [emptyState('No failures in this period.')], empty: true, range: covers(answer) };
  const top = Math.max(...errors.map((e) => num(e.failed)));
  const table = h('table', { class: 'bars' },
    h('caption', {}, 'Failed transactions per error code, most frequent first.'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Code'), h('th', { scope: 'col' }, 'Error'),
      h('th', { scope: 'col' }, 'Failed'), h('th', { scope: 'col' }, h('span', { class: 'sr' }, 'Bar')))),
    h('tbody', {}, errors.map((e) => h('tr', { 'data-code': num(e.statusCode) },
      h('th', { scope: 'row' }, String(num(e.statusCode))), h('td', {}, e.name || ''), cell(e.failed, 'failed'),
      h('td', { class: 'bar', 'aria-hidden': 'true' }, h('span', { style: `width:${(num(e.failed) / top) * 100}%` }))))));
  updateCodeFilter(errors);
  return { nodes: [table], empty: false, range: covers(answer) };
}

const refreshErrors = () => load('errors', () => rpc('GetErrorBreakdown', {
  tenantId: state.tenant, range: lastPeriod(state.period.errors),
}), renderErrors);

function updateCodeFilter(errors) {
  const select = document.getElementById('failure-code');
  const known = new Set([...select.options].map((o) => Number(o.value)));
  for (const e of errors) {
    const code = num(e.statusCode);
    if (!known.has(code)) select.append(h('option', { value: code }, `${code} ${e.name || ''}`));
  }
}

// ---- Failure trends ----

function renderTrends(answer) {
  const series = (answer.series || []).filter((s) => !state.trendType || s.integrationType === state.trendType);
  const points = series.flatMap((s) => s.points || []);
  if (points.length === 0) return { nodes: [emptyState('No buckets in this range.')], empty: true, range: '' };
  const times = [...new Set(points.map((p) => p.bucketStart))].sort();
  const t0 = Date.parse(times[0]);
  const t1 = Math.max(Date.parse(times[times.length - 1]), t0 + 1);
  const visible = series.filter((s) => !state.hiddenInTrends.has(s.integrationType));
  const top = Math.max(1, ...visible.flatMap((s) => (s.points || []).map((p) => num(p.failed))));
  const width = 720;
  const height = 220;
  const left = 48;
  const bottom = 24;
  const x = (iso) => left + ((Date.parse(iso) - t0) / (t1 - t0)) * (width - left - 8);
  const y = (v) => 8 + (1 - v / top) * (height - bottom - 8);
  const label = (iso) => (state.granularity === 'DAY' ? day.format(new Date(iso)) : time(iso));
  const grid = [0, top / 2, top].map((v) => svg('g', {},
    svg('line', { x1: left, x2: width - 8, y1: y(v), y2: y(v), class: 'grid' }),
    svg('text', { x: left - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, count(Math.round(v)))));
  const ticks = [times[0], times[Math.floor(times.length / 2)], times[times.length - 1]].map((iso, i) =>
    svg('text', { x: x(iso), y: height - 6, 'text-anchor': ['start', 'middle', 'end'][i], class: 'axis' }, label(iso)));
  const lines = visible.map((s) => {
    const index = TYPES.findIndex(([type]) => type === s.integrationType);
    const d = (s.points || []).map((p, i) => `${i ? 'L' : 'M'}${x(p.bucketStart).toFixed(1)} ${y(num(p.failed)).toFixed(1)}`).join(' ');
    return svg('path', { d, class: `line t-${s.integrationType}`, 'stroke-dasharray': DASHES[index] || '' });
  });
  const totals = series.map((s) => `${LABEL[s.integrationType]} ${(s.points || []).reduce((sum, p) => sum + num(p.failed), 0)}`);
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'trend', role: 'img', 'aria-labelledby': 'trend-title' },
    svg('title', { id: 'trend-title' }, `Failures per ${state.granularity === 'DAY' ? 'day' : 'hour'}; totals: ${totals.join(', ')}. The table below has every point.`),
    grid, ticks, lines);
  const legend = h('div', { class: 'chips', role: 'group', 'aria-label': 'Show or hide a type in the chart' },
    series.map((s) => h('button', {
      type: 'button', class: 'toggle', 'aria-pressed': String(!state.hiddenInTrends.has(s.integrationType)),
      onclick: () => { toggle(state.hiddenInTrends, s.integrationType); refreshTrends(); },
    }, h('span', { class: `swatch t-${s.integrationType}`, 'aria-hidden': 'true' }), LABEL[s.integrationType])));
  const table = h('details', {}, h('summary', {}, 'The numbers as a table'),
    h('table', { class: 'points' },
      h('caption', {}, `Failures per ${state.granularity === 'DAY' ? `day (${ZONE})` : 'hour'}`),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Bucket'), series.map((s) => h('th', { scope: 'col' }, LABEL[s.integrationType])))),
      h('tbody', {}, times.map((iso) => h('tr', { 'data-bucket': iso }, h('th', { scope: 'row' }, label(iso)),
        series.map((s) => cell(((s.points || []).find((p) => p.bucketStart === iso) || {}).failed, s.integrationType)))))));
  const empty = points.every((p) => num(p.failed) === 0);
  const utc = answer.utcDaysUntil ? `; before ${time(answer.utcDaysUntil)}, UTC days` : '';
  return { nodes: [legend, chart, table], empty, range: `${covers(answer)}, days in ${ZONE}${utc}` };
}

const refreshTrends = () => load('trends', () => rpc('GetTrends', {
  tenantId: state.tenant,
  range: lastPeriod(state.period.trends),
  granularity: state.granularity,
  timeZone: ZONE,
  integrationTypes: state.trendType ? [state.trendType] : [],
}), renderTrends);

// ---- Health per integration ----

function sparkline(points) {
  const values = points.map((p) => num(p.failed));
  const top = Math.max(1, ...values);
  const step = values.length > 1 ? 120 / (values.length - 1) : 0;
  const d = values.map((v, i) => `${i ? 'L' : 'M'}${(i * step).toFixed(1)} ${(22 - (v / top) * 20).toFixed(1)}`).join(' ');
  return svg('svg', { viewBox: '0 0 120 24', class: 'spark', role: 'img', 'aria-label': `Failures per day: ${values.join(', ')}` },
    svg('path', { d }));
}

const ms = (value) => (value === undefined ? '—' : `${Number(value).toFixed(0)} ms`);

function renderIntegrations(answer) {
  const rows = answer.integrations || [];
  const range = covers(answer);
  if (rows.length === 0) return { nodes: [emptyState('No integration had events in this range.')], empty: true, range };
  const table = h('table', { class: 'health' },
    h('caption', {}, 'Volume, failure rate and latency percentiles (within 2%) per integration.'),
    h('thead', {}, h('tr', {}, ['Integration', 'Type', 'Failed', 'Retried', 'Recovered by a retry', 'Succeeded',
      'Failure rate', 'p50', 'p95', 'p99', 'Top error', 'Last failure', 'Failures per day']
      .map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.map((r) => {
      const latency = r.latency || {};
      const focused = state.integration && state.integration === r.integrationId
        && (!state.integrationType || state.integrationType === r.integrationType);
      return h('tr', { 'data-integration': r.integrationId, class: focused ? 'focus' : '' },
        h('th', { scope: 'row' }, r.integrationName || r.integrationId),
        h('td', {}, LABEL[r.integrationType] || r.integrationType),
        cell(r.failed, 'failed'), cell(r.retriedFailures || 0, 'retried'),
        cell(r.recoveredFailures || 0, 'recovered'), cell(r.succeeded, 'succeeded'),
        h('td', { class: 'num', 'data-field': 'failure_rate', 'data-value': Number(r.failureRate || 0) },
          `${(Number(r.failureRate || 0) * 100).toFixed(2)}%`),
        h('td', { class: 'num' }, ms(latency.p50Ms)), h('td', { class: 'num' }, ms(latency.p95Ms)),
        h('td', { class: 'num' }, ms(latency.p99Ms)),
        h('td', {}, r.topErrorCode ? String(r.topErrorCode) : '—'),
        h('td', {}, time(r.lastFailure)),
        h('td', {}, sparkline(r.dailyFailures || [])));
    })));
  return { nodes: [table], empty: false, range };
}

const refreshIntegrations = () => load('integrations', () => rpc('ListIntegrations', {
  tenantId: state.tenant, orderBy: state.integrationOrder, pageSize: 20,
  range: lastPeriod(state.period.integrations),
}), renderIntegrations).then(() => {
  document.querySelector('#integrations tr.focus')?.scrollIntoView({ block: 'center' });
});

// ---- Failures table and details ----

function sortHeader(title, order) {
  const active = state.order === order;
  return h('th', { scope: 'col', 'aria-sort': active ? 'descending' : 'none' },
    h('button', {
      type: 'button', class: 'sort',
      onclick: () => { state.order = order; state.pageTokens = ['']; refreshFailures(); },
    }, title, active ? ' ▼' : ''));
}

// An issue's state as the failures table shows it: "Acknowledged by ana", "Resolved (auto)".
function issueText(issue) {
  if (!issue || !issue.state) return '—';
  const state = issue.state.charAt(0) + issue.state.slice(1).toLowerCase();
  if (issue.autoResolved) return `${state} (auto)`;
  if (!issue.actor) return state;
  // Who acted, as typed, and the grant the service checked: "ana (via ui-backend)".
  return issue.actorGrant ? `${state} by ${issue.actor} (via ${issue.actorGrant})` : `${state} by ${issue.actor}`;
}

// The state with who acted last and when ("Snoozed by ana · Dec 7, 9:12 PM, until Dec 8, 9:12 PM").
function issueState(issue, tag) {
  const at = (issue && issue.actedAt) || '';
  const until = issue && issue.state === 'SNOOZED' && issue.snoozedUntil ? `, until ${time(issue.snoozedUntil)}` : '';
  return h(tag, {
    class: 'issue', 'data-field': 'issue', 'data-state': (issue && issue.state) || 'OPEN', 'data-acted-at': at,
  }, h('span', { class: 'issue-state' }, issueText(issue)),
  at ? h('span', { class: 'acted-at muted' }, ` · ${time(at)}${until}`) : '');
}

function renderFailures(answer) {
  const failures = answer.failures || [];
  const range = covers(answer);
  if (failures.length === 0) return { nodes: [emptyState('No failures match these filters.')], empty: true, range };
  const page = state.pageTokens.length;
  const table = h('table', { class: 'failures' },
    h('caption', {}, `${count(answer.totalGroups)} failure groups; page ${page}.`),
    h('thead', {}, h('tr', {},
      ['Integration type', 'Integration name', 'Failure description', 'Services', 'Flows'].map((t) => h('th', { scope: 'col' }, t)),
      sortHeader('Total errors', 'TOTAL_ERRORS_DESC'), sortHeader('Last seen', 'LAST_SEEN_DESC'),
      h('th', { scope: 'col' }, 'Issue'), h('th', { scope: 'col' }, 'Actions'))),
    h('tbody', {}, failures.map((f) => h('tr', {
      'data-failure-id': f.failureId, 'data-integration': f.integrationId, 'data-code': num(f.statusCode),
    },
      h('td', {}, LABEL[f.integrationType] || f.integrationType),
      h('td', {}, f.integrationName || f.integrationId || ''),
      h('td', { 'data-field': 'description' }, f.failureDescription || ''),
      h('td', {}, f.serviceName || f.serviceId || '—'),
      h('td', {}, f.flowName || f.flowId || '—'),
      cell(f.totalErrors, 'total_errors'),
      h('td', { 'data-field': 'last_seen', 'data-value': f.lastSeen || '' }, time(f.lastSeen)),
      issueState(f.issue, 'td'),
      h('td', { class: 'actions' }, h('button', {
        type: 'button', class: 'details', 'aria-label': `Details of ${f.failureDescription || 'this failure'}`,
        onclick: () => openDetails(f.failureId),
      }, 'Details'), issueButtons(f, refreshFailures))))));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of the failures table' },
    h('button', {
      type: 'button', disabled: page === 1,
      onclick: () => { state.pageTokens.pop(); refreshFailures(); },
    }, 'Previous'),
    h('span', {}, `Page ${page}`),
    h('button', {
      type: 'button', disabled: !answer.nextPageToken,
      onclick: () => { state.pageTokens.push(answer.nextPageToken); refreshFailures(); },
    }, 'Next'));
  return { nodes: [table, pager], empty: false, range };
}

const refreshFailures = () => load('failures', () => rpc('ListFailures', {
  tenantId: state.tenant,
  range: lastPeriod(state.period.failures),
  integrationId: state.integration,
  integrationTypes: state.failureType ? [state.failureType]
    : state.integration && state.integrationType ? [state.integrationType] : [],
  statusCode: state.failureCode,
  classes: state.failureClass ? [state.failureClass] : [],
  pageSize: PAGE_SIZE,
  pageToken: state.pageTokens[state.pageTokens.length - 1],
  orderBy: state.order,
}), renderFailures);

// Opens the details dialog on a failure, or redraws it in place when it is open already (a
// live update, an action taken in it), keeping the keyboard focus inside it.
async function openDetails(failureId) {
  const dialog = document.getElementById('details');
  const body = dialog.querySelector('.body');
  const redraw = dialog.open && state.detailsFor === failureId;
  state.detailsFor = failureId;
  if (!redraw) {
    body.dataset.state = 'loading';
    body.replaceChildren(h('p', { class: 'state loading' }, 'Loading…'));
  }
  if (!dialog.open) dialog.showModal();
  const hadFocus = body.contains(document.activeElement);
  try {
    const answer = await rpc('GetFailureDetails', { tenantId: state.tenant, failureId });
    body.replaceChildren(...renderDetails(answer));
    body.dataset.state = 'ready';
  } catch (err) {
    body.dataset.state = 'error';
    body.replaceChildren(h('p', { class: 'state error', role: 'alert' }, `Could not load: ${err.message}`));
  }
  if (redraw && hadFocus) body.querySelector('.issue-line')?.focus();
}

function renderDetails(answer) {
  const f = answer.failure || {};
  const guidance = answer.guidance || {};
  const facts = [
    ['Integration type', LABEL[f.integrationType] || f.integrationType],
    ['Integration', `${f.integrationName || ''} (${answer.integrationId || f.integrationId || ''})`],
    ['Service', `${f.serviceName || '—'} (${answer.serviceId || '—'})`],
    ['Flow', `${f.flowName || '—'} (${answer.flowId || '—'})`],
    ['Error code', String(num(f.statusCode))],
    ['Total errors', count(f.totalErrors)],
    ['First seen', time(f.firstSeen)],
    ['Last seen', time(f.lastSeen)],
  ];
  const trend = answer.hourlyTrend || [];
  const top = Math.max(1, ...trend.map((p) => num(p.failed)));
  const barWidth = trend.length ? 600 / trend.length : 600;
  const chart = svg('svg', { viewBox: '0 0 600 80', class: 'hourly', role: 'img', 'aria-labelledby': 'hourly-title' },
    svg('title', { id: 'hourly-title' }, `Failures per hour, ${trend.length} hours, peak ${top}.`),
    trend.map((p, i) => svg('rect', {
      x: i * barWidth, width: Math.max(barWidth - 0.5, 0.5), y: 80 - (num(p.failed) / top) * 78,
      height: (num(p.failed) / top) * 78, class: `t-${f.integrationType}`,
    })));
  const samples = answer.recentSamples || [];
  return [
    h('h3', { class: 'description' }, f.failureDescription || ''),
    h('p', { class: 'issue-line', tabindex: '-1' }, 'Issue: ', issueState(f.issue, 'span'), ' ',
      issueButtons(f, () => { refreshFailures(); openDetails(f.failureId); })),
    h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    h('h3', {}, 'How to fix it'),
    h('p', { class: 'guidance', 'data-applicable': String(Boolean(guidance.applicable)) },
      guidance.resolution),
    h('h3', {}, 'Failures per hour'),
    chart,
    h('details', {}, h('summary', {}, 'The hourly numbers as a table'),
      h('table', {}, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Hour'), h('th', { scope: 'col' }, 'Failed'))),
        h('tbody', {}, trend.map((p) => h('tr', {}, h('th', { scope: 'row' }, time(p.bucketStart)), cell(p.failed, 'failed')))))),
    h('h3', {}, 'Newest samples'),
    samples.length === 0 ? emptyState('No samples kept.') : h('table', { class: 'samples' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Event'), h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'Message'))),
      h('tbody', {}, samples.map((s) => h('tr', {}, h('td', {}, h('code', {}, s.eventId || '')), h('td', {}, time(s.occurredAt)), h('td', {}, s.errorMessage || ''))))),
  ];
}

// ---- Issue actions ----

const SNOOZE_FOR = [['1 hour', 3600], ['4 hours', 4 * 3600], ['1 day', 86400], ['7 days', 7 * 86400]];
const ACTION_WORDS = { ACKNOWLEDGE: 'Acknowledge', RESOLVE: 'Resolve', REOPEN: 'Reopen' };

// The actions an issue in its state allows, offered only to a token that may write.
function issueButtons(f, after) {
  if (!state.canWrite) return '';
  const issueState = (f.issue && f.issue.state) || 'OPEN';
  const actions = {
    OPEN: ['ACKNOWLEDGE', 'RESOLVE', 'SNOOZE'],
    REOPENED: ['ACKNOWLEDGE', 'RESOLVE', 'SNOOZE'],
    ACKNOWLEDGED: ['RESOLVE', 'SNOOZE'],
    SNOOZED: ['REOPEN', 'RESOLVE'],
    RESOLVED: ['REOPEN'],
  }[issueState] || [];
  const what = f.failureDescription || 'this failure';
  return h('span', { class: 'issue-actions' }, actions.map((action) => {
    if (action !== 'SNOOZE') {
      return h('button', {
        type: 'button', class: 'issue-action', 'data-action': action, 'aria-label': `${ACTION_WORDS[action]}: ${what}`,
        onclick: () => updateIssue(f.failureId, action).then(after),
      }, ACTION_WORDS[action]);
    }
    const length = h('select', { class: 'snooze-for', 'aria-label': `Snooze ${what} for` },
      SNOOZE_FOR.map(([words, seconds]) => h('option', { value: seconds, selected: seconds === 86400 }, words)));
    return h('span', { class: 'snooze' }, h('button', {
      type: 'button', class: 'issue-action', 'data-action': action, 'aria-label': `Snooze: ${what}, for the chosen time`,
      onclick: () => updateIssue(f.failureId, action, Number(length.value)).then(after),
    }, 'Snooze for'), ' ', length);
  }));
}

async function updateIssue(failureId, action, snoozeSeconds) {
  const request = { tenantId: state.tenant, failureId, action, actor: 'dashboard' };
  if (action === 'SNOOZE') request.snoozeUntil = new Date(Date.now() + snoozeSeconds * 1000).toISOString();
  try {
    await rpc('UpdateIssue', request);
  } catch (err) {
    if (err.code === 'permission_denied') state.canWrite = false;
    const notice = document.querySelector('#failures .body');
    notice.prepend(h('p', { class: 'state error', role: 'alert' }, `The issue was not changed: ${err.message}`));
  }
}

// Asks the service what this token may do; without an answer the page offers no action.
async function loadCaller() {
  const who = document.getElementById('caller');
  try {
    state.caller = await rpc('GetCaller', {});
  } catch (err) {
    state.caller = null;
    state.canWrite = false;
    who.textContent = `Could not ask what this token may do (${err.message}): no actions offered.`;
    return;
  }
  const c = state.caller;
  state.canWrite = Boolean(c.mayWrite);
  const name = c.open ? 'No token needed' : `Token ${c.grantName || '(unnamed)'}`;
  who.textContent = `${name} · ${state.canWrite ? 'may act on issues' : 'read only'}`;
  who.dataset.mayWrite = String(state.canWrite);
}

// ---- Alerts: firing and recently resolved, live from WatchAlerts ----

const RULE_WORDS = { FAILURE_RATE: 'Failure rate', SPIKE: 'Spike', SLO_BURN: 'SLO burn', SILENCE: 'Silence' };

function alertSubject(a) {
  if (a.integrationId) return `${a.integrationName || a.integrationId} (${LABEL[a.integrationType] || a.integrationType})`;
  return `${LABEL[a.integrationType] || a.integrationType}, code ${num(a.statusCode)}`;
}

const SEVERITY_WORDS = { CRITICAL: 'Critical', ERROR: 'Error', WARNING: 'Warning', INFO: 'Info' };

// The link that opens the page on an alert's integration, as `?integration=<type>:<id>`.
function integrationLink(a) {
  const target = `${(a.integrationType || '').toLowerCase()}:${a.integrationId}`;
  return h('a', {
    href: `?tenant=${encodeURIComponent(state.tenant)}&integration=${encodeURIComponent(target)}`,
    'aria-label': `Show only ${alertSubject(a)}`,
  }, alertSubject(a));
}

function renderAlerts(answer) {
  const alerts = answer.alerts || [];
  const firing = alerts.filter((a) => a.state === 'ALERT_FIRING').length;
  const range = `${firing} firing; resolved ones stay listed for 24 hours.`;
  if (alerts.length === 0) return { nodes: [emptyState('Nothing is firing, and nothing resolved in the last 24 hours.')], empty: true, range };
  const list = h('ul', { class: 'alerts' }, alerts.map((a) => {
    const on = a.state === 'ALERT_FIRING';
    const volume = Number(a.minVolume || 0) > 0
      ? `, at least ${count(a.minVolume)} ${a.rule === 'SPIKE' ? 'failures' : 'events'}` : '';
    return h('li', {
      class: on ? 'firing' : 'resolved', 'data-alert-id': a.alertId, 'data-state': a.state,
      'data-integration': a.integrationId || '', 'data-severity': a.severity || '',
    },
    h('strong', { class: 'badge' }, on ? 'Firing' : 'Resolved'), ' ',
    h('span', { class: `severity s-${a.severity || 'NONE'}` }, SEVERITY_WORDS[a.severity] || 'No severity'), ' ',
    h('span', {}, `${RULE_WORDS[a.rule] || a.rule} · `), a.integrationId ? integrationLink(a) : alertSubject(a),
    h('span', {
      class: 'measured', 'data-value': num(a.value), 'data-threshold': num(a.threshold), 'data-min-volume': num(a.minVolume),
    }, ` · ${Number(a.value || 0).toFixed(3)} against ${Number(a.threshold || 0).toFixed(3)} (${a.measure || ''})${volume}`),
    h('span', { class: 'muted' }, on ? ` · firing since ${time(a.firedAt)}` : ` · fired ${time(a.firedAt)}, resolved ${time(a.at)}`));
  }));
  return { nodes: [list], empty: false, range };
}

const refreshAlerts = () => load('alerts', () => rpc('ListAlerts', { tenantId: state.tenant }), renderAlerts);

// ---- Alert rules ----

function ruleScope(scope) {
  const s = scope || {};
  if (s.integrationId) return `${s.integrationId} (${LABEL[s.integrationType] || s.integrationType})`;
  if (s.integrationType) return `All ${LABEL[s.integrationType] || s.integrationType}`;
  return 'The whole tenant';
}

// Whether the page is opened on one integration whose type is known: its rules then apply.
const focusedOnOne = () => Boolean(state.integration && state.integrationType);

const ORIGIN_WORDS = {
  settings: 'service default', rules_file: 'rules file', tenant: 'tenant rule',
  integration_type: 'type rule', integration: 'integration rule',
};

// A field's JSON value as a person reads it: destinations as a list, `(none)` for an empty one.
function fieldValue(json) {
  let value;
  try {
    value = JSON.parse(json);
  } catch {
    return json;
  }
  if (Array.isArray(value)) return value.length ? value.join(', ') : '(none)';
  return String(value);
}

// The rules in force, one per kind, each field with the scope or file it came from.
function effectiveTable(effective) {
  return h('table', { class: 'effective' },
    h('thead', {}, h('tr', {}, ['Rule', 'Settings in force, and where each was set'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, effective.map((r) => h('tr', { 'data-kind': r.kind },
      h('th', { scope: 'row' }, RULE_WORDS[r.kind] || r.kind),
      h('td', {}, h('ul', { class: 'fields' }, (r.fields || []).map((f) => h('li', {
        'data-name': f.name, 'data-value': f.valueJson, 'data-origin': f.origin,
      }, h('span', { class: 'field-name' }, f.name.replaceAll('_', ' ')), ' ', h('strong', {}, fieldValue(f.valueJson)),
      ' ', h('span', { class: `origin o-${f.origin}` }, ORIGIN_WORDS[f.origin] || f.origin)))))))));
}

function renderRules(answer) {
  const rules = answer.rules || [];
  const effective = answer.effective || [];
  const subject = focusedOnOne()
    ? `${state.integration} (${LABEL[state.integrationType]})` : 'the whole tenant';
  const skip = new Set(['scope', 'kind', 'updatedAt', 'updatedBy']);
  const set = rules.length === 0 ? emptyState('No rule set at runtime: the rules file and the service\'s defaults apply.') : h('table', { class: 'rules' },
    h('thead', {}, h('tr', {}, ['Scope', 'Rule', 'Settings', 'Set', 'By'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rules.map((r) => h('tr', { 'data-scope': ruleScope(r.scope), 'data-kind': r.kind },
      h('th', { scope: 'row' }, ruleScope(r.scope)),
      h('td', {}, RULE_WORDS[r.kind] || r.kind),
      h('td', { 'data-field': 'settings' }, Object.entries(r).filter(([k]) => !skip.has(k))
        .map(([k, v]) => `${k} ${typeof v === 'object' ? (v.names || []).join(', ') || '(none)' : v}`).join(' · ')),
      h('td', {}, time(r.updatedAt)),
      h('td', {}, r.updatedBy || '')))));
  return {
    nodes: [h('h3', {}, `In force for ${subject}`), effectiveTable(effective), h('h3', {}, 'Set at runtime'), set],
    empty: false,
    range: 'Read only. An unset field comes from the same rule of the broader scope, then the rules file, then the service\'s defaults.',
  };
}

// Focused on one integration, the rules in force are that integration's.
const refreshRules = () => {
  const one = focusedOnOne();
  return load('rules', () => rpc('ListAlertRules', {
    tenantId: state.tenant,
    effective: true,
    integrationType: one ? state.integrationType : undefined,
    integrationId: one ? state.integration : undefined,
  }), renderRules);
};

// ---- Common errors ----

function renderCatalog(answer) {
  const types = state.catalogType ? TYPES.filter(([t]) => t === state.catalogType) : TYPES;
  const errors = answer.errors || [];
  const table = h('table', { class: 'catalog' },
    h('caption', {}, 'What each error means for each integration type, and how to resolve it.'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Error'), h('th', { scope: 'col' }, 'Description'),
      types.map(([, label]) => h('th', { scope: 'col' }, label)))),
    h('tbody', {}, errors.map((e) => h('tr', { 'data-code': num(e.statusCode) },
      h('th', { scope: 'row' }, String(num(e.statusCode))), h('td', {}, e.name || ''),
      types.map(([type]) => {
        const g = (e.guidance || []).find((x) => x.integrationType === type) || {};
        return h('td', { 'data-type': type, class: g.applicable ? '' : 'na' }, g.resolution);
      })))));
  return { nodes: [table], empty: errors.length === 0 };
}

const refreshCatalog = () => load('catalog', () => rpc('ListCommonErrors', state.catalogType ? { integrationType: state.catalogType } : {}), renderCatalog);

// ---- Tenants, refresh and wiring ----

async function loadTenants() {
  const select = document.getElementById('tenant');
  const wanted = new URLSearchParams(location.search).get('tenant') || '';
  let tenants = [];
  try {
    tenants = (await rpc('ListTenants', {})).tenants || [];
  } catch (err) {
    if (err.code === 'unauthenticated' || err.code === 'permission_denied') {
      askForToken(err.message);
      return false;
    }
  }
  const ids = tenants.map((t) => t.tenantId);
  if (wanted && !ids.includes(wanted)) ids.unshift(wanted);
  select.replaceChildren(...ids.map((id) => {
    const t = tenants.find((x) => x.tenantId === id);
    const suffix = t ? ` (${count(num(t.failed) + num(t.succeeded))} events)` : '';
    return h('option', { value: id }, id + suffix);
  }));
  if (ids.length === 0) select.append(h('option', { value: '' }, 'No tenant has events'));
  state.tenant = wanted || ids[0] || '';
  select.value = state.tenant;
  return true;
}

/** Says when the failures table shows one integration, and offers every integration back. */
function showFocus() {
  const note = document.getElementById('focus-note');
  note.hidden = !state.integration;
  if (!state.integration) return;
  const type = LABEL[state.integrationType];
  note.replaceChildren(
    `Only the failures of ${state.integration}${type ? ` (${type})` : ''} are listed, as the link asked; every other section covers the whole tenant. `,
    h('button', { type: 'button', onclick: () => {
      state.integration = '';
      state.integrationType = '';
      state.pageTokens = [''];
      history.replaceState(null, '', `?tenant=${encodeURIComponent(state.tenant)}`);
      showFocus();
      refreshFailures();
      refreshIntegrations();
      refreshRules();
    } }, 'Show every integration'));
}

function refreshAll() {
  showFocus();
  if (!state.tenant) {
    setLive('idle', 'No tenant to show yet.');
    return Promise.resolve();
  }
  lastOverview = null;
  document.getElementById('stamp').textContent = `updated ${when.format(new Date())}`;
  return Promise.all([refreshAlerts(), refreshOverview(), refreshChange(), refreshErrors(), refreshTrends(),
    refreshIntegrations(), refreshFailures(), refreshRules(), refreshCatalog()]);
}

const SECTION_REFRESH = {
  overview: () => refreshOverview(),
  change: () => refreshChange(),
  errors: () => refreshErrors(),
  trends: () => refreshTrends(),
  failures: () => refreshFailures(),
  integrations: () => refreshIntegrations(),
};

function setLive(kind, text) {
  const live = document.getElementById('live');
  live.dataset.state = kind;
  live.textContent = text;
}

// One Connect envelope: a flags byte, a big-endian length, the message.
function envelope(message) {
  const bytes = new TextEncoder().encode(JSON.stringify(message));
  const out = new Uint8Array(5 + bytes.length);
  new DataView(out.buffer).setUint32(1, bytes.length);
  out.set(bytes, 5);
  return out;
}

function onUpdate(update) {
  const first = state.version === null;
  state.version = num(update.version);
  setLive('live', `Live · version ${state.version}`);
  document.getElementById('live').dataset.version = String(state.version);
  if (first) return;
  lastOverview = null;
  document.getElementById('stamp').textContent = `updated ${when.format(new Date())}`;
  for (const section of update.changedSections || []) SECTION_REFRESH[section]?.();
  // An issue action moves "failures": an open details view shows the new state too.
  const dialog = document.getElementById('details');
  if ((update.changedSections || []).includes('failures') && dialog.open && state.detailsFor) openDetails(state.detailsFor);
}

// Reads WatchTenant until it ends; refreshes only the sections an update names.
const watchTenant = (signal) => readStream('WatchTenant',
  { tenantId: state.tenant, minInterval: `${state.refreshMs / 1000}s` }, signal, onUpdate);

// Reads one Connect server stream until it ends, handing each message to `onMessage`.
async function readStream(method, request, signal, onMessage) {
  const headers = { 'Content-Type': 'application/connect+json', 'Connect-Protocol-Version': '1' };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const body = envelope(request);
  const response = await fetch(SERVICE + method, { method: 'POST', headers, body, signal });
  if (!response.ok || !response.body) throw new RpcError('unavailable', response.statusText);
  const reader = response.body.getReader();
  let pending = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    const joined = new Uint8Array(pending.length + value.length);
    joined.set(pending);
    joined.set(value, pending.length);
    pending = joined;
    while (pending.length >= 5) {
      const length = new DataView(pending.buffer, pending.byteOffset).getUint32(1);
      if (pending.length < 5 + length) break;
      const flags = pending[0];
      const message = JSON.parse(new TextDecoder().decode(pending.subarray(5, 5 + length)));
      pending = pending.subarray(5 + length);
      if (flags & 2) {
        if (message.error) throw new RpcError(message.error.code, message.error.message);
        return;
      }
      onMessage(message);
    }
  }
}

// Follows WatchAlerts beside the tenant's watch: each change lists the alerts again.
async function followAlerts(signal) {
  let wait = 1000;
  while (!signal.aborted) {
    try {
      await readStream('WatchAlerts', { tenantId: state.tenant }, signal, () => refreshAlerts());
      wait = 1000;
    } catch {
      if (signal.aborted) return;
    }
    await new Promise((resolve) => setTimeout(resolve, wait));
    wait = Math.min(wait * 2, 30000);
    // A change may have passed while the stream was down.
    if (!signal.aborted) refreshAlerts();
  }
}

// Keeps the watch open, reconnecting with a growing pause, until paused or replaced.
async function live() {
  state.watch?.abort();
  if (state.paused || !state.tenant) {
    setLive('paused', state.paused ? 'Paused' : '');
    return;
  }
  const controller = new AbortController();
  state.watch = controller;
  state.version = null;
  followAlerts(controller.signal);
  let wait = 1000;
  while (!controller.signal.aborted) {
    try {
      await watchTenant(controller.signal);
      wait = 1000;
    } catch (err) {
      if (controller.signal.aborted) return;
      if (err.code === 'unauthenticated' || err.code === 'permission_denied') {
        askForToken(err.message);
        return;
      }
    }
    if (controller.signal.aborted) return;
    setLive('reconnecting', 'Reconnecting…');
    await new Promise((resolve) => setTimeout(resolve, wait));
    wait = Math.min(wait * 2, 30000);
    state.version = null;
  }
}

function fillTypeSelect(id) {
  document.getElementById(id).append(...TYPES.map(([type, label]) => h('option', { value: type }, label)));
}

function on(id, event, handler) {
  document.getElementById(id).addEventListener(event, handler);
}

async function start() {
  ['trend-type', 'failure-type', 'catalog-type'].forEach(fillTypeSelect);
  document.getElementById('failure-class')
    .append(...CLASSES.map(([name, label]) => h('option', { value: name }, label)));
  for (const select of document.querySelectorAll('select.period')) {
    select.addEventListener('change', () => {
      state.period[select.dataset.for] = select.value;
      if (select.dataset.for === 'failures') state.pageTokens = [''];
      ({
        overview: refreshOverview, change: refreshChange, errors: refreshErrors, trends: refreshTrends,
        integrations: refreshIntegrations, failures: refreshFailures,
      })[select.dataset.for]();
    });
  }
  on('tenant', 'change', (e) => {
    state.tenant = e.target.value;
    state.pageTokens = [''];
    state.integration = '';
    state.integrationType = '';
    history.replaceState(null, '', `?tenant=${encodeURIComponent(state.tenant)}`);
    refreshAll();
    live();
  });
  on('integration-order', 'change', (e) => { state.integrationOrder = e.target.value; refreshIntegrations(); });
  on('trend-type', 'change', (e) => { state.trendType = e.target.value; refreshTrends(); });
  on('trend-granularity', 'change', (e) => { state.granularity = e.target.value; refreshTrends(); });
  on('failure-type', 'change', (e) => { state.failureType = e.target.value; state.pageTokens = ['']; refreshFailures(); });
  on('failure-code', 'change', (e) => { state.failureCode = Number(e.target.value); state.pageTokens = ['']; refreshFailures(); });
  on('failure-class', 'change', (e) => setFailureClass(e.target.value));
  on('catalog-type', 'change', (e) => { state.catalogType = e.target.value; refreshCatalog(); });
  on('refresh', 'change', (e) => { state.refreshMs = Number(e.target.value); live(); });
  on('refresh-now', 'click', refreshAll);
  on('pause', 'click', (e) => {
    state.paused = !state.paused;
    e.target.setAttribute('aria-pressed', String(state.paused));
    e.target.textContent = state.paused ? 'Resume' : 'Pause';
    if (!state.paused) refreshAll();
    live();
  });
  on('change-token', 'click', () => askForToken(''));
  on('details-close', 'click', () => document.getElementById('details').close());
  on('auth', 'submit', async (e) => {
    e.preventDefault();
    state.token = document.getElementById('token').value.trim();
    sessionStorage.setItem('ih-token', state.token);
    document.getElementById('auth').hidden = true;
    if (await loadTenants()) {
      await loadCaller();
      refreshAll();
      live();
    }
  });
  if (await loadTenants()) {
    await loadCaller();
    await refreshAll();
    live();
  }
}

start();
