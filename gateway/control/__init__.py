"""The control plane: the aiohttp app behind the edge (catalog, settings, usage, health,
metrics, the fleet page) and the app's state. Imports sync, pools, usage, fleet, access, store,
core and the edge; never the proxy or the command line."""
