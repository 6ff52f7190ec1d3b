"""The inference request path on the edge: which side serves a request, and body -> route ->
lane -> relay for inference. Imports every layer below it; never the command line."""
