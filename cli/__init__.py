"""cli: the `relay` command, the top of the project (README, "Where things are").

`cli/main.py` is the command's whole parser and says which code runs each command: `serve`
(cli/serve.py over node/serve.py), `demo` (cli/demo.py, cli/crypto_demo.py), `bench`
(cli/bench.py over bench/), `worker` (relay/worker.py) and the API client's commands
(cli/client.py, cli/join.py). This package may import every other one and none imports it
(tests/test_layers.py): relay/ (the data plane) < control/ (the control plane) < node/ (one
node's processes) < bench/ (the measuring kit) < cli/.
"""
