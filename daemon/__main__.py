"""`python -m daemon` runs the `lipsyncd` command (how `lipsyncd up` starts its children)."""

import sys

from daemon.cli import main

sys.exit(main())
