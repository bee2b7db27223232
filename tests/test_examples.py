"""Every example runs, says what it should, and every picture it writes renders."""

from __future__ import annotations

import importlib.util
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXPECTED = {
    "quickstart.py": [
        "df/dz      = x + y",
        "-12.0",
        "d3y/dt3    = -3*sin(t) - t*cos(t)",
        "matches numpy's lstsq: True",
    ],
    "gates.py": ["df/dx = z = -4.0", "df/dz = x + y = 3.0"],
    "symbol_to_symbol.py": ["derivative nodes appended: 3"],
    "logistic_regression.py": ["accuracy 9"],
    "weight_decay.py": ["d loss/dw = w + X.T@(2*(X@w - y))"],
    "mlp_digits.py": ["epoch 30"],
    "quadratic_fit.py": ["prediction at x = 4: 21.0000"],
    "weighted_least_squares.py": ["after 300 steps"],
    "newton_rosenbrock.py": ["x = [1. 1. 1. 1. 1. 1. 1. 1. 1. 1.]"],
    "newton_dask.py": ["converged: |w - true w|", "in 10 chunks"],
    "pendulum_rk4.py": ["recovered to 1e-2: True"],
    "ship_to_c.py": ["largest difference from symdiff's evaluation"],
    "optimal_control.py": [
        "x1 reaches its bound -0.25: True",
        "each step agrees with solve_ivp's to h^3: True",
        "the cost recomputed in numpy matches: True",
        "nodes added 0; steps agree: True",
    ],
}
ARGUMENTS = {"newton_dask.py": ["1000000"]}  # 10^6 rows in CI; 10^7 by default
# examples that import an optional library: (module, what to install)
NEEDS = {
    "mlp_digits.py": ("sklearn", 'scikit-learn (python -m pip install ".[examples]")'),
    "newton_dask.py": ("dask", 'dask (python -m pip install ".[dask]")'),
}


def test_every_example_is_listed():
    found = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert found == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name, tmp_path):
    if name in NEEDS and importlib.util.find_spec(NEEDS[name][0]) is None:
        pytest.skip(f"needs {NEEDS[name][1]}")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *ARGUMENTS.get(name, [])],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for expected in EXPECTED[name]:
        assert expected in result.stdout, f"{name} did not print {expected!r}:\n{result.stdout}"
    if shutil.which("dot"):
        for line in result.stdout.splitlines():
            if line.startswith("figure: "):
                picture = pathlib.Path(line.removeprefix("figure: "))
                assert picture.parent == tmp_path, f"{name} wrote {picture}, not into the current directory"
                dot = picture.with_suffix(".dot")
                rendered = subprocess.run(["dot", "-Tsvg", str(dot)], capture_output=True, text=True)
                assert rendered.returncode == 0 and "<svg" in rendered.stdout, rendered.stderr


def test_readme_picture_exists():
    readme = (ROOT / "README.md").read_text()
    for image in ("docs/images/symbol_to_symbol.svg", "docs/images/gates.svg"):
        assert image in readme and (ROOT / image).read_text().lstrip().startswith(("<?xml", "<svg"))
