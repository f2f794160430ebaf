"""``python -m evtools``: the same as the ``evtools`` command."""

from .cli import main

raise SystemExit(main())
