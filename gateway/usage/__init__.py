"""Token usage: read from each reply's first and last bytes (`extract`), counted per machine,
model and kind (`gateway_tokens_total`). Imports the store, core and the edge."""
