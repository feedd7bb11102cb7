"""Churn contributions as one precomputed vector per tree leaf: the mechanics.

A :class:`LeafTable` holds, for every leaf ``l`` of every tree ``t`` of a LightGBM booster, a
contribution vector ``V[t, l]`` (one entry per feature). A customer's contributions are the sum
over trees of the vectors of the leaves it lands in, ``phi(x) = sum_t V[t, leaf_t(x)]``: one
``predict(pred_leaf=True)`` (LightGBM evaluates the splits, so categorical splits, missing
values and ``default_left`` are handled exactly as when scoring) and a gather-and-sum in numpy.
Two tables are built here; :mod:`model.explain` states their math, sources and how they depart
from TreeSHAP:

* :func:`saabas_table` — path contributions (Saabas 2014), from the tree structure alone;
* :func:`fit_leaf_shap_table` — the mean TreeSHAP vector of each leaf over training rows.

Both sum, per leaf, to ``leaf value - tree expected value``, so with the bias
``sum_t E_t`` every row's contributions sum to its raw score, as TreeSHAP's do.
"""

from __future__ import annotations

import base64
import ctypes
import functools
import logging
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import lightgbm as lgb
import numpy as np

from model.gbm import threads_for

try:  # LightGBM's ctypes handle to its C API, for the single-row fast path (LeafPredictor)
    from lightgbm.basic import _LIB, _c_str, _safe_call
except ImportError:  # pragma: no cover - another LightGBM build: Booster.predict only
    _LIB = None  # type: ignore[assignment]
_C_API_PREDICT_LEAF_INDEX, _C_API_DTYPE_FLOAT64 = 2, 1  # LightGBM's c_api.h
_C_API_PREDICT_NORMAL, _C_API_PREDICT_RAW_SCORE = 0, 1

logger = logging.getLogger(__name__)

ContributionMethod = Literal["leaf_shap", "saabas", "treeshap"]
CONTRIBUTION_METHODS: tuple[ContributionMethod, ...] = ("leaf_shap", "saabas", "treeshap")
TableKind = Literal["leaf_shap", "saabas"]
# Training rows whose per-tree TreeSHAP is averaged per leaf (on the demo model 500 rows gave
# most of the agreement with TreeSHAP that 4,000 gave; see docs/benchmarks.md).
LEAF_SHAP_ROWS = 2_000
# Up to this many rows are summed with one gather (rows x trees x features floats in memory);
# more rows are summed tree by tree. Both add the trees in the same order: identical results.
_GATHER_ROWS = 32
# Rows summed together tree by tree: the running sums (features x rows) stay in the CPU cache
# (half the time per row of one pass over 20,000 rows).
_CHUNK_ROWS = 2_048


_LINEAR_TREES = (
    "per-leaf contributions need constant leaves; this booster has linear trees (LightGBM "
    "cannot explain those with TreeSHAP either)"
)


class ContributionError(ValueError):
    """The booster's trees cannot be explained by a per-leaf table (e.g. linear trees)."""


@dataclass(frozen=True, eq=False)
class LeafTable:
    """Per-leaf contribution vectors of a booster.

    Attributes:
        kind: ``"saabas"`` (path contributions) or ``"leaf_shap"`` (leaf means of TreeSHAP).
        offsets: Row of tree ``t``'s leaf 0 in ``values``; ``offsets[-1]`` is the leaf count
            (shape ``(trees + 1,)``).
        values: One row per leaf of every tree, one column per feature (float64).
        bias: Sum over trees of each tree's expected value (TreeSHAP's bias, in log-odds).
        fitted_rows: Training rows averaged (``leaf_shap``); 0 for ``saabas``.
    """

    kind: TableKind
    offsets: np.ndarray
    values: np.ndarray
    bias: float
    fitted_rows: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("leaf_shap", "saabas"):
            raise ValueError(f"leaf table kind must be 'leaf_shap' or 'saabas', got {self.kind!r}")
        if self.values.ndim != 2 or self.offsets.ndim != 1 or len(self.offsets) < 2:
            raise ValueError("a leaf table needs 2-d values and at least one tree")
        if self.offsets[0] != 0 or self.offsets[-1] != self.values.shape[0]:
            raise ValueError(
                f"leaf offsets run {self.offsets[0]}..{self.offsets[-1]} but the table has "
                f"{self.values.shape[0]} leaves"
            )

    @property
    def n_trees(self) -> int:
        """Trees in the booster the table was built for."""
        return len(self.offsets) - 1

    @property
    def n_features(self) -> int:
        """Features (columns of the contributions, bias excluded)."""
        return int(self.values.shape[1])

    @functools.cached_property
    def _blocks(self) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """Per tree: the features it touches and their values, ``(features, leaves)``."""
        blocks = []
        for t in range(self.n_trees):
            tree = self.values[self.offsets[t] : self.offsets[t + 1]]
            columns = np.flatnonzero(np.any(tree != 0.0, axis=0))
            blocks.append((columns, np.ascontiguousarray(tree[:, columns].T)))
        return tuple(blocks)

    def contributions(self, leaves: np.ndarray) -> np.ndarray:
        """Per-row contributions from the leaf each row reached in each tree.

        Args:
            leaves: ``(rows, trees)`` leaf indices (``predict(pred_leaf=True)``).

        Returns:
            ``(rows, features + 1)`` float64: the contributions, then the bias (LightGBM's
            ``pred_contrib`` layout).

        Raises:
            ValueError: ``leaves`` does not have one column per tree.
        """
        leaves = np.asarray(leaves)
        if leaves.ndim != 2 or leaves.shape[1] != self.n_trees:
            raise ValueError(
                f"expected leaf indices of shape (rows, {self.n_trees}), got {leaves.shape}"
            )
        rows = leaves.shape[0]
        out = np.empty((rows, self.n_features + 1), dtype=np.float64)
        out[:, -1] = self.bias
        if rows <= _GATHER_ROWS:
            # summed over axis 1 tree by tree, in tree order, like the loop below
            out[:, :-1] = self.values[leaves + self.offsets[:-1]].sum(axis=1)
            return out
        by_tree = np.ascontiguousarray(leaves.T)
        for start in range(0, rows, _CHUNK_ROWS):
            chunk = by_tree[:, start : start + _CHUNK_ROWS]
            total = np.zeros((self.n_features, chunk.shape[1]), dtype=np.float64)
            for (columns, block), tree_leaves in zip(self._blocks, chunk, strict=True):
                total[columns] += block[:, tree_leaves]
            out[start : start + _CHUNK_ROWS, :-1] = total.T
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: per tree its leaf count, the features it touches and the values
        (float64, little-endian, base64; exact)."""
        columns = [block[0].tolist() for block in self._blocks]
        values = np.concatenate(
            [block[1].T.ravel() for block in self._blocks] or [np.empty(0)]
        ).astype("<f8")
        return {
            "kind": self.kind,
            "bias": self.bias,
            "fitted_rows": self.fitted_rows,
            "n_features": self.n_features,
            "leaves": np.diff(self.offsets).tolist(),
            "columns": columns,
            "values": base64.b64encode(values.tobytes()).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LeafTable:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: The parts do not fit together.
        """
        leaves = [int(n) for n in data["leaves"]]
        columns = [np.asarray(c, dtype=np.int64) for c in data["columns"]]
        flat = np.frombuffer(base64.b64decode(data["values"]), dtype="<f8")
        expected = sum(n * len(c) for n, c in zip(leaves, columns, strict=True))
        if flat.size != expected:
            raise ValueError(f"leaf table holds {flat.size} values, its layout needs {expected}")
        offsets = np.concatenate([[0], np.cumsum(leaves)]).astype(np.int64)
        values = np.zeros((offsets[-1], int(data["n_features"])), dtype=np.float64)
        start = 0
        for t, cols in enumerate(columns):
            size = leaves[t] * len(cols)
            values[offsets[t] : offsets[t + 1], cols] = flat[start : start + size].reshape(
                leaves[t], len(cols)
            )
            start += size
        return cls(
            kind=data["kind"],
            offsets=offsets,
            values=values,
            bias=float(data["bias"]),
            fitted_rows=int(data["fitted_rows"]),
        )


def leaf_indices(booster: lgb.Booster, matrix: np.ndarray, *, num_threads: int) -> np.ndarray:
    """``(rows, trees)`` index of the leaf each row reaches in each tree.

    The thread count is passed per call, never set on the booster (see :mod:`model.gbm`).
    """
    trees = booster.num_trees()
    if matrix.shape[0] == 0:
        return np.empty((0, trees), dtype=np.int64)
    leaves = booster.predict(matrix, pred_leaf=True, num_threads=threads_for(num_threads))
    return np.asarray(leaves, dtype=np.int64).reshape(matrix.shape[0], trees)


@dataclass(frozen=True, eq=False)
class LeafOutputs:
    """Every leaf's output, to sum the raw scores of rows from their leaf indices.

    LightGBM's raw score of a row is ``((0.0 + v_0[l_0]) + v_1[l_1]) + ...``: the output of the
    leaf ``l_t`` the row reaches in tree ``t``, added tree by tree in tree order
    (``GBDT::PredictRaw``). Adding the same doubles in the same order gives the same bits, so
    one ``predict(pred_leaf=True)`` serves both a row's score and its per-leaf contributions
    (:class:`LeafTable`) instead of walking the trees twice.

    Attributes:
        offsets: Position of tree ``t``'s leaf 0 in ``values``; ``offsets[-1]`` is the leaf count.
        values: Every leaf's output (LightGBM's own double, ``LGBM_BoosterGetLeafValue``).
    """

    offsets: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, booster: lgb.Booster) -> LeafOutputs | None:
        """The leaf outputs of ``booster``, or None when its raw score is not the plain sum of
        constant leaves (linear trees, several trees per iteration, random-forest averaging)."""
        model = booster.dump_model()
        if (
            model.get("num_tree_per_iteration", 1) != 1
            or model.get("average_output", False)
            or booster.params.get("linear_tree")
            or any(tree.get("is_linear") for tree in model["tree_info"])
        ):
            return None
        counts = [int(tree["num_leaves"]) for tree in model["tree_info"]]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        values = np.array(
            [booster.get_leaf_output(t, leaf) for t, n in enumerate(counts) for leaf in range(n)],
            dtype=np.float64,
        )
        return cls(offsets=offsets, values=values)

    def raw_scores(self, leaves: np.ndarray) -> np.ndarray:
        """``(rows,)`` raw scores of the rows that reached ``leaves`` (``(rows, trees)``, from
        :func:`leaf_indices`): the same bits as ``predict(raw_score=True)``.

        Raises:
            ValueError: ``leaves`` does not have one column per tree.
        """
        trees = len(self.offsets) - 1
        if leaves.ndim != 2 or leaves.shape[1] != trees:
            raise ValueError(f"expected leaf indices of shape (rows, {trees}), got {leaves.shape}")
        total = np.zeros(leaves.shape[0], dtype=np.float64)
        by_tree = np.ascontiguousarray(leaves.T)
        for t in range(trees):
            total += self.values[self.offsets[t] : self.offsets[t + 1]].take(by_tree[t])
        return total


class _FastConfig:
    """One LightGBM single-row predictor (C API ``FastConfig``), for one thread: leaf indices
    by default, or the normal / raw score (``predict_type``).

    It holds the booster, so the booster outlives the handle; the handle is freed with it.
    """

    def __init__(
        self,
        booster: lgb.Booster,
        num_threads: int,
        predict_type: int = _C_API_PREDICT_LEAF_INDEX,
    ) -> None:
        self.booster = booster
        self.handle = ctypes.c_void_p()
        self.features = booster.num_feature()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,  # noqa: SLF001 - the C API needs the booster handle
                ctypes.c_int(predict_type),
                ctypes.c_int(0),  # from the first tree
                ctypes.c_int(-1),  # to the last
                ctypes.c_int(_C_API_DTYPE_FLOAT64),
                ctypes.c_int32(self.features),
                _c_str(f"num_threads={num_threads}"),
                ctypes.byref(self.handle),
            )
        )
        width = (
            booster.num_trees()
            if predict_type == _C_API_PREDICT_LEAF_INDEX
            else booster.num_model_per_iteration()
        )
        self.out = np.empty(width, dtype=np.float64)
        self.out_pointer = self.out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self.out_len = ctypes.c_int64()
        self.out_len_pointer = ctypes.byref(self.out_len)
        weakref.finalize(self, _LIB.LGBM_FastConfigFree, self.handle).atexit = False

    def leaves(self, row: np.ndarray) -> np.ndarray:
        return self.values(row).astype(np.int64)[None, :]

    def values(self, row: np.ndarray) -> np.ndarray:
        """The predictor's output for one row (a copy)."""
        row = np.ascontiguousarray(row, dtype=np.float64)
        if row.shape != (self.features,):
            raise ValueError(f"expected one row of {self.features} features, got {row.shape}")
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                self.handle,
                ctypes.c_void_p(row.ctypes.data),
                self.out_len_pointer,
                self.out_pointer,
            )
        )
        return self.out.copy()


class LeafPredictor:
    """:func:`leaf_indices` for one booster, with a fast path for one row (the API's case).

    ``Booster.predict`` sets up a predictor on every call, about 40 µs: most of the cost of
    explaining one customer. One row goes through LightGBM's single-row C API instead
    (``LGBM_BoosterPredictForMatSingleRowFast``), whose predictor is set up once per thread,
    as LightGBM advises; the leaves are the same (tested against ``predict(pred_leaf=True)``).
    That API is reached through ``lightgbm.basic``'s private ctypes handle (LightGBM is pinned
    in requirements.lock); without it every call goes through ``predict``.
    """

    def __init__(self, booster: lgb.Booster, *, num_threads: int) -> None:
        self.booster = booster
        self.num_threads = num_threads
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        # per-thread C predictors cannot travel (pickled to Spark workers, say): rebuilt there
        return {"booster": self.booster, "num_threads": self.num_threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["booster"], num_threads=state["num_threads"])  # type: ignore[misc]

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        """``(rows, trees)`` leaf indices of ``matrix``'s rows."""
        if matrix.shape[0] != 1 or _LIB is None:
            return leaf_indices(self.booster, matrix, num_threads=self.num_threads)
        config = getattr(self._local, "config", None)
        if config is None:
            config = self._local.config = _FastConfig(self.booster, self.num_threads)
        return config.leaves(matrix[0])


class ScorePredictor:
    """``booster.predict`` (normal or raw score) with the single-row fast path of
    :class:`LeafPredictor`: one row goes through LightGBM's single-row C API, set up once per
    thread, instead of paying ``predict``'s set-up on every call (the API scores one customer).
    The scores are the same (tested against ``predict``).
    """

    def __init__(self, booster: lgb.Booster, *, num_threads: int, raw_score: bool) -> None:
        self.booster = booster
        self.num_threads = num_threads
        self.raw_score = raw_score
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "booster": self.booster,
            "num_threads": self.num_threads,
            "raw_score": self.raw_score,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["booster"], num_threads=state["num_threads"], raw_score=state["raw_score"]
        )

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        """Scores of ``matrix``'s rows: ``(rows,)``, or ``(rows, classes)`` for multiclass."""
        classes = self.booster.num_model_per_iteration()
        if matrix.shape[0] != 1 or _LIB is None:
            if matrix.shape[0] == 0:
                return np.empty((0, classes) if classes > 1 else (0,))
            scores = self.booster.predict(
                matrix, raw_score=self.raw_score, num_threads=threads_for(self.num_threads)
            )
            return np.asarray(scores, dtype=np.float64)
        config = getattr(self._local, "config", None)
        if config is None:
            kind = _C_API_PREDICT_RAW_SCORE if self.raw_score else _C_API_PREDICT_NORMAL
            config = self._local.config = _FastConfig(self.booster, self.num_threads, kind)
        values = config.values(matrix[0])
        return values[None, :] if classes > 1 else values


def _check_explainable(booster: lgb.Booster, model: Mapping[str, Any]) -> None:
    if model.get("num_tree_per_iteration", 1) != 1:
        raise ContributionError(
            "per-leaf contributions support one tree per iteration (binary or regression "
            f"objectives); this booster has {model['num_tree_per_iteration']}"
        )
    if booster.params.get("linear_tree"):
        raise ContributionError(_LINEAR_TREES)


def _is_leaf(node: Mapping[str, Any]) -> bool:
    return "split_index" not in node


def _expected_values(node: dict[str, Any], expected: dict[int, float]) -> tuple[float, float]:
    """Fill ``expected`` (by ``id(node)``) with every node's cover-weighted mean leaf value.

    Returns the node's (expected value, cover). Covers are the training rows per node, as
    LightGBM's TreeSHAP uses them, so the table's bias equals ``pred_contrib``'s.
    """
    if _is_leaf(node):
        value, cover = float(node["leaf_value"]), float(node.get("leaf_count", 0))
    else:
        left, left_cover = _expected_values(node["left_child"], expected)
        right, right_cover = _expected_values(node["right_child"], expected)
        cover = left_cover + right_cover
        value = (
            (left * left_cover + right * right_cover) / cover if cover > 0 else (left + right) / 2
        )
    expected[id(node)] = value
    return value, cover


def saabas_table(booster: lgb.Booster) -> LeafTable:
    """Path contributions of every leaf (Saabas 2014), from the booster's structure.

    For the path ``root = n_0 -> ... -> n_d = leaf``, the feature split at ``n_k`` gets
    ``E[n_{k+1}] - E[n_k]``, ``E`` being the cover-weighted mean leaf value below a node.

    Raises:
        ContributionError: The booster has linear trees or several trees per iteration.
    """
    model = booster.dump_model()
    _check_explainable(booster, model)
    n_features = booster.num_feature()
    trees = model["tree_info"]
    counts = [int(tree["num_leaves"]) for tree in trees]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    values = np.zeros((offsets[-1], n_features), dtype=np.float64)
    bias = 0.0
    for t, tree in enumerate(trees):
        root = tree["tree_structure"]
        expected: dict[int, float] = {}
        bias += _expected_values(root, expected)[0]
        # iterative walk: (node, contribution vector so far)
        stack: list[tuple[dict[str, Any], np.ndarray]] = [(root, np.zeros(n_features))]
        while stack:
            node, path = stack.pop()
            if _is_leaf(node):
                if "leaf_coeff" in node:
                    raise ContributionError(_LINEAR_TREES)
                values[offsets[t] + int(node.get("leaf_index", 0))] = path
                continue
            feature = int(node["split_feature"])
            for side in ("left_child", "right_child"):
                child = node[side]
                step = path.copy()
                step[feature] += expected[id(child)] - expected[id(node)]
                stack.append((child, step))
    return LeafTable(kind="saabas", offsets=offsets, values=values, bias=bias)


def fit_leaf_shap_table(
    booster: lgb.Booster,
    matrix: np.ndarray,
    *,
    max_rows: int = LEAF_SHAP_ROWS,
    seed: int = 0,
    num_threads: int = 1,
) -> LeafTable:
    """Per leaf, the mean TreeSHAP vector of that tree over the training rows reaching it.

    Leaves no sampled row reaches keep their path contributions (:func:`saabas_table`).

    Args:
        booster: The trained booster.
        matrix: Its training matrix (:meth:`model.gbm.FeatureEncoding.matrix`).
        max_rows: Rows to average at most (a seeded sample without replacement).
        seed: Seed of the sample.
        num_threads: LightGBM threads for the per-tree TreeSHAP.

    Returns:
        The table (``kind="leaf_shap"``); the cost is TreeSHAP on ``max_rows`` rows.

    Raises:
        ContributionError: The booster has linear trees or several trees per iteration.
        ValueError: ``max_rows`` < 1.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    path = saabas_table(booster)
    rows = matrix.shape[0]
    if rows > max_rows:
        chosen = np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))
        matrix = matrix[chosen]
    if matrix.shape[0] == 0:
        return LeafTable("leaf_shap", path.offsets, path.values, path.bias, fitted_rows=0)
    leaves = leaf_indices(booster, matrix, num_threads=num_threads) + path.offsets[:-1]
    sums = np.zeros_like(path.values)
    counts = np.zeros(path.values.shape[0], dtype=np.int64)
    for t in range(path.n_trees):
        per_tree = booster.predict(
            matrix, pred_contrib=True, start_iteration=t, num_iteration=1, num_threads=num_threads
        )
        np.add.at(sums, leaves[:, t], np.asarray(per_tree, dtype=np.float64)[:, :-1])
        counts += np.bincount(leaves[:, t], minlength=counts.size)
    seen = counts > 0
    values = path.values.copy()
    values[seen] = sums[seen] / counts[seen, None]
    logger.info(
        "leaf-SHAP table: %d of %d leaves seen by %d training rows",
        int(seen.sum()),
        counts.size,
        matrix.shape[0],
    )
    return LeafTable(
        kind="leaf_shap",
        offsets=path.offsets,
        values=values,
        bias=path.bias,
        fitted_rows=int(matrix.shape[0]),
    )
