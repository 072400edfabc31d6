"""livediff engine: timeline, scheduler, models, samplers, training."""
import os

# numpy's OpenBLAS runs every small matrix product on one thread per core; next to ONNX Runtime
# and the decoder on a loaded 2-core machine those threads only wait for each other (the
# anchors' band products ran 20-40x slower). Read when numpy loads, so import engine first.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
