"""A two-layer softmax MLP (the book's Algorithms 6.3 and 6.4) trained on the 8x8 handwritten
digits that ship with scikit-learn.

Needs scikit-learn:  python -m pip install ".[examples]"
Run:                 python examples/mlp_digits.py
"""

import sys

import numpy as np

import symdiff as sd

try:
    from sklearn.datasets import load_digits
except ImportError:
    sys.exit('this example needs scikit-learn: python -m pip install ".[examples]"')

digits = load_digits()
images, labels = digits.data / 16.0, digits.target
rng = np.random.default_rng(0)
order = rng.permutation(len(labels))
train, test = order[:1400], order[1400:]

g = sd.Graph()
X, y = g.variable("X", shape=(None, 64)), g.variable("y", shape=(None,), dtype="int64")
W1, b1 = g.variable("W1", shape=(64, 64)), g.variable("b1", shape=(64,))
W2, b2 = g.variable("W2", shape=(64, 10)), g.variable("b2", shape=(10,))
h1 = sd.relu(X @ W1 + b1)
scores = h1 @ W2 + b2
# cross-entropy over integer labels: each row's log-probability of its label, no one-hot matrix
logp = sd.log_softmax(scores)
loss = -sd.mean(logp[sd.arange(sd.count(X, axis=0)), y])
params = [W1, b1, W2, b2]
grads = sd.grad(loss, params)
print(f"dL/dW2 = {grads[2]}")  # h1^T dL/dscores, as in the book
step = sd.compile([loss, *grads], inputs=[X, y, *params])
predict = sd.compile(scores, inputs=[X, W1, b1, W2, b2])

values = [rng.standard_normal((64, 64)) * 0.18, np.zeros(64), rng.standard_normal((64, 10)) * 0.18, np.zeros(10)]
for epoch in range(30):
    for batch in np.array_split(rng.permutation(train), 22):
        out = step(images[batch], labels[batch], *values)
        values = [v - 0.3 * gv for v, gv in zip(values, out[1:])]
    if epoch % 10 == 9:
        accuracy = np.mean(predict(images[test], *values).argmax(axis=1) == labels[test])
        print(f"epoch {epoch + 1}: training loss {out[0]:.4f}, test accuracy {accuracy:.1%}")
