"""The `rekisteri` command: run the register and operate it (SPEC §7).

Exit codes: 0 done, 2 a usage or operator error (argparse's too), 3 infrastructure the
command needs (PostgreSQL, Kafka) did not answer: one line on stderr naming it.
"""
from shared.ops.cli.common import _age  # noqa: F401 - tests read the age format
from shared.ops.cli.parser import build_parser, main  # noqa: F401
from shared.ops.cli.running import asyncapi_text  # noqa: F401
