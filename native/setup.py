"""Build of the detcore-native extension (one module: detcore_native._C).

CPU kernels always build. CUDA kernels build when the installed torch has CUDA (a visible GPU, or CUDA_HOME
together with a CUDA build of torch) or when FORCE_CUDA=1. Install with
``pip install --no-build-isolation ./native``.
"""

import glob
import os
import sys

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

HERE = os.path.dirname(os.path.abspath(__file__))


def _want_cuda() -> bool:
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.version.cuda is not None and (torch.cuda.is_available() or CUDA_HOME is not None)


def _sources(pattern: str) -> list:
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern)))


def _extension():
    sources = _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp")
    extra = {"cxx": ["-O2", "-ftree-vectorize", "-fvect-cost-model=dynamic", "-std=c++17"]}
    link = []
    if sys.platform.startswith("linux"):
        # -fopenmp turns at::parallel_for into OpenMP loops (torch's own backend on Linux; the extension
        # reuses the libgomp torch loads); -fno-trapping-math lets GCC if-convert float selects so the
        # elementwise loops vectorise. Elsewhere (macOS clang has no OpenMP by default) they run serially.
        extra["cxx"] += ["-fopenmp", "-fno-trapping-math"]
        link += ["-fopenmp"]
    if _want_cuda():
        sources += _sources("csrc/cuda/*.cu") + _sources("csrc/cuda/*.cpp")
        extra["nvcc"] = ["-O2", "-std=c++17", "--expt-relaxed-constexpr"]
        return CUDAExtension(
            "detcore_native._C",
            sources,
            define_macros=[("WITH_CUDA", None)],
            extra_compile_args=extra,
            extra_link_args=link,
        )
    return CppExtension("detcore_native._C", sources, extra_compile_args=extra, extra_link_args=link)


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
