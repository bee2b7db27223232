"""Ship a derivative to a C project: the logistic loss of a small model, its gradient and its
Hessian as one C99 function (sd.to_c), called from a C program with no Python, then checked
against symdiff's own evaluation.

    python examples/ship_to_c.py [folder]    # writes loss.c, loss.h, main.c there; builds; runs

Needs a C compiler (``cc`` or ``$CC``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import symdiff as sd

# the model: p = sigmoid(X @ w), the mean logistic loss over 8 samples of 3 features
g = sd.Graph()
X = g.variable("X", (8, 3))
y = g.variable("y", (8,))
w = g.variable("w", (3,))
z = X @ w
loss = sd.mean(sd.softplus(z) - y * z)
outputs = [loss, sd.grad(loss, w), sd.hessian(loss, w)]

files = sd.to_c(outputs, [X, y, w], name="loss")

MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "loss.h"

int main(void)
{
    double X[8][3], y[8], w[3] = {0.5, -0.25, 1.0};
    double value, grad[3], hess[3][3];
    void *work = malloc(LOSS_WORK_BYTES);   /* or a static buffer of that size, 16-byte aligned */
    int i, j;
    for (i = 0; i < 8; ++i) {
        for (j = 0; j < 3; ++j) X[i][j] = 0.1 * (i + 1) * (j % 2 ? -1.0 : 1.0) + 0.05 * j;
        y[i] = i % 3 == 0;
    }
    if (loss(&X[0][0], y, w, &value, grad, &hess[0][0], work) != 0) return 1;
    printf("%.17g\n", value);
    for (i = 0; i < 3; ++i) printf("%.17g\n", grad[i]);
    for (i = 0; i < 3; ++i) for (j = 0; j < 3; ++j) printf("%.17g\n", hess[i][j]);
    free(work);
    return 0;
}
"""


def main(folder: Path) -> None:
    for name, text in {**files, "main.c": MAIN}.items():
        (folder / name).write_text(text)
    cc = shlex.split(os.environ.get("CC") or "cc")
    if shutil.which(cc[0]) is None:
        sys.exit(f"no C compiler ({cc[0]}): install one (Debian: apt-get install gcc) or set $CC")
    exe = folder / "main"
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fno-strict-aliasing"]
    subprocess.run([*cc, *flags, "-o", str(exe), str(folder / "main.c"), str(folder / "loss.c"), "-lm"], check=True)
    printed = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    got = np.array([float(v) for v in printed.split()])

    # the same inputs in Python, evaluated by symdiff's interpreter
    rows = np.arange(1, 9)[:, None]
    cols = np.arange(3)[None, :]
    Xv = 0.1 * rows * np.where(cols % 2 == 1, -1.0, 1.0) + 0.05 * cols
    yv = (np.arange(8) % 3 == 0).astype(float)
    wv = np.array([0.5, -0.25, 1.0])
    expected = np.concatenate([np.ravel(v) for v in sd.evaluate(outputs, {X: Xv, y: yv, w: wv})])
    work = files["loss.h"].split("LOSS_WORK_BYTES ")[1].split()[0]
    print(f"loss.c: {len(files['loss.c'].splitlines())} lines; work buffer {work} bytes")
    print("loss, gradient and Hessian from C:", np.array2string(got, precision=6))
    print("largest difference from symdiff's evaluation:", np.max(np.abs(got - expected)))
    assert np.allclose(got, expected, rtol=1e-13, atol=1e-15)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(Path(folder))
