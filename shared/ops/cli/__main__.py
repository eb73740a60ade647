"""`python -m shared.ops.cli`: what the launcher runs for each service."""
import sys

from shared.ops.cli.parser import main

sys.exit(main())
