"""`python -m dcmexport` behaves like the `dcmexport` command."""

from dcmexport.cli import main

raise SystemExit(main())
