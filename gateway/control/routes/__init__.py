"""The control plane's handlers, thin; the route table is data in `gateway.control.app`."""
