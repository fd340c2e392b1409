#!/usr/bin/env python3
# Writes docs/grafana/dbmanager.json (the dashboard; one place for its panels and queries):
#   python3 scripts/gen_dashboard.py > docs/grafana/dbmanager.json
# tests/prometheus.rs runs every query it contains against a real Prometheus.
import json
sel = 'connection=~"$connection"'
R = '$__rate_interval'
panels_spec = [
  ("Status (1 = up)", "stat", [("{{connection}}", f'dbmanager_connection_up{{{sel}}}')], None),
  ("State timeline", "state-timeline", [("{{connection}} {{state}}", f'max by (connection, state) (dbmanager_connection_state{{{sel}}}) == 1')], None),
  ("Pool: in use / idle / max", "timeseries", [
     ("{{connection}} {{state}}", f'sum by (connection, state) (dbmanager_pool_connections{{{sel}}})'),
     ("{{connection}} max", f'sum by (connection) (dbmanager_pool_max_connections{{{sel}}})')], "short"),
  ("Pending acquires", "timeseries", [("{{connection}}", f'sum by (connection) (dbmanager_pool_pending_requests{{{sel}}})')], "short"),
  ("Acquire latency p50 / p95 / p99", "timeseries", [
     (f"{{{{connection}}}} p{int(q*100)}", f'histogram_quantile({q}, sum by (connection, le) (rate(dbmanager_acquire_duration_seconds_bucket{{{sel}}}[{R}])))') for q in (0.5, 0.95, 0.99)], "s"),
  ("Acquire timeouts and unavailable (per second)", "timeseries", [
     ("{{connection}} timeouts", f'sum by (connection) (rate(dbmanager_acquire_timeouts_total{{{sel}}}[{R}]))'),
     ("{{connection}} unavailable", f'sum by (connection) (rate(dbmanager_unavailable_total{{{sel}}}[{R}]))')], "reqps"),
  ("Health-check latency p95", "timeseries", [("{{connection}}", f'histogram_quantile(0.95, sum by (connection, le) (rate(dbmanager_health_check_duration_seconds_bucket{{{sel},result="ok"}}[{R}])))')], "s"),
  ("Reconnect attempts", "timeseries", [("{{connection}} {{result}}", f'sum by (connection, result) (increase(dbmanager_reconnect_attempts_total{{{sel}}}[{R}]))')], "short"),
  ("Pool clears", "timeseries", [("{{connection}} {{reason}}", f'sum by (connection, reason) (increase(dbmanager_pool_clears_total{{{sel}}}[{R}]))')], "short"),
  ("Connections closed, by reason (per second)", "timeseries", [("{{connection}} {{reason}}", f'sum by (connection, reason) (rate(dbmanager_connections_closed_total{{{sel}}}[{R}]))')], "ops"),
]
panels = []
for i, (title, kind, targets, unit) in enumerate(panels_spec):
    p = {
        "id": i + 1,
        "title": title,
        "type": kind,
        "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
        "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
        "targets": [
            {"refId": chr(65 + j), "expr": expr, "legendFormat": legend,
             "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}}
            for j, (legend, expr) in enumerate(targets)
        ],
        "fieldConfig": {"defaults": {"unit": unit or "none"}, "overrides": []},
        "options": {},
    }
    panels.append(p)
dash = {
    "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                  "pluginId": "prometheus", "pluginName": "Prometheus"}],
    "title": "dbmanager",
    "uid": "dbmanager",
    "description": "dbmanager connections: health, pools, acquire latency, timeouts, reconnects, clears, closes (docs/metrics.md)",
    "tags": ["dbmanager", "database"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "10s",
    "time": {"from": "now-1h", "to": "now"},
    "templating": {"list": [{
        "name": "connection", "label": "connection", "type": "query",
        "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
        "query": {"query": "label_values(dbmanager_connection_up, connection)", "refId": "connection"},
        "definition": "label_values(dbmanager_connection_up, connection)",
        "multi": True, "includeAll": True, "allValue": ".*", "refresh": 2,
        "current": {"selected": True, "text": "All", "value": "$__all"},
    }]},
    "panels": panels,
}
print(json.dumps(dash, indent=2))
