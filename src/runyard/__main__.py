"""``python -m runyard``: the ``runyard`` command."""

from runyard.cli import main

raise SystemExit(main())
