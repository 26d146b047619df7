"""`python -m cli ...`: the `relay` command (cli/main.py), as the tests run it."""

import sys

from cli.main import main

sys.exit(main())
