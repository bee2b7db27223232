"""Draws the before/after pictures of docs/export.md ("Drawing a derivative graph"): the
Hessian of a Gaussian log-likelihood in (mu, s = log sigma) over data x.

Run from anywhere:  python docs/images/likelihood_hessian.py
(writes likelihood_hessian_raw.svg and likelihood_hessian.svg beside this file; needs Graphviz)
"""

import pathlib
import re

import numpy as np

import symdiff as sd

HERE = pathlib.Path(__file__).resolve().parent


def _tenths(attribute: re.Match) -> str:
    """A geometry attribute's numbers to a tenth of a point (labels keep their digits)."""
    return re.sub(r"(\d\.\d)\d+", r"\1", attribute[0])


g = sd.Graph()
mu, s = g.variable("mu"), g.variable("s")
x = g.variable("x", shape=(None,))
L = sd.sum(-0.5 * ((x - mu) / sd.exp(s)) ** 2 - s - 0.5 * np.log(2 * np.pi))
H = sd.hessian(L, [mu, s])  # 2 x 2 blocks: d2L/dmu2, d2L/dmu ds, ...
blocks = [h for row in H for h in row]

# before: the four blocks as sd.hessian built them, unnamed
raw = sd.render(blocks, HERE / "likelihood_hessian_raw.svg", title="sd.render(blocks)")
# after: the cost named, its derivatives named from it, simplified
named = sd.render(
    [{"L": L}, *blocks],
    HERE / "likelihood_hessian.svg",
    simplify=True,
    title='sd.render([{"L": L}, *blocks], simplify=True)',
)
for path in (raw, named):
    path.with_suffix(".dot").unlink(missing_ok=True)  # only the pictures are kept
    svg = re.sub(r"<!--.*?-->\n?", "", path.read_text(), flags=re.S)  # Graphviz's comments
    geometry = r'\b(points|d|x|y|cx|cy|rx|ry|viewBox|transform)="[^"]*"'
    path.write_text(re.sub(geometry, _tenths, svg))
    print(f"figure: {path} ({path.stat().st_size // 1000} kB)")
