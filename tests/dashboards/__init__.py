"""Static checks of the Grafana dashboards, the Prometheus rules and their queries."""
