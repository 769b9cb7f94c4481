"""Storage adapters behind the ports of :mod:`allotment.service.ports`."""
