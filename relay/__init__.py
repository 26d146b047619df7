"""relay: a media relay for online meetings and large webinars."""

import os as _os

__version__ = "0.1.0"

# RELAY_CORE_DIR=DIR loads the compiled core from DIR/relay instead of the one beside this file:
# scripts/test's debug pass points it at the sanitizer build (build/debug-lib), and as the
# environment reaches every process of the run, the workers that tests start run that build
# too, not only the test process itself.
if _os.environ.get("RELAY_CORE_DIR"):
    __path__.insert(0, _os.path.join(_os.path.abspath(_os.environ["RELAY_CORE_DIR"]), "relay"))
