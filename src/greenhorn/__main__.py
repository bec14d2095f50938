"""`python -m greenhorn` runs the command-line entry point."""

from greenhorn.cli import main

raise SystemExit(main())
