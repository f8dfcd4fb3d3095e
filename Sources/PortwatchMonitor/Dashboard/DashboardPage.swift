extension DashboardAssets {
    /// The dashboard's HTML: the skeleton `dashboard.js` fills from the API.
    static let page = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>portwatch</title>
<link rel="stylesheet" href="/assets/dashboard.css">
<script src="/assets/dygraph.min.js"></script>
<script src="/assets/dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>portwatch</h1>
  <span id="status" class="status">connecting…</span>
  <span id="updated"></span>
</header>
<main>
<section id="alerts-section">
  <h2>Firing alerts</h2>
  <ul id="alerts" class="list"><li class="empty">none</li></ul>
</section>
<section>
  <h2>Ports</h2>
  <table id="ports">
    <thead><tr>
      <th>protocol</th><th class="num">port</th><th>service</th><th>state</th><th class="num">connections</th>
      <th class="num">rx</th><th class="num">tx</th><th class="num">errors</th><th>process</th>
    </tr></thead>
    <tbody></tbody>
  </table>
  <p id="ports-empty" class="empty" hidden>no ports in use</p>
</section>
<section id="probes-section" hidden>
  <h2>Probes</h2>
  <table id="probes">
    <thead><tr>
      <th>target</th><th>state</th><th class="num">latency</th><th class="num">days left</th><th>last change</th><th>problem</th>
    </tr></thead>
    <tbody></tbody>
  </table>
</section>
<section id="charts-section">
  <h2>History of <span id="chart-port">—</span></h2>
  <div class="ranges" id="ranges">
    <button type="button" data-range="1h" class="active">1 h</button>
    <button type="button" data-range="24h">24 h</button>
    <button type="button" data-range="7d">7 d</button>
  </div>
  <div class="charts">
    <figure><figcaption>connections <span id="legend-connections" class="legend"></span></figcaption><div id="chart-connections" class="chart"></div></figure>
    <figure><figcaption>traffic (bit/s) <span id="legend-traffic" class="legend"></span></figcaption><div id="chart-traffic" class="chart"></div></figure>
    <figure><figcaption>errors (per second) <span id="legend-errors" class="legend"></span></figcaption><div id="chart-errors" class="chart"></div></figure>
  </div>
</section>
<section>
  <h2>Events</h2>
  <ul id="events" class="list"><li class="empty">none</li></ul>
</section>
</main>
<footer>Charts by <a href="/assets/dygraph.LICENSE.txt">dygraphs</a> (MIT).</footer>
</body>
</html>
"""#
}
