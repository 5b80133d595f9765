"""recongap: simulated CT data, learned reconstructors and their gap to E[x|y]."""

__version__ = "0.1.0"
