"""Tree by tree: exact reason contributions and grouped permutation importance at the cost of a prediction.

A reason unit's contribution is the change in log-odds when the unit's features are moved to their
typical value (models/score.py). Done naively that is one full prediction per unit. Each tree of the
boosted model reads only a few features, so only the trees that read a unit change when it moves:

    contribution(u) = sum over trees t that read u of  tree_t(x) - tree_t(x with u typical)

and a tree that reads nothing but u gives `tree_t(typical)`, one number for every customer. The same
holds for shuffling a unit (permutation importance). Rows are mapped to the model's bins and handled in
chunks that stay in cache. A small tree (the model's have four leaves) becomes a table: each of its
splits is one bit of a row's code (goes left or not, scikit-learn's rule with missing values and
category sets), found by comparing a contiguous column of bins, and the code leads to the leaf. Moving a
unit to its typical value fixes the bits of the splits on its columns, so a unit's contribution to a
tree is a second table over the same codes (the output minus the moved output, subtracted once per code
instead of once per row). Larger trees go through scikit-learn's own predictor. Either way the numbers
are the model's, bit for bit (a test checks them against the Pipeline and the naive perturbation).
This reads scikit-learn's fitted internals (`_predictors`, `_preprocessor`, `_bin_mapper`, the nodes
and category bitsets of each tree); the registry only loads a model under the scikit-learn version that
wrote it, which keeps them stable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

CHUNK_ROWS = 16384
#: Rows per chunk when trees are read as tables (the codes and outputs of a chunk stay in cache).
COLUMN_CHUNK_ROWS = 65536
#: Trees with at most this many leaves are read as tables (2^(leaves - 1) codes); larger ones row by row.
SMALL_TREE_LEAVES = 8
#: Rows prepared at a time (the prepared floats of a million rows would take a gigabyte at once).
BLOCK_ROWS = 200_000


class SmallTree:
    """One fitted tree as a table from its split decisions to its leaf values.

    Split j of the tree sets bit j of a row's code when the row goes left there; the leaf a code leads to
    is found once, by walking the tree, for every code. Evaluating the tree on many rows is then a few
    comparisons of contiguous byte columns and one look-up, and fixing some decisions (a unit moved to
    its typical value) is a second table over the same codes.
    """

    def __init__(self, predictor, missing_bin: int) -> None:
        nodes = predictor.nodes
        self.splits = [i for i in range(len(nodes)) if not nodes[i]["is_leaf"]]
        self.features = [int(nodes[i]["feature_idx"]) for i in self.splits]
        self.missing_bin = missing_bin
        self.rules: list[tuple[int, bool] | np.ndarray] = []
        bins = np.arange(256)
        for i in self.splits:
            node = nodes[i]
            left_if_missing = bool(node["missing_go_to_left"])
            if node["is_categorical"]:
                words = np.asarray(predictor.binned_left_cat_bitsets[node["bitset_idx"]], dtype=np.uint64)
                table = ((words[bins >> 5] >> (bins & 31).astype(np.uint64)) & 1).astype(bool)
                table[missing_bin] = left_if_missing
                self.rules.append(table)
            else:
                self.rules.append((int(node["bin_threshold"]), left_if_missing))
        position = {node: j for j, node in enumerate(self.splits)}

        def leaf(code: int) -> float:
            i = 0
            while not nodes[i]["is_leaf"]:
                i = int(nodes[i]["left"] if code >> position[i] & 1 else nodes[i]["right"])
            return float(nodes[i]["value"])

        self.values = np.array([leaf(c) for c in range(2 ** len(self.splits))], dtype=np.float64)

    def goes_left(self, j: int, column: np.ndarray | int) -> np.ndarray:
        """Whether rows with these bin values go left at split j (scikit-learn's rule, missing values first)."""
        rule = self.rules[j]
        if isinstance(rule, np.ndarray):
            return rule.take(column)
        threshold, left_if_missing = rule
        go = column <= threshold
        if left_if_missing:
            go |= column == self.missing_bin
        elif threshold >= self.missing_bin:
            go &= column != self.missing_bin
        return go

    def codes(self, columns: np.ndarray) -> np.ndarray:
        """Each row's code (`columns`: binned rows, one contiguous row per feature)."""
        code = np.zeros(columns.shape[1], dtype=np.intp)
        for j, f in enumerate(self.features):
            go = self.goes_left(j, columns[f]).view(np.uint8)
            code |= (go << j) if j else go  # j < 8: SMALL_TREE_LEAVES keeps the shifted byte exact
        return code

    def with_fixed(self, reference: np.ndarray, features: Sequence[int]) -> np.ndarray:
        """Leaf values by code when the splits on `features` decide as for the reference row (1 x features)."""
        cols = set(features)
        mask = const = 0
        for j, f in enumerate(self.features):
            if f in cols:
                mask |= 1 << j
                const |= int(bool(self.goes_left(j, int(reference[0, f])))) << j
        codes = np.arange(len(self.values))
        return self.values[(codes & ~mask) | const]


@dataclass
class TreeView:
    """The fitted pieces of a ChurnModel's gradient boosting, seen tree by tree."""

    hgb: object
    prepare: object
    """The Pipeline steps before the estimator (column preparation)."""
    feature_names: list[str]
    """The estimator's input columns in the order its trees index them."""
    tree_units: list[tuple[str, ...]]
    """The reason units each tree reads."""
    units: dict[str, list[str]]

    @classmethod
    def of(cls, model) -> TreeView:
        pipe = model.pipeline
        hgb = pipe.named_steps["model"]
        names_in = list(hgb.feature_names_in_)
        pre = getattr(hgb, "_preprocessor", None)
        if pre is None:
            order = names_in
        else:
            order = []
            for name, _t, cols in pre.transformers_:
                if name == "remainder" and _t == "drop":
                    continue
                cols = np.asarray(cols)
                idx = np.flatnonzero(cols) if cols.dtype == bool else cols.astype(int)
                order += [names_in[i] for i in idx]
        unit_of = {f.name: f.reason for f in model.features}
        units: dict[str, list[str]] = {}
        for f in model.features:
            units.setdefault(f.reason, []).append(f.name)
        tree_units = []
        for (pred,) in hgb._predictors:
            nodes = pred.nodes
            used = {order[i] for i in np.unique(nodes["feature_idx"][nodes["is_leaf"] == 0])}
            tree_units.append(tuple(sorted({unit_of[n] for n in used})))
        return cls(hgb=hgb, prepare=pipe[:-1], feature_names=order, tree_units=tree_units, units=units)

    def matrix(self, rows: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
        """The rows as the trees read them: prepared columns in the trees' order, mapped to the model's own
        bins (one byte a value, row after row: eight times less memory to walk than the raw values, and
        the same leaves, since every split threshold is a bin edge)."""
        blocks = []
        for a in range(0, max(len(rows), 1), BLOCK_ROWS):  # blocks bound the float copies in memory
            part = rows.iloc[a:a + BLOCK_ROWS][list(names)]
            X = self.hgb._preprocess_X(self.prepare.transform(part), reset=False)
            blocks.append(self.hgb._bin_mapper.transform(np.asarray(X, dtype=np.float64)))
        return np.ascontiguousarray(np.concatenate(blocks) if len(blocks) > 1 else blocks[0])

    def _predict(self, tree, X: np.ndarray, cats=None) -> np.ndarray:
        return tree.predict_binned(X, self.hgb._bin_mapper.missing_values_bin_idx_, 1)

    def columns_of(self, unit: str) -> list[int]:
        return [self.feature_names.index(c) for c in self.units[unit]]

    def small_trees(self) -> list[SmallTree] | None:
        """The trees as look-up tables when every one is small enough, else None."""
        trees = [p for (p,) in self.hgb._predictors]
        if any(t.get_n_leaf_nodes() > SMALL_TREE_LEAVES for t in trees):
            return None
        missing = int(self.hgb._bin_mapper.missing_values_bin_idx_)
        return [SmallTree(t, missing) for t in trees]

    def contributions(self, X: np.ndarray, reference: np.ndarray, *, chunk: int | None = None
                      ) -> tuple[np.ndarray, pd.DataFrame]:
        """Log-odds of each row, and each unit's contribution against the `reference` row (1 x features)."""
        small = self.small_trees()
        if small is None:
            return self._contributions_by_row(X, reference, chunk=chunk or CHUNK_ROWS)
        chunk = chunk or COLUMN_CHUNK_ROWS
        unit_names = list(self.units)
        col = {u: i for i, u in enumerate(unit_names)}
        # Per tree and unit it reads: by code, the tree's output minus its output with the unit moved.
        deltas = [[(col[u], tree.values - tree.with_fixed(reference, self.columns_of(u))) for u in self.tree_units[t]]
                  for t, tree in enumerate(small)]
        raw = np.full(len(X), float(self.hgb._baseline_prediction.ravel()[0]))
        contrib = np.zeros((len(unit_names), len(X)))  # unit by row: each unit's row is contiguous
        for a in range(0, len(X), chunk):
            columns = np.ascontiguousarray(X[a:a + chunk].T)
            r, c = raw[a:a + chunk], contrib[:, a:a + chunk]
            for t, tree in enumerate(small):
                code = tree.codes(columns)
                r += tree.values.take(code)
                for k, delta in deltas[t]:
                    c[k] += delta.take(code)
        return raw, pd.DataFrame(contrib.T, columns=unit_names)

    def _contributions_by_row(self, X: np.ndarray, reference: np.ndarray, *, chunk: int
                              ) -> tuple[np.ndarray, pd.DataFrame]:
        """`contributions` with scikit-learn's predictor on row-major chunks (for larger trees)."""
        cats = None
        trees = [p for (p,) in self.hgb._predictors]
        unit_names = list(self.units)
        col = {u: i for i, u in enumerate(unit_names)}
        unit_cols = {u: self.columns_of(u) for u in unit_names}
        ref_out = np.array([self._predict(t, reference, cats)[0] for t in trees])
        raw = np.full(len(X), float(self.hgb._baseline_prediction.ravel()[0]))
        contrib = np.zeros((len(X), len(unit_names)))
        for a in range(0, len(X), chunk):
            Xc = X[a:a + chunk]
            moved: dict[str, np.ndarray] = {}
            for t, tree in enumerate(trees):
                out = self._predict(tree, Xc, cats)
                raw[a:a + chunk] += out
                us = self.tree_units[t]
                if len(us) == 1:
                    contrib[a:a + chunk, col[us[0]]] += out - ref_out[t]
                    continue
                for u in us:
                    if u not in moved:
                        m = Xc.copy()
                        m[:, unit_cols[u]] = reference[0, unit_cols[u]]
                        moved[u] = m
                    contrib[a:a + chunk, col[u]] += out - self._predict(tree, moved[u], cats)
        return raw, pd.DataFrame(contrib, columns=unit_names)

    def raw(self, X: np.ndarray, *, chunk: int | None = None) -> np.ndarray:
        """Log-odds of each row (the same numbers as the Pipeline's decision_function, in cache-sized chunks)."""
        raw = np.full(len(X), float(self.hgb._baseline_prediction.ravel()[0]))
        small = self.small_trees()
        if small is not None:
            chunk = chunk or COLUMN_CHUNK_ROWS
            for a in range(0, len(X), chunk):
                columns = np.ascontiguousarray(X[a:a + chunk].T)
                r = raw[a:a + chunk]
                for tree in small:
                    r += tree.values.take(tree.codes(columns))
            return raw
        chunk = chunk or CHUNK_ROWS
        trees = [p for (p,) in self.hgb._predictors]
        for a in range(0, len(X), chunk):
            Xc = X[a:a + chunk]
            for tree in trees:
                raw[a:a + chunk] += self._predict(tree, Xc)
        return raw

    def permuted_raw(self, X: np.ndarray, raw: np.ndarray, unit: str, perm: np.ndarray) -> np.ndarray:
        """Log-odds with the unit's columns shuffled by `perm` (only the trees reading it re-evaluated)."""
        cats = None
        cols = self.columns_of(unit)
        Xp = X.copy()
        Xp[:, cols] = X[perm][:, cols]
        out = raw.copy()
        for t, (tree,) in enumerate(self.hgb._predictors):
            if unit in self.tree_units[t]:
                for a in range(0, len(X), CHUNK_ROWS):
                    out[a:a + CHUNK_ROWS] += (self._predict(tree, Xp[a:a + CHUNK_ROWS], cats)
                                              - self._predict(tree, X[a:a + CHUNK_ROWS], cats))
        return out


def reference_frame(reference: Mapping[str, object], features: Sequence) -> pd.DataFrame:
    """The typical values as a one-row frame typed like the features (missing where most rows lack one)."""
    cols = {}
    for f in features:
        v = reference.get(f.name)
        cols[f.name] = (pd.Series([v], dtype="object") if f.kind == "categorical" else
                        pd.Series([np.nan if v is None else float(v)], dtype="float64"))
    return pd.DataFrame(cols)
