"""`ivr build-ext` and `ivr env`: toolchain checks, failure reports, and the build itself."""

import shutil
import stat

import pytest
import torch
from typer.testing import CliRunner

from ivr_cli.main import app
from ivr_core.extension import diagnose, source_dir

runner = CliRunner()


def run(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: ")
    return " ".join(result.output.split())


def fake_toolkit(tmp_path, release="1.0"):
    """A CUDA_HOME whose nvcc reports another release than torch's CUDA."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "cuda_runtime.h").write_text("")
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.1'\n")
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    return tmp_path


def test_check_reports_the_toolchain():
    result = run("build-ext", "--check")
    assert result.exit_code == 0, result.output
    for row in ("C++ compiler", "torch", "CUDA_HOME", "nvcc", "kernels to build", "ninja"):
        assert row in result.output


def test_flags_that_exclude_each_other():
    assert "exclude each other" in one_line_error(run("build-ext", "--cpu-only", "--cuda"))


def test_cuda_with_a_mismatched_toolkit_says_so(tmp_path):
    home = fake_toolkit(tmp_path)
    text = one_line_error(run("build-ext", "--cuda", "--check", env={"CUDA_HOME": str(home)}))
    if torch.version.cuda is None:
        assert "is a CPU-only build" in text
    else:
        assert f"nvcc 1.0 does not match the CUDA {torch.version.cuda} torch was built with" in text
    assert "--cpu-only" in text


def test_cuda_without_a_toolkit_says_so(tmp_path):
    text = one_line_error(run("build-ext", "--cuda", "--check",
                              env={"CUDA_HOME": str(tmp_path / "none")}))
    assert ("no CUDA toolkit found" in text) or ("CPU-only build" in text)


def test_auto_falls_back_to_cpu_with_a_note(tmp_path):
    result = run("build-ext", "--check", env={"CUDA_HOME": str(tmp_path / "none")})
    assert result.exit_code == 0
    assert "building the CPU kernels only" in " ".join(result.output.split())


@pytest.mark.slow
def test_a_failing_build_ends_in_one_paragraph_with_the_log(tmp_path):
    src = tmp_path / "ext"
    shutil.copytree(source_dir(), src, ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so"))
    ops = src / "ivr_ext" / "csrc" / "ops.cpp"
    ops.write_text(ops.read_text() + "\nthis is not C++;\n")
    log = tmp_path / "build.log"
    text = one_line_error(run("build-ext", "--cpu-only", "--source", src, "--log", log))
    assert "building the compiled ops failed. first error:" in text
    assert "ops.cpp" in text and f"The full log is {log}" in text
    assert "this is not C++" in log.read_text()


def test_diagnosis_names_the_first_error_and_the_fix():
    log = ("x.cpp:1: warning: meh\nfoo/bar.cpp:12:3: error: 'x' was not declared\n"
           "error: subprocess-exited-with-error\nfatal error: Python.h: No such file or directory")
    text = diagnose(log)
    assert text.startswith("first error: foo/bar.cpp:12:3: error: 'x' was not declared")
    assert "install python3-dev" in text
    assert "without a compiler error" in diagnose("ERROR: Failed building wheel")


def test_env_reports_versions_and_compiled_ops():
    result = run("env")
    assert result.exit_code == 0
    for row in ("ivr", "torch", "torchvision", "CUDA available", "compiled ops"):
        assert row in result.output
