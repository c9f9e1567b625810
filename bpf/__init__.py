"""BPF C sources, shipped as package data (read with importlib.resources)."""
