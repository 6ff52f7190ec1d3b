"""The arena (one prompt to 2-4 models at once, merged into one stream; votes and a rating) and
the fleet benchmark (prompt and generation speed per model, per machine). Both read the
gateway's own OpenAI streams as a client does; this package imports only store and core."""
