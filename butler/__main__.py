"""``python -m butler``: the ``butler`` command."""

from .cli import main

main()
