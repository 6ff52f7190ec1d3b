"""Pools: one model name over several machines.

`any/<model>` runs on any online local machine whose catalog lists `<model>`; `pool/<name>` on the
members the registry names (and its fallback, only when named). Which member answers is one pure
decision (`choose`), from what the gateway already knows — the catalog, which models are loaded
(`residency`), requests in flight (the lanes), recent failures (`breaker`) and the conversation's
last machine (`sticky`); no network call on the request path. `members` gathers that state.

Imports the fleet, core and the edge."""
