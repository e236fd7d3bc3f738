"""`python -m benchmarks [options]`: the suite; `python -m benchmarks stream [options]`: the stream matrix."""

import sys

if sys.argv[1:2] == ["stream"]:
    from benchmarks.stream_matrix import main as stream_main

    sys.exit(stream_main(sys.argv[2:]))

from benchmarks.run import main

sys.exit(main())
