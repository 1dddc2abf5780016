"""Entry point of `python -m data.synthetic`."""
from data.synthetic.cli import main

raise SystemExit(main())
