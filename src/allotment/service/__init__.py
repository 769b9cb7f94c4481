"""Use cases: they gather inputs through the ports, call the core and write the results."""
