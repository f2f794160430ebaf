"""Build of the optional C speed-ups (everything else is configured in pyproject.toml).

``evtools._speedups`` holds two hot-path checks of the typed decode. It is optional: where
no C compiler is found the build goes on without it and evtools uses the pure-Python
versions, which give the same answers (tests/test_speedups.py compares them).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("evtools._speedups", ["evtools/_speedups.c"], optional=True,
                             extra_compile_args=["-O2"])])
