"""tsav-deploy: the two-stream aural-visual affect model (Kuhnke, Rumberg, Ostermann, ABAW 2020)."""
__version__ = "0.1.0"
