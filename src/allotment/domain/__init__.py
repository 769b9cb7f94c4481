"""The pure core: catalog, holdings, periods, resolution and decisions.

Nothing in this package performs I/O, reads a clock or imports a framework: every function that
depends on time takes ``now`` as an argument.
"""
