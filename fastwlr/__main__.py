"""``python -m fastwlr``: the command line (``fastwlr --help``)."""
import sys

from .cli import main

sys.exit(main())
