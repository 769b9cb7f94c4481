"""``python -m allotment``: the same as the ``allotment`` command."""

from allotment.cli import main

main()
