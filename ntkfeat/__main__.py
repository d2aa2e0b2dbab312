"""`python -m ntkfeat run|compare|replot ...`: the `ntkfeat` command (`ntkfeat.cli`)."""

import sys

from ntkfeat.cli import main

sys.exit(main())
