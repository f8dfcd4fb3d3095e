extension DashboardAssets {
    /// The dashboard's style sheet.
    static let style = #"""
:root { --fg: #1d2430; --muted: #6b7584; --line: #dde2e8; --bg: #f6f7f9; --accent: #2463b5; --bad: #b3261e; --ok: #1e7b34; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: baseline; gap: 1em; padding: .6em 1.2em; background: #1d2430; color: #fff; }
header h1 { margin: 0; font-size: 1.2em; }
#updated { color: #b8c0cc; font-size: .9em; }
.status { font-size: .85em; padding: .1em .6em; border-radius: 1em; background: #555; }
.status.live { background: var(--ok); }
.status.down { background: var(--bad); }
main { padding: 0 1.2em 1em; max-width: 1400px; margin: 0 auto; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .6em 1em 1em; margin-top: 1em; }
h2 { font-size: 1em; margin: .3em 0 .6em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: .85em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: #eef3fa; }
tbody tr.selected { background: #dfe9f7; }
td.process { max-width: 28em; overflow: hidden; text-overflow: ellipsis; }
.state-overloaded { color: var(--bad); font-weight: 600; }
.state-closed { color: var(--muted); }
.probe-healthy { color: var(--ok); font-weight: 600; }
.probe-unhealthy { color: var(--bad); font-weight: 600; }
.errors-nonzero { color: var(--bad); font-weight: 600; }
.ranges button { border: 1px solid var(--line); background: #fff; padding: .25em .8em; border-radius: 4px; cursor: pointer; }
.ranges button.active { background: var(--accent); color: #fff; border-color: var(--accent); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(360px, 1fr)); gap: 1em; margin-top: .8em; }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: .85em; margin-bottom: .3em; }
.chart { width: 100%; height: 200px; }
.legend { margin-left: .8em; font-size: 12px; }
.legend > span { margin-right: .6em; }
.legend .dygraph-legend-line { display: inline-block; width: 1.2em; margin-right: .2em; vertical-align: middle;
  border-bottom: 2px solid; }
.list { list-style: none; margin: 0; padding: 0; max-height: 22em; overflow-y: auto; }
.list li { padding: .25em 0; border-bottom: 1px solid var(--line); }
.list time { color: var(--muted); font-variant-numeric: tabular-nums; margin-right: .6em; }
.kind { display: inline-block; min-width: 10em; font-weight: 600; }
.alert-firing { color: var(--bad); }
.empty { color: var(--muted); }
footer { text-align: center; color: var(--muted); font-size: .8em; padding: 1em; }
footer a { color: var(--muted); }
"""#
}
