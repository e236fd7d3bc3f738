"""`python -m benchmarks [options]`: the suite; `... stream [options]`: the stream matrix;
`... sustained [options]`: one (or two) workers' sustained whole-process cost; `... paced
[options]`: one worker's cost on input produced at a fixed rate below its capacity; `... people [options]`:
counting people beside counting events; `... index [options]`: the post -> slot index
against a dict; `... sink-memory [options]`: what the sink's inserts leave resident;
`... core-phases [options]`: the pure core's memory over the rss phases; `... rss-phases
[options]`: a worker's growth per post and per event, one-time part split off;
`... soak [--minutes N]`: the long run (not for CI)."""

import sys

if sys.argv[1:2] == ["soak"]:
    from benchmarks.soak import main as soak_main

    sys.exit(soak_main(sys.argv[2:]))
if sys.argv[1:2] == ["stream"]:
    from benchmarks.stream_matrix import main as stream_main

    sys.exit(stream_main(sys.argv[2:]))
if sys.argv[1:2] == ["sustained"]:
    from benchmarks.stream_sustained import main as sustained_main

    sys.exit(sustained_main(sys.argv[2:]))
if sys.argv[1:2] == ["paced"]:
    from benchmarks.stream_paced import main as paced_main

    sys.exit(paced_main(sys.argv[2:]))

if sys.argv[1:2] == ["index"]:
    from benchmarks.post_index_cost import main as index_main

    sys.exit(index_main(sys.argv[2:]))
if sys.argv[1:2] == ["sink-memory"]:
    from benchmarks.sink_memory import main as sink_memory_main

    sys.exit(sink_memory_main(sys.argv[2:]))
if sys.argv[1:2] == ["core-phases"]:
    from benchmarks.core_phases import main as core_phases_main

    sys.exit(core_phases_main(sys.argv[2:]))
if sys.argv[1:2] == ["rss-phases"]:
    from benchmarks.rss_phases import main as rss_phases_main

    sys.exit(rss_phases_main(sys.argv[2:]))
if sys.argv[1:2] == ["people"]:
    from benchmarks.people_cost import main as people_main

    sys.exit(people_main(sys.argv[2:]))

from benchmarks.run import main

sys.exit(main())
