"""TensorFlow's own crop_and_resize at the shapes of bench/ops.py, for a side-by-side run.

TensorFlow is not an ivr dependency: run this from a scratch venv, e.g.

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
    /tmp/tf/bin/python bench/tf_ops.py

Same random boxes as bench/ops.py (regenerated with numpy here, so values differ but sizes
match): feature map 1 x 38 x 50 x 1024 (NHWC, TF's layout), K in {16, 64, 256}, crops 7x7
and 14x14; the paste-back as the authors' code does it (crop_and_resize of each 7x7x512 map
with its inverse box to 38 x 50, then a sum over boxes). Forward, and forward + backward to
the image (or maps); medians in ms, plus the peak extra resident memory of the paste.
"""

import ctypes
import gc
import statistics
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

H, W, FEAT_C, MEM_C = 38, 50, 1024, 512


def boxes(k):
    rng = np.random.default_rng(k)
    xy = rng.random((k, 2)) * [700.0, 500.0]
    px = np.clip(np.concatenate([xy, xy + 16 + rng.random((k, 2)) * 300], 1), None, 799)
    feat = px / 16
    norm = np.stack([feat[:, 1] / (H - 1), feat[:, 0] / (W - 1), feat[:, 3] / (H - 1),
                     feat[:, 2] / (W - 1)], 1).astype(np.float32)
    h = np.maximum(feat[:, 3] - feat[:, 1], 1e-14)
    w = np.maximum(feat[:, 2] - feat[:, 0], 1e-14)
    inv = np.stack([-feat[:, 1] / h, -feat[:, 0] / w, (H - 1 - feat[:, 1]) / h,
                    (W - 1 - feat[:, 0]) / w], 1).astype(np.float32)
    return tf.constant(norm), tf.constant(inv)


def median_ms(fn, repeat=20):
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def rss(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def main():
    print(f"tensorflow {tf.__version__}, intra-op threads "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}")
    image = tf.Variable(tf.random.normal((1, H, W, FEAT_C)))
    print("| op | K | fwd ms | fwd+bwd ms |\n|---|---|---|---|")
    for crop in (7, 14):
        for k in (16, 64, 256):
            norm, _ = boxes(k)
            ind = tf.zeros((k,), tf.int32)

            def fwd():
                return tf.image.crop_and_resize(image, norm, ind, (crop, crop))

            def both():
                with tf.GradientTape() as tape:
                    out = tf.reduce_sum(fwd())
                return tape.gradient(out, image)

            print(f"| crop {crop}x{crop} | {k} | {median_ms(fwd):.2f} | {median_ms(both):.2f} |")
    for k in (16, 64, 256):
        pfwd, pboth = paste(k)
        peak = subprocess.run([sys.executable, __file__, "--memory", str(k)], check=True,
                              capture_output=True, text=True).stdout.split()[-1]
        print(f"| paste 7x7 -> 38x50 + sum | {k} | {median_ms(pfwd, 10):.2f} | "
              f"{median_ms(pboth, 10):.2f} | peak extra {float(peak):.0f} MB |")


def paste(k):
    """The authors' paste-back: crop each map with its inverse box to 38 x 50, sum."""
    _, inv = boxes(k)
    maps = tf.Variable(tf.random.normal((k, 7, 7, MEM_C)))
    ind = tf.range(k, dtype=tf.int32)

    def pfwd():
        return tf.reduce_sum(tf.image.crop_and_resize(maps, inv, ind, (H, W)), 0)

    def pboth():
        with tf.GradientTape() as tape:
            out = tf.reduce_sum(pfwd())
        return tape.gradient(out, maps)

    return pfwd, pboth


def peak_memory(k):
    """Peak extra resident memory (MB) of one paste forward + backward in a fresh process
    (TensorFlow's allocator keeps what it once took, so later calls would show nothing)."""
    _, pboth = paste(k)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    base = rss("VmRSS:")
    pboth()
    return rss("VmHWM:") - base


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory":
        print(peak_memory(int(sys.argv[2])))
    else:
        main()
