"""Research diagnostics and ablations: the scripts behind the lab notebook's experiments, kept
runnable (``python -m research.NAME``; see ``research/README.md``).

Not part of the product: nothing in ``seal``, ``search``, ``vwm``, ``eval``, ``training`` imports
this package, while it may import all of them (the CLI included).
"""
