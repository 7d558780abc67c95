"""`python -m idesluss` runs the command line."""

from idesluss.cli import main

raise SystemExit(main())
