"""Who may call the gateway: its API keys, checked on the request head. Imports the store, core
and the edge."""
