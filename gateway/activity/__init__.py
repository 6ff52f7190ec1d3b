"""What the gateway is doing and did last: every inference request live while it runs, then in
a bounded ring of recent ones; cancel; optional captures. Recorded by the proxy, read by the
control plane. Imports only the edge's request record."""
