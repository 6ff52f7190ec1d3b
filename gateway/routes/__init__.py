"""HTTP handlers. The route table itself is data, in `gateway.app.ROUTES`."""
