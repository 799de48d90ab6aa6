"""TensorFlow's crop_and_resize at the shapes of bench/ops.py: the peer that ivr's compiled
ops race (bench/ops.py runs this script in alternation with its own timings and prints the
ratios; run alone, it prints TensorFlow's times).

TensorFlow is not an ivr dependency. Install it next to ivr (`pip install tensorflow-cpu`)
or in a scratch venv, and give bench/ops.py that interpreter with --tf-python:

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu numpy
    /tmp/tf/bin/python bench/tf_ops.py                  # TensorFlow alone

TensorFlow runs the way its users run it: each op inside a `tf.function` (a graph, traced
once before timing), with the image, boxes and upstream gradient passed as arguments
(constants would be folded into the graph), and intra- and inter-op threads pinned.
"fwd+bwd" returns the forward output beside the gradient: the gradient of
crop_and_resize does not need the forward output, and a graph that does not return it
prunes the forward op. Same boxes as bench/ops.py (bench/cases.py): feature map
1 x 38 x 50 x 1024 (NHWC, TensorFlow's layout), K in {16, 64, 256}, crops 7x7 and 14x14;
the paste-back as the authors' code does it (crop_and_resize of each 7 x 7 x 512 map with
its inverse box to 38 x 50, then a sum over boxes), against ivr's fused paste_and_sum.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys

import cases as C


def import_tensorflow(threads: int):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def crop_fns(tf, crop: int, k: int):
    """fwd() and fwd_bwd() of tf.image.crop_and_resize on the case's inputs."""
    image = tf.constant(C.random((1, C.H, C.W, C.FEAT_C), 0))
    boxes = tf.constant(C.crop_boxes(k))
    ind = tf.zeros((k,), tf.int32)
    dout = tf.constant(C.random((k, crop, crop, C.FEAT_C), 1))

    @tf.function
    def fwd(image, boxes, ind):
        return tf.image.crop_and_resize(image, boxes, ind, (crop, crop))

    @tf.function
    def fwd_bwd(image, boxes, ind, dout):
        with tf.GradientTape() as tape:
            tape.watch(image)
            out = tf.image.crop_and_resize(image, boxes, ind, (crop, crop))
        return out, tape.gradient(out, image, output_gradients=dout)

    return (lambda: fwd(image, boxes, ind)), (lambda: fwd_bwd(image, boxes, ind, dout))


def paste_fns(tf, k: int):
    """The authors' paste-back: crop each 7 x 7 map with its inverse box to 38 x 50, sum."""
    maps = tf.constant(C.random((k, C.PASTE_SIZE, C.PASTE_SIZE, C.MEM_C), 2))
    boxes = tf.constant(C.paste_boxes(k))
    ind = tf.range(k, dtype=tf.int32)
    dout = tf.constant(C.random((C.H, C.W, C.MEM_C), 3))

    @tf.function
    def fwd(maps, boxes, ind):
        return tf.reduce_sum(tf.image.crop_and_resize(maps, boxes, ind, (C.H, C.W)), 0)

    @tf.function
    def fwd_bwd(maps, boxes, ind, dout):
        with tf.GradientTape() as tape:
            tape.watch(maps)
            out = tf.reduce_sum(tf.image.crop_and_resize(maps, boxes, ind, (C.H, C.W)), 0)
        return out, tape.gradient(out, maps, output_gradients=dout)

    return (lambda: fwd(maps, boxes, ind)), (lambda: fwd_bwd(maps, boxes, ind, dout))


def measure(tf, repeat: int) -> dict:
    """{case: {"fwd": ms, "fwd+bwd": ms}} for every crop and paste case."""
    times = {}
    for crop in C.CROP_SIZES:
        for k in C.KS:
            fwd, both = crop_fns(tf, crop, k)
            times[C.crop_case(crop, k)] = {"fwd": C.median_ms(fwd, repeat),
                                           "fwd+bwd": C.median_ms(both, repeat)}
    for k in C.KS:
        fwd, both = paste_fns(tf, k)
        times[C.paste_case(k)] = {"fwd": C.median_ms(fwd, repeat),
                                  "fwd+bwd": C.median_ms(both, repeat)}
    return times


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def paste_peak_mb(tf, k: int) -> float:
    """Peak extra resident memory (MB) of one paste forward + backward. Run in a fresh
    process: TensorFlow's allocator keeps what it once took, so later calls show nothing."""
    _, both = paste_fns(tf, k)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    base = _rss_mb("VmRSS:")
    both()
    return _rss_mb("VmHWM:") - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="intra- and inter-op threads")
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per case")
    parser.add_argument("--json", action="store_true", help="print one JSON object (for ops.py)")
    parser.add_argument("--paste-memory", type=int, metavar="K",
                        help="print the peak extra MB of one paste fwd+bwd with K boxes")
    args = parser.parse_args()
    tf = import_tensorflow(args.threads)
    if args.paste_memory:
        print(paste_peak_mb(tf, args.paste_memory))
        return
    times = measure(tf, args.repeat)
    if args.json:
        json.dump({"version": tf.__version__, "times": times}, sys.stdout)
        return
    print(f"tensorflow {tf.__version__}, {args.threads} intra- and inter-op threads; "
          "medians in ms")
    print("| case | fwd ms | fwd+bwd ms |\n|---|---|---|")
    for case, t in times.items():
        print(f"| {case} | {t['fwd']:.2f} | {t['fwd+bwd']:.2f} |")
    print("\n| paste fwd+bwd, K | peak extra MB |\n|---|---|")
    for k in C.KS:
        out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads),
                              "--paste-memory", str(k)], check=True, capture_output=True,
                             text=True).stdout.split()[-1]
        print(f"| {k} | {float(out):.0f} |")


if __name__ == "__main__":
    main()
