"""``python -m engine.cli``: the ``insight`` command."""

from engine.cli import main

main()
