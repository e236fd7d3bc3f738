"""`python -m benchmarks [options]`: the suite; `python -m benchmarks stream [options]`: the stream
matrix; `python -m benchmarks people [options]`: counting people beside counting events."""

import sys

if sys.argv[1:2] == ["stream"]:
    from benchmarks.stream_matrix import main as stream_main

    sys.exit(stream_main(sys.argv[2:]))

if sys.argv[1:2] == ["people"]:
    from benchmarks.people_cost import main as people_main

    sys.exit(people_main(sys.argv[2:]))

from benchmarks.run import main

sys.exit(main())
