"""swapd: a model-swapping daemon for llama.cpp's llama-server."""

__version__ = "0.1.0"
