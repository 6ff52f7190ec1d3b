"""Client-config sync: write the fleet into opencode's and Pi's own config files.

Both agents read custom-provider models from their config, not from /v1/models, so the gateway
writes provider `boocode-local` there, one model per composite id. Everything else in those files
is left exactly as it was.

Imports pools, fleet, access, core."""
