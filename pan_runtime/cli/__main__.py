"""``python -m pan_runtime.cli``: the ``pan`` command."""

from pan_runtime.cli.main import main

raise SystemExit(main())
