"""Build of ivr_ext, ivr's compiled ops (crop_and_resize, paste_and_sum).

    pip install --no-build-isolation ./ext        # or: ivr build-ext

The CPU kernels always build. The CUDA kernels build when a CUDA toolkit is found (CUDA_HOME
or nvcc on PATH) and torch is a CUDA build, or when FORCE_CUDA=1; IVR_CPU_ONLY=1 skips them.
Without a visible GPU set TORCH_CUDA_ARCH_LIST (e.g. "8.0;9.0"). DEBUG=1 builds with -O0 -g.
"""

import glob
import os

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("ivr_ext", "csrc")


def want_cuda() -> bool:
    if os.environ.get("IVR_CPU_ONLY") == "1":
        return False
    if os.environ.get("FORCE_CUDA") == "1":
        return True
    return CUDA_HOME is not None and torch.version.cuda is not None


def extension():
    debug = os.environ.get("DEBUG") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    # -fopenmp: at::parallel_for is OpenMP in torch builds; without it the loops run serially.
    # -ffp-contract=off: no fused multiply-add, so results match TensorFlow bit for bit.
    # (The C++ standard comes from torch: C++17 or C++20.)
    cxx = opt + ["-fopenmp", "-ffp-contract=off"]
    link = ["-fopenmp"]
    sources = sorted(glob.glob(os.path.join(CSRC, "*.cpp")) + glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))
    if want_cuda():
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
        nvcc = opt + ["--fmad=false", "-lineinfo"]
        return CUDAExtension("ivr_ext._C", sources, extra_compile_args={"cxx": cxx, "nvcc": nvcc},
                             extra_link_args=link)
    return CppExtension("ivr_ext._C", sources, extra_compile_args={"cxx": cxx},
                        extra_link_args=link)


os.chdir(HERE)
setup(
    name="ivr-ext",
    version="0.1.0",
    description="Compiled crop_and_resize and paste_and_sum ops for ivr (CPU and CUDA)",
    packages=["ivr_ext"],
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)},
    python_requires=">=3.10",
    install_requires=["torch>=2.4"],
)
