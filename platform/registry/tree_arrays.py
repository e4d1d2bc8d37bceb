"""The serving form of tree-ensemble models: flat numpy arrays, fast to load and to predict.

A model's artifact (XGBoost JSON, or a joblib pickle of a scikit-learn forest) is slow to load
and, through its own library, slow to score one row at a time. So when a model is stored, the
store also writes this form beside it (`FILE`), built once by `from_artifact`. The scorer
memory-maps it (`load`: no parsing, no copy) and predicts with a handful of numpy calls.

How a row is scored (this is what the layout is for):

1. Every split is one *condition* `xa[slot] >= threshold` on `xa = [x, -x]` in float32. A node
   whose missing value goes right tests the negated feature against a nudged threshold
   (`x < t` is `-x >= nextafter(-t, inf)`) with its children swapped, so NaN, for which every
   comparison is False, always takes the false branch, the node's default. The ensemble's
   distinct conditions are evaluated at once: `np.repeat(xa, counts) >= thresholds`.
2. Trees are walked three levels per *step*. A step's start node has a row of 8 condition
   indices (its subtree in heap order; missing nodes and the padding point at an
   always-false condition); gathering those bits for all trees and `np.packbits` gives one
   byte per tree, `EXIT` maps the byte to which of the 8 depth-3 descendants the walk
   reaches, and the step's table gives that descendant's row in the next step. Leaves point
   to themselves, so every tree takes the same number of steps and nothing branches per tree.
   The last step's table holds leaf values, which are summed with the base margin.

That is ~20 numpy calls per row whatever the number of trees (three levels per step instead
of one cuts the calls about threefold against a plain level-by-level walk).

File layout (`dumps`): 8-byte magic, the header's length (uint64 LE), a JSON header (format,
n_features, base margin, link, whether NaN is accepted, and each array's name, dtype, shape
and offset from the start of the arrays), then the arrays, raw little-endian, each 64-byte
aligned. No timestamps: the same model gives the same bytes. Loading checks the header, the
arrays' dtypes and shapes and the total size, not the arrays' contents (which would mean
reading them all; numpy's take still bounds-checks every index at predict time).
"""

import dataclasses
import io
import json
import math
import mmap

import numpy as np

FORMAT = "tree-arrays-v1"
FILE = "serving.trees"

MAX_DEPTH = 15  # deeper trees carry early leaves through many steps: the tables would bloat

_MAGIC = b"TREEARR\x01"
_ALIGN = 64
_LEVELS = 3  # tree levels walked per step
_WIDTH = 2 ** _LEVELS  # condition slots and exits per step row (7 conditions + 1 padding)
_LINKS = ("sigmoid", "identity")
_CHUNK = 2 ** 18  # elements of the (rows, trees, 8) intermediates per chunk of rows

# Artifact formats, as named by roundhouse.platform.registry.artifacts.
_XGBOOST_JSON = "xgboost-json"
_JOBLIB = "joblib"


class UnsupportedModel(TypeError, ValueError):
    """The model is valid but has no serving form (its kind, objective, splits or depth);
    callers fall back to the artifact. A TypeError for the wrong kind of estimator and a
    ValueError for an unsupported model of the right kind: this is both."""


def _exit_table() -> np.ndarray:
    """The exit (0..7) of a 3-level walk for each byte that np.packbits gives: bit 7-p is the
    condition at heap position p (children of p at 2p+1 false, 2p+2 true)."""
    exits = np.empty(256, np.intp)
    for byte in range(256):
        p = 0
        for _ in range(_LEVELS):
            p = 2 * p + 1 + ((byte >> (7 - p)) & 1)
        exits[byte] = p - (_WIDTH - 1)
    return exits


EXIT = _exit_table()


@dataclasses.dataclass(frozen=True, eq=False)
class TreeEnsemble:
    """A binary classifier's tree ensemble in serving form: P(class 1) = link(base_margin +
    sum of the trees' leaf values). Immutable; safe to share between threads."""

    n_features: int
    base_margin: float
    link: str  # "sigmoid" (boosting) or "identity" (forests: leaves hold class-1 fraction / n_trees)
    allows_missing: bool  # False: NaN is refused, as the source library refuses it
    counts: np.ndarray  # int64 (2 n_features,): conditions per slot of xa = [x, -x]
    thresholds: np.ndarray  # float32 (n_conditions,), grouped by slot; the last is NaN: always false
    conds: tuple  # per step: int64 (rows, 8) condition indices of the row's subtree, heap order
    tables: tuple  # per step: (rows, 8) next-step row per exit, int64; the last step: leaf values, float64
    _flat_conds0: np.ndarray = dataclasses.field(init=False, repr=False)
    _base0: np.ndarray = dataclasses.field(init=False, repr=False)
    _flat_tables: tuple = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        _check(self)
        for a in (self.counts, self.thresholds, *self.conds, *self.tables):
            a.flags.writeable = False
        set_ = object.__setattr__  # derived views, made once here because the class is frozen
        set_(self, "_flat_conds0", self.conds[0].reshape(-1))
        set_(self, "_base0", np.arange(self.n_trees, dtype=np.intp) * _WIDTH)
        set_(self, "_flat_tables", tuple(t.reshape(-1) for t in self.tables))

    @property
    def n_trees(self) -> int:
        return self.conds[0].shape[0]

    def predict_one(self, x: np.ndarray) -> float:
        """P(class 1) for one row (1-D, n_features; NaN = missing): the single-row fast path."""
        x = np.asarray(x, np.float32)
        if x.shape != (self.n_features,):
            raise ValueError(f"predict_one takes one row of {self.n_features} features, got shape {x.shape}")
        if not self.allows_missing and np.isnan(x).any():
            raise ValueError("this model does not accept missing values (NaN), as its library refuses them")
        c = np.repeat(np.concatenate((x, -x)), self.counts) >= self.thresholds
        tables = self._flat_tables
        at = self._base0 + EXIT.take(np.packbits(c.take(self._flat_conds0)))
        for step in range(1, len(tables)):
            row = tables[step - 1].take(at)
            at = (row << _LEVELS) + EXIT.take(np.packbits(c.take(self.conds[step].take(row, axis=0))))
        margin = self.base_margin + float(np.add.reduce(tables[-1].take(at)))
        if self.link == "identity":
            return margin
        if margin >= 0:
            return 1.0 / (1.0 + math.exp(-margin))
        e = math.exp(margin)  # this side of the sigmoid neither overflows nor loses small values
        return e / (1.0 + e)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(class 1) for each row of X (n, n_features; NaN = missing), shape (n,)."""
        X = np.asarray(X, np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"predict_proba takes rows of {self.n_features} features, got shape {X.shape}")
        if not self.allows_missing and np.isnan(X).any():
            raise ValueError("this model does not accept missing values (NaN), as its library refuses them")
        chunk = max(1, _CHUNK // (self.n_trees * _WIDTH))
        margin = np.concatenate([self._margins(X[i:i + chunk]) for i in range(0, len(X), chunk)]
                                or [np.empty(0)])
        if self.link == "identity":
            return margin
        return np.exp(-np.logaddexp(0.0, -margin))  # the sigmoid, without overflow

    def _margins(self, X):
        """predict_one's walk for a block of rows: each row gathers from its own conditions."""
        n, n_trees = len(X), self.n_trees
        c = np.repeat(np.concatenate((X, -X), axis=1), self.counts, axis=1) >= self.thresholds
        tables = self._flat_tables
        at = self._base0 + EXIT.take(np.packbits(c.take(self._flat_conds0, axis=1))).reshape(n, n_trees)
        row_start = (np.arange(n, dtype=np.intp) * c.shape[1])[:, None, None]
        c = c.reshape(-1)
        for step in range(1, len(tables)):
            row = tables[step - 1].take(at)
            index = self.conds[step].take(row, axis=0)
            index += row_start  # in place: a second temporary this size costs more than the add
            bits = c.take(index)
            at = (row << _LEVELS) + EXIT.take(np.packbits(bits)).reshape(n, n_trees)
        return self.base_margin + tables[-1].take(at).sum(axis=1)


def _check(ens):
    """Raises ValueError unless the arrays fit together (dtypes, shapes): the load-time check."""
    n_steps = len(ens.conds)
    if ens.link not in _LINKS:
        raise ValueError(f"unknown link {ens.link!r}; known: {', '.join(_LINKS)}")
    if n_steps == 0 or len(ens.tables) != n_steps:
        raise ValueError(f"need one table per step and at least one step, got {n_steps} steps "
                         f"and {len(ens.tables)} tables")
    _expect("counts", ens.counts, np.int64, (2 * ens.n_features,))
    _expect("thresholds", ens.thresholds, np.float32, (int(ens.counts.sum()),))
    for step, (conds, table) in enumerate(zip(ens.conds, ens.tables)):
        rows = conds.shape[0] if conds.ndim == 2 else -1
        _expect(f"conds.{step}", conds, np.int64, (rows, _WIDTH))
        _expect(f"table.{step}", table, np.float64 if step == n_steps - 1 else np.int64, (rows, _WIDTH))


def _expect(name, a, dtype, shape):
    if a.dtype != dtype or a.shape != shape:
        raise ValueError(f"array {name} is {a.dtype}{list(a.shape)}, expected {np.dtype(dtype)}{list(shape)}")


# --- Building: every converter gives the same node arrays to _compile. ------------------------


@dataclasses.dataclass
class _Nodes:
    """All trees' nodes, numbered across the ensemble. Internal node i goes right iff
    float32 x[feature[i]] >= threshold[i]; NaN goes left iff default_left[i]. Leaves have
    left == right == -1 and their value in value[i]."""

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray  # float32
    left: np.ndarray
    right: np.ndarray
    default_left: np.ndarray  # bool
    value: np.ndarray  # float64


def _concat_trees(trees) -> _Nodes:
    """Numbers the nodes of trees (each a tuple of _Nodes fields without roots) across the
    ensemble: tree t's node j becomes offset_t + j."""
    sizes = [len(t[0]) for t in trees]
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.intp)
    fields = list(zip(*trees))

    def children(arrays):
        return np.concatenate([np.where(a < 0, -1, a + off) for a, off in zip(arrays, offsets)]).astype(np.intp)

    return _Nodes(roots=offsets, feature=np.concatenate(fields[0]).astype(np.intp),
                  threshold=np.concatenate(fields[1]).astype(np.float32),
                  left=children(fields[2]), right=children(fields[3]),
                  default_left=np.concatenate(fields[4]).astype(bool),
                  value=np.concatenate(fields[5]).astype(np.float64))


def _compile(nodes: _Nodes, n_features: int, base_margin: float, link: str, allows_missing: bool) -> TreeEnsemble:
    _validate(nodes, n_features)
    slot, thr, true_child, false_child = _orient(nodes, n_features)
    cond, counts, thresholds = _conditions(slot, thr, nodes.left >= 0, n_features)
    conds, tables = _steps(nodes, true_child, false_child, cond, never=len(thresholds) - 1)
    return TreeEnsemble(n_features=n_features, base_margin=float(base_margin), link=link,
                        allows_missing=allows_missing, counts=counts, thresholds=thresholds,
                        conds=conds, tables=tables)


def _validate(nodes, n_features):
    n, internal = len(nodes.feature), nodes.left >= 0
    if (nodes.right[internal] < 0).any() or (np.maximum(nodes.left, nodes.right) >= n).any():
        raise ValueError("malformed trees: a child index is missing or out of range")
    if ((nodes.feature[internal] < 0) | (nodes.feature[internal] >= n_features)).any():
        raise ValueError(f"malformed trees: a split uses a feature outside 0..{n_features - 1}")
    # An infinite threshold is fine: scikit-learn splits NaN from all values at +inf.
    if np.isnan(nodes.threshold[internal]).any():
        raise ValueError("malformed trees: a split threshold is NaN")


def _orient(nodes, n_features):
    """Each node's condition (slot of xa, threshold) and the child it goes to when the
    condition is true or false. Default-left nodes test x >= t (NaN: false, left);
    default-right ones test -x >= nextafter(-t, inf), i.e. x < t (NaN: false, right), with
    their children swapped. Leaves go to themselves either way."""
    dl, leaf = nodes.default_left, nodes.left < 0
    slot = np.where(dl, nodes.feature, nodes.feature + n_features)
    thr = np.where(dl, nodes.threshold, np.nextafter(-nodes.threshold, np.float32(np.inf))).astype(np.float32)
    self_ = np.arange(len(leaf), dtype=np.intp)
    true_child = np.where(leaf, self_, np.where(dl, nodes.right, nodes.left))
    false_child = np.where(leaf, self_, np.where(dl, nodes.left, nodes.right))
    return slot, thr, true_child, false_child


def _conditions(slot, thr, internal, n_features):
    """The distinct conditions, grouped by slot (np.repeat fills xa's slots in order), then
    the always-false one (threshold NaN, last in the last slot's group). Returns each node's
    condition index (leaves: the always-false one), the counts per slot and the thresholds."""
    key = (slot.astype(np.int64) << 32) | thr.view(np.uint32).astype(np.int64)
    unique, cond_of = np.unique(key[internal], return_inverse=True)
    cond = np.full(len(slot), len(unique), np.intp)
    cond[internal] = cond_of.reshape(-1)
    counts = np.bincount(unique >> 32, minlength=2 * n_features).astype(np.int64)
    counts[-1] += 1
    thresholds = np.append((unique & 0xFFFFFFFF).astype(np.uint32).view(np.float32), np.float32(np.nan))
    return cond, counts, thresholds


def _steps(nodes, true_child, false_child, cond, never):
    """Per step, the condition rows and the exit tables of the nodes where walks can be
    (padding: `never`, the always-false condition)."""
    n_steps = max(1, math.ceil(_depth(nodes.roots, true_child, false_child, nodes.left < 0) / _LEVELS))
    conds, tables = [], []
    rows = nodes.roots
    for step in range(n_steps):
        heap = _heap(rows, true_child, false_child)
        padding = np.full((len(rows), 1), never, np.intp)
        conds.append(np.concatenate((cond[heap], padding), axis=1).astype(np.int64))
        exits = _exits(heap, true_child, false_child)
        if step == n_steps - 1:  # every walk has reached its leaf
            tables.append(nodes.value[exits])
        else:
            rows = np.unique(exits)
            tables.append(np.searchsorted(rows, exits).astype(np.int64))
    return tuple(conds), tuple(tables)


def _depth(roots, true_child, false_child, leaf) -> int:
    """Levels of splits on the longest root-to-leaf path (0 when every tree is a leaf)."""
    frontier = roots[~leaf[roots]]
    for depth in range(MAX_DEPTH + 1):
        if len(frontier) == 0:
            return depth
        children = np.concatenate((true_child[frontier], false_child[frontier]))
        frontier = children[~leaf[children]]
    raise UnsupportedModel(f"trees deeper than {MAX_DEPTH} levels (or cyclic) have no serving form")


def _heap(rows, true_child, false_child):
    """(rows, 7): each row's 3-level subtree in heap order (children of p: 2p+1 false, 2p+2 true)."""
    heap = np.empty((len(rows), _WIDTH - 1), np.intp)
    heap[:, 0] = rows
    for p in range(_WIDTH // 2 - 1):
        heap[:, 2 * p + 1] = false_child[heap[:, p]]
        heap[:, 2 * p + 2] = true_child[heap[:, p]]
    return heap


def _exits(heap, true_child, false_child):
    """(rows, 8): the node reached after 3 levels, exit e being heap position 7 + e."""
    last = heap[:, _WIDTH // 2 - 1:]  # heap positions 3..6
    return np.stack([false_child[last], true_child[last]], axis=2).reshape(len(heap), _WIDTH)


# --- Converters -----------------------------------------------------------------------------


def from_xgboost_json(data: bytes) -> TreeEnsemble:
    """From XGBoost's JSON model (booster.save_raw("json")) of a binary:logistic gbtree.
    Parsed here, without xgboost. Like XGBClassifier.predict_proba, a model trained with early
    stopping predicts with the trees up to its best iteration."""
    try:
        learner = json.loads(data)["learner"]
        objective = learner["objective"]["name"]
        booster = learner["gradient_booster"]
        params = learner["learner_model_param"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"not an XGBoost JSON model: {type(e).__name__}: {e}") from None
    if objective != "binary:logistic":
        raise UnsupportedModel(f"XGBoost objective {objective!r}: only binary:logistic has a serving form")
    if booster.get("name") != "gbtree":
        raise UnsupportedModel(f"XGBoost booster {booster.get('name')!r}: only gbtree has a serving form")
    if int(params.get("num_target", 1)) != 1:
        raise UnsupportedModel("XGBoost multi-target models have no serving form")
    n_features = int(params["num_feature"])
    model = booster["model"]
    trees = model["trees"][:_xgboost_tree_count(learner, model)]
    nodes = _concat_trees([_xgboost_tree(t, i) for i, t in enumerate(trees)])
    return _compile(nodes, n_features, _logit(_xgboost_base_score(params["base_score"])),
                    link="sigmoid", allows_missing=True)


def _xgboost_tree(tree, index):
    if any(tree["split_type"]):
        raise UnsupportedModel(f"XGBoost tree {index} has categorical splits; only numerical ones have a serving form")
    if int(tree["tree_param"].get("size_leaf_vector", 1)) > 1:
        raise UnsupportedModel(f"XGBoost tree {index} has vector leaves")
    left = np.asarray(tree["left_children"], np.intp)
    cond = np.asarray(tree["split_conditions"], np.float64)
    # A leaf's value is its split_condition, as XGBoost's own loader reads it.
    return (np.asarray(tree["split_indices"], np.intp), cond.astype(np.float32), left,
            np.asarray(tree["right_children"], np.intp), np.asarray(tree["default_left"], bool),
            np.where(left < 0, cond.astype(np.float32), 0.0))


def _xgboost_tree_count(learner, model) -> int:
    """Trees that XGBClassifier.predict_proba uses: those up to attributes.best_iteration."""
    best = learner.get("attributes", {}).get("best_iteration")
    if best is None:
        return len(model["trees"])
    return int(model["iteration_indptr"][int(best) + 1])


def _xgboost_base_score(text: str) -> float:
    """XGBoost 3 writes base_score as a vector ("[5E-1]"), older versions as a number."""
    values = [float(v) for v in str(text).strip("[]").split(",")]
    if len(values) != 1:
        raise UnsupportedModel(f"XGBoost base_score {text!r} has {len(values)} values; expected one")
    return values[0]


def _logit(p: float) -> float:
    if not 0.0 < p < 1.0:
        raise ValueError(f"base score {p} is not a probability strictly between 0 and 1")
    return math.log(p / (1.0 - p))


_FORESTS = ("RandomForestClassifier", "ExtraTreesClassifier")
_BOOSTING = "GradientBoostingClassifier"


def from_sklearn(model) -> TreeEnsemble:
    """From a fitted binary scikit-learn RandomForestClassifier, ExtraTreesClassifier or
    GradientBoostingClassifier (or a subclass). Anything else: UnsupportedModel (a TypeError)."""
    kind = _sklearn_kind(model)
    if kind is None:
        raise UnsupportedModel(f"{type(model).__module__}.{type(model).__qualname__} has no serving form; "
                               f"supported: scikit-learn {', '.join(_FORESTS)}, {_BOOSTING}")
    if not hasattr(model, "estimators_"):
        raise ValueError(f"the {kind} is not fitted")
    if len(model.classes_) != 2 or getattr(model, "n_outputs_", 1) != 1:
        raise UnsupportedModel(f"only binary classifiers have a serving form; this {kind} has "
                               f"{len(model.classes_)} classes")
    n_features = int(model.n_features_in_)
    if kind == _BOOSTING:
        return _from_gradient_boosting(model, n_features)
    n_trees = len(model.estimators_)
    nodes = _concat_trees([_sklearn_tree(e.tree_, _class1_fraction(e.tree_) / n_trees) for e in model.estimators_])
    return _compile(nodes, n_features, 0.0, link="identity", allows_missing=True)


def _sklearn_kind(model):
    """The supported class that model is an instance of, matched by name through its class
    hierarchy so that this module need not import scikit-learn."""
    for cls in type(model).__mro__:
        if cls.__module__.startswith("sklearn.ensemble") and cls.__name__ in (*_FORESTS, _BOOSTING):
            return cls.__name__
    return None


def _from_gradient_boosting(model, n_features):
    if model.loss != "log_loss":
        raise UnsupportedModel(f"GradientBoostingClassifier loss {model.loss!r}: only log_loss has a serving form")
    init = model.init_
    constant = init == "zero" or (type(init).__name__ == "DummyClassifier"
                                  and init.strategy in ("prior", "most_frequent", "constant"))
    if not constant:
        raise UnsupportedModel(f"GradientBoostingClassifier init {init!r}: only a constant initial "
                               "prediction ('zero' or a DummyClassifier) has a serving form")
    # The initial log-odds exactly as scikit-learn computes them (clipped logit of the prior).
    base = float(model._raw_predict_init(np.zeros((1, n_features), np.float32))[0, 0])
    rate = float(model.learning_rate)
    trees = [_sklearn_tree(e.tree_, rate * e.tree_.value[:, 0, 0]) for e in model.estimators_[:, 0]]
    # scikit-learn refuses NaN for gradient boosting, so this does too.
    return _compile(_concat_trees(trees), n_features, base, link="sigmoid", allows_missing=False)


def _class1_fraction(tree):
    value = tree.value[:, 0, :]
    return value[:, 1] / value.sum(axis=1)


def _sklearn_tree(tree, leaf_value):
    """scikit-learn goes left iff float64(float32 x) <= threshold, i.e. right iff x >= the
    smallest float32 above the threshold. NaN follows missing_go_to_left (set for every node:
    without NaN in training it is the child that had more samples)."""
    t64 = tree.threshold
    t32 = t64.astype(np.float32)
    above = np.where(t32.astype(np.float64) > t64, t32, np.nextafter(t32, np.float32(np.inf)))
    left = tree.children_left.astype(np.intp)
    return (np.where(left < 0, 0, tree.feature), np.where(left < 0, 0, above), left,
            tree.children_right.astype(np.intp), np.asarray(tree.missing_go_to_left, bool),
            np.where(left < 0, leaf_value, 0.0))


def from_artifact(data: bytes, fmt: str) -> TreeEnsemble | None:
    """The serving form of a stored artifact (bytes and format as artifacts.serialize gives
    them), or None if the model has none (another format, an unsupported model)."""
    try:
        if fmt == _XGBOOST_JSON:
            return from_xgboost_json(data)
        if fmt == _JOBLIB:
            import joblib  # only joblib artifacts need it
            return from_sklearn(joblib.load(io.BytesIO(data)))
    except UnsupportedModel:
        return None
    return None  # another format (meta-json, ...): no trees


# --- Bytes and files --------------------------------------------------------------------------


def _arrays(ens):
    """(name, array) in file order."""
    named = [("counts", ens.counts), ("thresholds", ens.thresholds)]
    for step, (conds, table) in enumerate(zip(ens.conds, ens.tables)):
        named += [(f"conds.{step}", conds), (f"table.{step}", table)]
    return named


def _aligned(n):
    return -(-n // _ALIGN) * _ALIGN


def dumps(ens: TreeEnsemble) -> bytes:
    """The serving form's bytes; the same model always gives the same bytes."""
    named = _arrays(ens)
    entries, offset = [], 0  # offsets count from the start of the arrays, after the header
    for name, a in named:
        entries.append({"name": name, "dtype": a.dtype.newbyteorder("<").str, "shape": list(a.shape),
                        "offset": offset})
        offset = _aligned(offset + a.nbytes)
    header = {"format": FORMAT, "n_features": ens.n_features, "base_margin": ens.base_margin,
              "link": ens.link, "allows_missing": ens.allows_missing, "arrays": entries,
              "arrays_size": offset}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    start = _aligned(16 + len(text))
    out = bytearray(start + offset)
    out[:16] = _MAGIC + len(text).to_bytes(8, "little")
    out[16:16 + len(text)] = text
    for entry, (_, a) in zip(entries, named):
        at = start + entry["offset"]
        out[at:at + a.nbytes] = np.ascontiguousarray(a, dtype=entry["dtype"]).tobytes()
    return bytes(out)


def loads(data: bytes | memoryview) -> TreeEnsemble:
    """The ensemble in data (from dumps), its arrays zero-copy views of data."""
    header, start = _header(data)
    try:
        arrays = {}
        for entry in header["arrays"]:
            dtype, shape = np.dtype(entry["dtype"]), tuple(entry["shape"])
            count, at = math.prod(shape), start + entry["offset"]
            if count < 0 or entry["offset"] < 0 or at + count * dtype.itemsize > len(data):
                raise ValueError(f"array {entry['name']} does not lie within the data")
            arrays[entry["name"]] = np.frombuffer(data, dtype, count, at).reshape(shape)
        n_steps = sum(name.startswith("conds.") for name in arrays)
        return TreeEnsemble(
            n_features=int(header["n_features"]), base_margin=float(header["base_margin"]),
            link=header["link"], allows_missing=bool(header["allows_missing"]),
            counts=arrays["counts"], thresholds=arrays["thresholds"],
            conds=tuple(arrays[f"conds.{s}"] for s in range(n_steps)),
            tables=tuple(arrays[f"table.{s}"] for s in range(n_steps)))
    except (KeyError, TypeError) as e:
        raise ValueError(f"corrupt {FORMAT} header: {type(e).__name__}: {e}") from None


def _header(data) -> tuple[dict, int]:
    """The header and where the arrays start; ValueError unless data has exactly their size."""
    if len(data) < 16 or bytes(data[:8]) != _MAGIC:
        raise ValueError(f"not a {FORMAT} file: bad magic (a truncated or foreign file)")
    length = int.from_bytes(data[8:16], "little")
    if 16 + length > len(data):
        raise ValueError(f"truncated: the header needs {16 + length} bytes, the data has {len(data)}")
    try:
        header = json.loads(bytes(data[16:16 + length]))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"corrupt {FORMAT} header: {e}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file: its header names format "
                         f"{header.get('format') if isinstance(header, dict) else None!r}")
    start = _aligned(16 + length)
    size = header.get("arrays_size")
    if not isinstance(size, int) or start + size != len(data):
        raise ValueError(f"truncated or padded: the header promises {start}+{size} bytes, "
                         f"the data has {len(data)}")
    return header, start


def load(path: str) -> TreeEnsemble:
    """The ensemble in a local file, memory-mapped: pages are read as predictions touch them."""
    with open(path, "rb") as f:
        size = f.seek(0, io.SEEK_END)
        if size == 0:
            raise ValueError(f"{path}: empty file, not a {FORMAT} file")
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return loads(mapped)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
