"""Build fastwlr: the Python package, and its Cython core where a C compiler is available.

Every ``fastwlr/backends/cython_core/*.pyx`` becomes one extension module, compiled with -O3 and,
when the compiler supports them, OpenMP and the host's vector instructions. The package works
without them: when the core is not built, ``backend="auto"`` runs the Numba backend (``pip install
"fastwlr[numba]"``) or, without Numba, the numpy reference, and says so once at run time.

Environment switches (read at build time; the decisions are printed in the build log, which
``pip install -v .`` shows, and ``fastwlr.show_config()`` reports what was built):
  FASTWLR_BUILD_EXT=auto|1|0  auto (default): compile the core, and if the C compiler fails (none
                        installed, an unsupported platform), warn and install the package without
                        it; 1: a failed compile is an error; 0: do not compile (pure-Python package)
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

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import BaseError, CCompilerError

CORE_DIR = os.path.join("fastwlr", "backends", "cython_core")
# The one list of extension modules: every .pyx of the core (their shared inline code is _math.pxd).
SOURCES = sorted(glob.glob(os.path.join(CORE_DIR, "*.pyx")))


def _log(message):
    print(f"fastwlr build: {message}", file=sys.stderr, flush=True)


def _build_ext_mode():
    """FASTWLR_BUILD_EXT as "auto", "1" (the core is required) or "0" (not built)."""
    value = os.environ.get("FASTWLR_BUILD_EXT", "auto").strip().lower()
    if value in ("", "auto"):
        return "auto"
    if value in ("1", "true", "yes", "on"):
        return "1"
    if value in ("0", "false", "no", "off"):
        return "0"
    raise SystemExit(f"FASTWLR_BUILD_EXT must be auto, 1 or 0, got {value!r}")


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


WITHOUT_CORE = ("installing fastwlr WITHOUT its compiled core: backend='auto' will run the Numba "
                "backend if Numba is installed (pip install \"fastwlr[numba]\"), else the numpy "
                "reference, which is much slower.")


class optional_build_ext(build_ext):
    """build_ext that, in the "auto" mode, turns a failed C compile into a loud warning and a
    package without the core (never a partial core: the modules already built are removed)."""

    def finalize_options(self):
        if self.parallel is None:  # one compiler process per core unless -j says otherwise
            self.parallel = os.cpu_count() or 1
        super().finalize_options()

    def run(self):
        try:
            super().run()
        except (CCompilerError, BaseError, OSError) as exc:  # compile/link failed, no compiler, ...
            if MODE == "1":
                raise
            self._remove_outputs()
            banner = "!" * 78
            _log(f"\n{banner}\nWARNING: compiling the Cython core failed ({type(exc).__name__}: {exc});\n"
                 f"{WITHOUT_CORE}\nSet FASTWLR_BUILD_EXT=1 to make a failed compile an error.\n{banner}")

    def _remove_outputs(self):
        inplace = self.inplace
        try:
            for self.inplace in (0, 1):  # the build directory and, for --inplace, the source tree
                for ext in self.extensions:
                    path = self.get_ext_fullpath(ext.name)
                    if os.path.exists(path):
                        os.remove(path)
        finally:
            self.inplace = inplace


MODE = _build_ext_mode()
only = {m for m in os.environ.get("FASTWLR_ONLY", "").split(",") if m}
extensions = []
if MODE == "0":
    _log("FASTWLR_BUILD_EXT=0: " + WITHOUT_CORE)
else:
    from Cython.Build import cythonize

    OPENMP_PROBE = ("#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel reduction(+:n)\nn+=1;\n"
                    "return omp_get_max_threads()>0?0:1;}\n")
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
    _log(f"OpenMP={'on' if use_openmp else 'OFF'} native={'on' if use_native else 'off'} "
         f"FASTWLR_BUILD_EXT={MODE}")

    for pyx in SOURCES:
        mod = os.path.splitext(os.path.basename(pyx))[0]
        if only and mod not in only:
            continue
        extensions.append(Extension(
            f"fastwlr.backends.cython_core.{mod}",
            [pyx],
            include_dirs=[CORE_DIR],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        ))
    extensions = cythonize(
        extensions,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False,
                             "cdivision": True, "initializedcheck": False, "embedsignature": True},
    )

setup(ext_modules=extensions, cmdclass={"build_ext": optional_build_ext})
