"""node: one relay node's processes, as a library (README, "Where things are").

`node.serve.Server` starts and watches what `relay serve` runs: the control plane as a child
process (`python -m control.server`), the supervisor and its workers (`python -m
relay.worker`), the run and state directories, and what a killed predecessor left. The `relay`
command (cli/), `relay demo` and the benchmarks that need a whole server (bench/joins.py,
soak.py, expel.py) start it; it imports the data plane (relay/) and the control plane
(control/), never bench/ or cli/ (tests/test_layers.py).
"""
