"""`python -m benchmarks [options]`: the suite; `python -m benchmarks stream [options]`: the stream matrix;
`python -m benchmarks sustained [options]`: one worker's sustained whole-process cost."""

import sys

if sys.argv[1:2] == ["stream"]:
    from benchmarks.stream_matrix import main as stream_main

    sys.exit(stream_main(sys.argv[2:]))
if sys.argv[1:2] == ["sustained"]:
    from benchmarks.stream_sustained import main as sustained_main

    sys.exit(sustained_main(sys.argv[2:]))

from benchmarks.run import main

sys.exit(main())
