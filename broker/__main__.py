"""`python -m broker` runs the command line."""

from broker.cli import main

raise SystemExit(main())
