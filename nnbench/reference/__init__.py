"""Reference implementations of nnbench's MLP in other libraries, for benchmarks.

`torch_mlp` (PyTorch eager, CPU or CUDA) and `sklearn_mlp` (scikit-learn's MLPClassifier)
import their library only when called: install them with ``pip install 'nnbench[reference]'``.
Each builds the same network as ``nnbench.MLP(sizes[0], sizes[1:-1], sizes[-1])`` with ReLU
hidden layers and softmax cross-entropy, and exposes a one-step callable for timing.
"""

FRAMEWORKS = ("nnbench", "torch", "sklearn")
