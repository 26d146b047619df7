"""Build the native core: ext/_core.pyx -> relay._core, and the benchmark's C ceiling.

RELAY_DEBUG=1 builds the debug variant: Cython bounds, wraparound and initialisation checks,
line tracing, -O0 -g, and AddressSanitizer + UBSan (run it with libasan preloaded; see
scripts/test). RELAY_FUZZ=1, with CC=clang, builds the fuzzing variant: the native code
instrumented for libFuzzer's coverage and AddressSanitizer (-fsanitize=address,fuzzer-no-link;
run it with atheris's asan_with_fuzzer.so preloaded), so that atheris is guided by what the C
code does (fuzz/fuzz_core.py, docs/RELIABILITY.md). Everything else is metadata
in pyproject.toml.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("RELAY_DEBUG", "") not in ("", "0")
FUZZ = os.environ.get("RELAY_FUZZ", "") not in ("", "0")

macros = [("_GNU_SOURCE", None), ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
compile_args = ["-O3", "-Wno-unreachable-code"]
link_args: list[str] = []
directives = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": True,
    "embedsignature": True,
}
if DEBUG:
    macros += [("RELAY_DEBUG", "1"), ("CYTHON_TRACE_NOGIL", "1")]
    sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    compile_args = ["-O0", "-g", *sanitize]
    link_args = sanitize
    directives.update(
        boundscheck=True, wraparound=True, initializedcheck=True, cdivision=False, linetrace=True
    )
elif FUZZ:
    sanitize = ["-fsanitize=address,fuzzer-no-link", "-fno-omit-frame-pointer"]
    compile_args = ["-O1", "-g", *sanitize, "-Wno-unreachable-code"]
    link_args = sanitize
    directives.update(boundscheck=True, wraparound=True)

extensions = [
    Extension(
        "relay._core",
        ["ext/_core.pyx", "ext/xsk.c"],
        depends=["ext/aes_ctr.h", "ext/xsk.h", "ext/relay_openssl.h"],
        include_dirs=["ext"],
        libraries=["crypto"],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    ),
    Extension(
        "bench._ceiling",
        ["bench/_ceiling.pyx", "bench/ceiling.c", "bench/ceiling_relay.c", "ext/xsk.c"],
        depends=["ext/aes_ctr.h", "ext/xsk.h", "bench/ceiling.h", "bench/ceiling_relay.h"],
        include_dirs=["bench", "ext"],
        libraries=["crypto"],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    ),
    Extension(
        "bench._loadgen",
        ["bench/_loadgen.pyx"],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["ext"],
        compiler_directives=directives,
        annotate=DEBUG,
        build_dir="build/cython-debug" if DEBUG else "build/cython",
    )
)
