extension DashboardAssets {
    /// The dashboard's script: loads ports, alerts, events and history from the API, then follows
    /// `/api/v1/stream`. A token in the URL fragment (`#token=...`) is sent as a bearer token (and
    /// as `?token=` to the stream, since EventSource cannot send headers); the fragment never
    /// reaches the server's logs.
    static let script = #"""
'use strict';
(function () {
  const token = new URLSearchParams(location.hash.replace(/^#/, '')).get('token');
  const ranges = { '1h': { since: '1h', step: null }, '24h': { since: '24h', step: '5m' }, '7d': { since: '7d', step: '1h' } };
  const state = { rows: new Map(), selected: null, range: '1h', charts: {}, series: null, events: [] };

  function api(path) {
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    return fetch(path, { headers }).then(r => {
      if (!r.ok) return r.json().catch(() => ({})).then(e => { throw new Error(e.error || r.status + ' ' + r.statusText); });
      return r.json();
    });
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function rate(bps) {
    if (bps === undefined || bps === null) return '–';
    const units = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s'];
    let v = bps, i = 0;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return (i === 0 ? Math.round(v) : v.toFixed(v < 10 ? 2 : 1)) + ' ' + units[i];
  }

  function clock(t) { return new Date(t * 1000).toLocaleTimeString(); }
  function stamp(t) { return new Date(t * 1000).toLocaleString(); }
  // Rows of other network namespaces (stream samples' `netns`) share port numbers with ours.
  function keyOf(p) { return (p.netns ? p.netns + ' ' : '') + p.protocol + '/' + p.port; }
  function sum(o) { return o ? Object.values(o).reduce((a, v) => a + (typeof v === 'number' ? v : 0), 0) : 0; }

  // Rows from /api/v1/ports (PORT objects) and from stream samples share one shape here.
  function fromPort(p) {
    const errors = p.window ? p.window.errors : null;
    return {
      netns: p.netns || null, protocol: p.protocol, port: p.port, service: p.service, listening: p.listening,
      overloaded: !!p.overloaded, connections: p.connections ? p.connections.total : 0,
      rx: p.rates ? p.rates.received_bps : null, tx: p.rates ? p.rates.sent_bps : null,
      errors: errors ? sum(errors) : null,
      process: (p.processes || []).map(x => x.name + '[' + x.pid + ']').join(', ')
    };
  }
  function fromStream(p) {
    return {
      netns: p.netns || null, protocol: p.protocol, port: p.port, service: p.service, listening: p.listening,
      overloaded: !!(p.accept_queue && p.accept_queue.max && p.accept_queue.current > p.accept_queue.max),
      connections: p.connections ? p.connections.total : 0,
      rx: p.rates.received_bps, tx: p.rates.sent_bps, errors: sum(p.errors),
      process: (p.processes || []).join(', ')
    };
  }

  function stateOf(r) {
    if (r.overloaded) return 'overloaded';
    if (r.listening) return r.protocol === 'udp' ? 'bound' : (r.connections > 0 ? 'busy' : 'listening');
    return r.connections > 0 ? 'connections' : 'closed';
  }

  function renderRows() {
    const body = document.querySelector('#ports tbody');
    const rows = Array.from(state.rows.values()).sort((a, b) => (a.netns || '').localeCompare(b.netns || '') ||
      a.protocol.localeCompare(b.protocol) || a.port - b.port);
    body.replaceChildren();
    for (const r of rows) {
      const tr = el('tr');
      tr.id = 'port-' + (r.netns ? r.netns + '-' : '') + r.protocol + '-' + r.port;
      tr.dataset.key = keyOf(r);
      if (state.selected === keyOf(r)) tr.classList.add('selected');
      const s = stateOf(r);
      tr.append(el('td', null, (r.netns ? r.netns + ' ' : '') + r.protocol), el('td', 'num', r.port), el('td', null, r.service || ''),
        el('td', 'state-' + s, s), el('td', 'num', r.connections), el('td', 'num', rate(r.rx)),
        el('td', 'num', rate(r.tx)), el('td', 'num' + (r.errors > 0 ? ' errors-nonzero' : ''), r.errors === null ? '–' : r.errors),
        el('td', 'process', r.process || ''));
      tr.title = r.process || '';
      tr.addEventListener('click', () => select(keyOf(r)));
      body.append(tr);
    }
    document.getElementById('ports-empty').hidden = rows.length > 0;
  }

  function chartOptions(name, labels) {
    return { labels: labels, legend: 'always', labelsDiv: document.getElementById('legend-' + name),
      labelsSeparateLines: false, strokeWidth: 1.5,
      axes: { y: { axisLabelWidth: 60 } }, includeZero: true, connectSeparatedPoints: false };
  }

  // One point per sample: [time, conns total, established], [time, rx, tx], [time, errors/s].
  function points(samples) {
    const c = [], t = [], e = [];
    for (const s of samples) {
      const d = new Date(s.time * 1000);
      const secs = s.seconds > 0 ? s.seconds : 1;
      c.push([d, s.connections.total, s.connections.established]);
      t.push([d, s.rates.received_bps, s.rates.sent_bps]);
      e.push([d, s.errors ? sum(s.errors) / secs : 0]);
    }
    return { c, t, e };
  }

  function draw(data) {
    const now = new Date();
    const pick = (rows, width) => rows.length ? rows : [[now].concat(new Array(width).fill(0))];
    const specs = [
      ['connections', pick(data.c, 2), ['time', 'total', 'established']],
      ['traffic', pick(data.t, 2), ['time', 'received', 'sent']],
      ['errors', pick(data.e, 1), ['time', 'errors/s']]
    ];
    for (const [name, rows, labels] of specs) {
      const chart = state.charts[name];
      if (chart) chart.updateOptions({ file: rows });
      else state.charts[name] = new Dygraph(document.getElementById('chart-' + name), rows, chartOptions(name, labels));
    }
  }

  function loadHistory() {
    if (!state.selected) return;
    const space = state.selected.lastIndexOf(' ');
    const [protocol, port] = state.selected.slice(space + 1).split('/');
    const r = ranges[state.range];
    let url = '/api/v1/ports/' + protocol + '/' + port + '/history?since=' + r.since;
    if (r.step) url += '&step=' + r.step;
    if (space > 0) url += '&netns=' + encodeURIComponent(state.selected.slice(0, space));
    const wanted = state.selected + ' ' + state.range;
    api(url).then(doc => {
      if (wanted !== state.selected + ' ' + state.range) return;
      state.series = points(doc.samples);
      draw(state.series);
    }).catch(err => showStatus('history: ' + err.message, 'down'));
  }

  function select(key) {
    state.selected = key;
    document.getElementById('chart-port').textContent = key;
    for (const tr of document.querySelectorAll('#ports tbody tr')) tr.classList.toggle('selected', tr.dataset.key === key);
    loadHistory();
  }

  function renderEvents() {
    const list = document.getElementById('events');
    list.replaceChildren();
    if (!state.events.length) { list.append(el('li', 'empty', 'none')); return; }
    for (const ev of state.events.slice(0, 200)) {
      const li = el('li');
      const time = el('time', null, stamp(ev.timestamp));
      const where = ev.port ? ' ' + ev.protocol + '/' + ev.port + ' ' : ' ';
      li.append(time, el('span', 'kind', ev.kind), el('span', null, where + ev.message));
      list.append(li);
    }
  }

  function loadAlerts() {
    api('/api/v1/alerts').then(doc => {
      const list = document.getElementById('alerts');
      list.replaceChildren();
      const firing = doc.alerts.filter(a => a.state === 'firing');
      if (!firing.length) { list.append(el('li', 'empty', 'none')); return; }
      for (const a of firing) {
        const where = (a.netns ? a.netns + ' ' : '') + (a.port ? a.protocol + '/' + a.port : (a.target || ''));
        const li = el('li', 'alert-firing');
        li.append(el('span', 'kind', a.rule), el('span', null, where + ' ' + a.metric + ' = ' + a.value + ' since ' + a.since + (a.message ? ' — ' + a.message : '')));
        list.append(li);
      }
    }).catch(err => showStatus('alerts: ' + err.message, 'down'));
  }

  // Probes: /api/v1/probes at start, after each sample (probe results come on their own
  // schedule; a sample is the daemon's heartbeat) and on probe events.
  // One request at a time; a refresh asked for meanwhile runs once the answer is in, so an
  // event that comes during a load is never lost.
  let probesLoading = false, probesAgain = false;
  function probesDone() {
    probesLoading = false;
    if (probesAgain) { probesAgain = false; loadProbes(); }
  }
  function loadProbes() {
    if (probesLoading) { probesAgain = true; return; }
    probesLoading = true;
    api('/api/v1/probes').then(doc => {
      probesDone();
      const section = document.getElementById('probes-section');
      const body = document.querySelector('#probes tbody');
      body.replaceChildren();
      section.hidden = doc.probes.length === 0;
      for (const p of doc.probes) {
        const tr = el('tr');
        tr.id = 'probe-' + p.target.replace(/[^A-Za-z0-9]/g, '_');
        const label = p.name ? p.name + ' (' + p.target + ')' : p.target;
        const state = p.healthy ? p.state : p.state + ' ✗';
        const latency = p.latency_ms ? p.latency_ms.median.toFixed(p.latency_ms.median < 10 ? 2 : 1) + ' ms' : '–';
        const days = p.tls ? p.tls.days_left : '–';
        const since = p.last_change ? new Date(p.last_change).toLocaleString() : '';
        tr.append(el('td', null, label), el('td', p.healthy ? 'probe-healthy' : 'probe-unhealthy', state),
          el('td', 'num', latency), el('td', 'num', days), el('td', null, since),
          el('td', null, (p.problems || []).join('; ')));
        body.append(tr);
      }
    }).catch(err => { probesDone(); showStatus('probes: ' + err.message, 'down'); });
  }

  function showStatus(text, cls) {
    const s = document.getElementById('status');
    s.textContent = text;
    s.className = 'status ' + (cls || '');
  }

  function onSample(doc) {
    const seen = new Set();
    for (const p of doc.ports) {
      const r = fromStream(p);
      state.rows.set(keyOf(r), r);
      seen.add(keyOf(r));
    }
    for (const k of Array.from(state.rows.keys())) if (!seen.has(k)) state.rows.delete(k);
    renderRows();
    document.getElementById('updated').textContent = 'sample ' + clock(doc.timestamp);
    loadProbes();
    if (!state.selected && doc.ports.length) select(keyOf(doc.ports[0]));
    const mine = doc.ports.find(p => keyOf(p) === state.selected);
    if (mine && state.range === '1h' && state.series) {
      const secs = doc.window_seconds || 1;
      const d = new Date(doc.timestamp * 1000);
      state.series.c.push([d, mine.connections.total, mine.connections.established]);
      state.series.t.push([d, mine.rates.received_bps, mine.rates.sent_bps]);
      state.series.e.push([d, sum(mine.errors) / secs]);
      draw(state.series);
    }
  }

  function sameEvent(a, b) {
    return a.timestamp === b.timestamp && a.kind === b.kind && a.port === b.port && a.message === b.message;
  }

  function onEvent(ev) {
    // An event can arrive both in the first /api/v1/events answer and on the stream.
    if (state.events.some(e => sameEvent(e, ev))) return;
    state.events.unshift(ev);
    renderEvents();
    if (ev.kind === 'alert_firing' || ev.kind === 'alert_resolved') loadAlerts();
    if (ev.kind === 'probe_failed' || ev.kind === 'probe_recovered') loadProbes();
  }

  function follow() {
    const source = new EventSource('/api/v1/stream' + (token ? '?token=' + encodeURIComponent(token) : ''));
    source.addEventListener('open', () => showStatus('live', 'live'));
    source.addEventListener('error', () => showStatus('reconnecting…', 'down'));
    source.addEventListener('sample', m => onSample(JSON.parse(m.data)));
    source.addEventListener('event', m => onEvent(JSON.parse(m.data)));
  }

  for (const b of document.querySelectorAll('#ranges button')) {
    b.addEventListener('click', () => {
      state.range = b.dataset.range;
      for (const o of document.querySelectorAll('#ranges button')) o.classList.toggle('active', o === b);
      loadHistory();
    });
  }

  api('/api/v1/ports').then(doc => {
    for (const p of doc.ports) { const r = fromPort(p); state.rows.set(keyOf(r), r); }
    renderRows();
    if (doc.taken_at) document.getElementById('updated').textContent = 'sample ' + clock(doc.taken_at);
    const first = doc.ports.find(p => p.listening) || doc.ports[0];
    if (first && !state.selected) select(keyOf(first));
  }).catch(err => showStatus('ports: ' + err.message, 'down'));
  api('/api/v1/events?since=24h&limit=200').then(doc => { state.events = doc.events.slice().reverse(); renderEvents(); })
    .catch(err => showStatus('events: ' + err.message, 'down'));
  loadAlerts();
  loadProbes();
  follow();
})();
"""#
}
