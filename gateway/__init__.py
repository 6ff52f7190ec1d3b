"""boocode-gateway: one OpenAI-compatible base URL for a fleet of llama.cpp machines."""

__version__ = "0.1.0"
