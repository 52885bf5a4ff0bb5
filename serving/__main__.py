"""`python -m e2llm.serving MODEL ...` = `e2llm serve MODEL ...`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
