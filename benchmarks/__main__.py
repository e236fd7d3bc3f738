"""`python -m benchmarks`: run the suite."""

import sys

from benchmarks.run import main

sys.exit(main())
