"""Build the Cython core of fastwlr.

Every ``fastwlr/backends/cython_core/*.pyx`` becomes one extension module, compiled with -O3 and,
when the compiler supports them, OpenMP and the host's vector instructions.

Environment switches (read at build time, reported in the build log and by ``fastwlr.show_config()``):
  FASTWLR_OPENMP=0|1    force OpenMP off/on (default: on if a test program compiles and links with it)
  FASTWLR_NATIVE=0|1    compile with -march=native (default: on; turn off to build a portable wheel)
  FASTWLR_ONLY=a,b      developers only: build just these modules (e.g. ``_topk``) while others are being edited
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

CORE_DIR = os.path.join("fastwlr", "backends", "cython_core")


def _compiles(flags, code="int main(void){return 0;}\n"):
    """Does the C compiler accept these flags (compile and link)?"""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc.split()[0]) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        cmd = cc.split() + flags + [src, "-o", os.path.join(tmp, "probe")]
        return subprocess.run(cmd, capture_output=True).returncode == 0


def _switch(name, default):
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() not in ("0", "false", "no", "off", "")


OPENMP_PROBE = "#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel reduction(+:n)\nn+=1;\nreturn omp_get_max_threads()>0?0:1;}\n"
use_openmp = _switch("FASTWLR_OPENMP", None)
if use_openmp is None:
    use_openmp = _compiles(["-fopenmp"], OPENMP_PROBE)
use_native = _switch("FASTWLR_NATIVE", True) and _compiles(["-march=native"])

compile_args = ["-O3", "-fno-math-errno"]
link_args = []
if use_openmp:
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")
if use_native:
    compile_args.append("-march=native")
print(f"fastwlr build: OpenMP={'on' if use_openmp else 'OFF'} native={'on' if use_native else 'off'}",
      file=sys.stderr)

only = {m for m in os.environ.get("FASTWLR_ONLY", "").split(",") if m}
extensions = []
for pyx in sorted(glob.glob(os.path.join(CORE_DIR, "*.pyx"))):
    mod = os.path.splitext(os.path.basename(pyx))[0]
    if only and mod not in only:
        continue
    extensions.append(Extension(
        f"fastwlr.backends.cython_core.{mod}",
        [pyx],
        include_dirs=[np.get_include(), CORE_DIR],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("FASTWLR_OPENMP", int(use_openmp)), ("FASTWLR_NATIVE", int(use_native))],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    ))

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False,
                             "cdivision": True, "initializedcheck": False, "embedsignature": True},
        compile_time_env={"FASTWLR_OPENMP": int(use_openmp), "FASTWLR_NATIVE": int(use_native)},
    ),
)
