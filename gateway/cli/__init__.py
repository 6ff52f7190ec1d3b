"""The command line and the running process: serve, check, sync, the demo fleet and the
llama-server launcher. The top layer: may import anything; nothing imports it."""
