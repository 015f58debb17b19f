"""SpliceAI-10k forward pass in numpy (float32), reading the released Keras weights with h5py.

The five ``spliceai{1..5}.h5`` files of the PyPI package ``spliceai`` (1.3.1) hold the trained
weights and, in their ``model_config`` attribute, the Keras layer graph. :class:`SpliceAIModel`
parses that graph (InputLayer, Conv1D with dilation, BatchNormalization, ReLU, Add, Cropping1D,
final 1x1 Conv1D with softmax) and runs it without TensorFlow.

Exactness: every hidden Conv1D uses ``padding="same"`` and the graph ends with
``Cropping1D(5000, 5000)``, which equals the receptive field (sum of (k - 1) * dilation over the
path = 10,000). Every cropped output therefore depends only on values Keras computes without its
zero padding, so the forward pass here runs each convolution in "valid" mode (computing only the
positions that survive the crop) and gives the same numbers as Keras on the whole input, in
independent chunks of output. A BatchNormalization that directly follows a convolution used by
nothing else is folded into that convolution's weights.

Conventions (as in ``spliceai/utils.py``): one-hot order A, C, G, T; N (and here any other
letter) is all zeros; the output classes are ``[neither, acceptor, donor]``; a minus-strand gene is
reverse-complemented (``x[::-1, ::-1]``) before the model and its output reversed back; the five
models' softmax outputs are averaged.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import ConfigError, InputError

#: Nucleotides of context the model needs on each side of a scored position.
FLANK = 5000
#: Total extra input length: output length = input length - CONTEXT.
CONTEXT = 2 * FLANK
#: SpliceAI's output class order (``y[..., 1]`` acceptor, ``y[..., 2]`` donor in spliceai/utils.py).
CLASS_ORDER: tuple[str, str, str] = ("neither", "acceptor", "donor")
#: Default number of output nucleotides per forward chunk (memory ~ 40 MB per chunk per model).
DEFAULT_CHUNK = 32_768
#: How many rows a convolution processes at once (keeps the working set in cache).
_ROW_BLOCK = 2048

_WEIGHTS_HELP = (
    "SpliceAI weights not found. They ship in the PyPI package 'spliceai' 1.3.1; install only the "
    "weights (not TensorFlow) with:  pip install --no-deps spliceai==1.3.1  "
    "or pass the folder holding spliceai1.h5 .. spliceai5.h5"
)

def _one_hot_table() -> np.ndarray:
    """Byte -> one-hot row, as SpliceAI's ``one_hot_encode`` (spliceai/utils.py) encodes: upper
    case first; A, C, G, T, N -> 1, 2, 3, 4, 0; then every byte is taken as int8 modulo 5, and code
    0 is all zeros, code k the k-th of A, C, G, T. So letters other than ACGTN are not zeros but
    whatever their byte gives: Y (89) -> T, W (87) -> C, R (82) -> C, M (77) -> C, S (83) -> G,
    K (75) -> zeros; the models were trained and are run on that encoding."""
    codes = np.arange(256, dtype=np.uint8)
    lower = (codes >= ord("a")) & (codes <= ord("z"))
    upper = np.where(lower, codes - 32, codes).astype(np.uint8)
    code = upper.view(np.int8).astype(np.int64) % 5  # int8, as np.fromstring(seq, np.int8)
    for letter, value in zip(b"ACGTN", (1, 2, 3, 4, 0)):
        code[upper == letter] = value
    table = np.zeros((256, 4), dtype=np.float32)
    hot = code > 0
    table[np.flatnonzero(hot), code[hot] - 1] = 1.0
    return table


#: ASCII -> one-hot row (A, C, G, T order), SpliceAI's own encoding (:func:`_one_hot_table`).
_ONE_HOT_LUT = _one_hot_table()


def one_hot(sequence: np.ndarray | bytes | str) -> np.ndarray:
    """One-hot encode an ASCII sequence to ``(n, 4)`` float32 in A, C, G, T order, exactly as
    SpliceAI encodes (N -> zeros; other letters by their byte modulo 5: Y -> T, W -> C, ...)."""
    if isinstance(sequence, str):
        sequence = sequence.encode("ascii")
    if isinstance(sequence, (bytes, bytearray)):
        codes = np.frombuffer(sequence, dtype=np.uint8)
    else:
        codes = np.asarray(sequence)
        if codes.dtype != np.uint8:
            raise InputError(f"sequence must be uint8 ASCII codes, got dtype {codes.dtype}")
    return _ONE_HOT_LUT[codes]


def weights_dir() -> Path:
    """The folder holding ``spliceai1.h5`` .. ``spliceai5.h5`` from the installed ``spliceai`` package.

    The package is located without being imported (importing it needs TensorFlow/Keras).
    Raises :class:`~dask_enrich.errors.ConfigError` with install instructions when absent.
    """
    spec = importlib.util.find_spec("spliceai")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(_WEIGHTS_HELP)
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    missing = [p for p in model_paths(folder) if not p.is_file()]
    if missing:
        raise ConfigError(f"{_WEIGHTS_HELP}; missing: {', '.join(map(str, missing))}")
    return folder


def model_paths(folder: str | Path) -> list[Path]:
    """The five weight files in ``folder``, in SpliceAI's order."""
    return [Path(folder) / f"spliceai{i}.h5" for i in range(1, 6)]


@dataclass(frozen=True)
class _Node:
    """One compiled step: ``kind`` in input/conv/bn/relu/add/crop/softmax."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    weight: np.ndarray | None = None  # conv: (k, c_in, c_out)
    bias: np.ndarray | None = None  # conv bias, or BN shift
    scale: np.ndarray | None = None  # BN scale
    dilation: int = 1
    half: int = 0  # context consumed on each side: (k - 1) // 2 * dilation for "same" convs
    crop: tuple[int, int] = (0, 0)
    softmax: bool = False


class SpliceAIModel:
    """One SpliceAI network built from a Keras HDF5 file (graph from ``model_config``)."""

    def __init__(self, nodes: Sequence[_Node], output: str, name: str = "") -> None:
        self.nodes: tuple[_Node, ...] = tuple(nodes)
        self.output = output
        self.name = name
        last_use: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            for src in node.inputs:
                last_use[src] = i
        self._last_use = last_use
        self.context = self._context()

    # ----------------------------------------------------------------------------------- loading
    @classmethod
    def from_h5(cls, path: str | Path, *, fold_bn: bool = True) -> "SpliceAIModel":
        """Parse ``model_config`` and the weights of a Keras 2 HDF5 file into a model."""
        import h5py

        path = Path(path)
        try:
            with h5py.File(path, "r") as f:
                config = json.loads(_as_str(f.attrs["model_config"]))
                weights = f["model_weights"]
                nodes = [_parse_layer(layer, weights) for layer in config["config"]["layers"]]
                outputs = config["config"]["output_layers"]
        except (OSError, KeyError) as exc:
            raise InputError(f"{path}: not a readable Keras SpliceAI weight file ({exc})") from exc
        if len(outputs) != 1:
            raise InputError(f"{path}: expected one output layer, found {len(outputs)}")
        nodes = _toposort(nodes)
        if fold_bn:
            nodes = _fold_batchnorm(nodes)
        return cls(nodes, outputs[0][0], name=path.stem)

    def _context(self) -> tuple[int, int]:
        """(left, right) input positions consumed by the network; checked against the crop."""
        trim: dict[str, tuple[int, int]] = {}
        for node in self.nodes:
            trim[node.name] = self._trim_after(node, [trim[s] for s in node.inputs])
        out = trim[self.output]
        if out != (0, 0):
            raise InputError(
                f"model {self.name}: receptive field does not match its cropping (residual trim {out})"
            )
        total_crop = [0, 0]
        for node in self.nodes:
            if node.kind == "crop":
                total_crop[0] += node.crop[0]
                total_crop[1] += node.crop[1]
        return total_crop[0], total_crop[1]

    @staticmethod
    def _trim_after(node: _Node, trims: list[tuple[int, int]]) -> tuple[int, int]:
        """Positions not computed at each end of the node's (Keras) tensor, relative to that tensor."""
        if node.kind == "input":
            return (0, 0)
        if node.kind == "add":
            return (max(t[0] for t in trims), max(t[1] for t in trims))
        left, right = trims[0]
        if node.kind == "conv":
            return (left + node.half, right + node.half)
        if node.kind == "crop":
            a, b = node.crop
            if left > a or right > b:
                raise InputError(f"layer {node.name}: cropping smaller than the receptive field")
            return (0, 0)
        return (left, right)

    # ----------------------------------------------------------------------------------- forward
    def layers(self, x: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        """Run the network on one-hot ``x`` ``(n, 4)``, yielding ``(layer name, values)`` in order.

        Each value holds only the positions that survive the final crop's receptive field, so
        lengths shrink layer by layer; the last one is the output ``(n - context, 3)``. A yielded
        array may be overwritten by a later layer (ReLU works in place): copy it to keep it.
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != 4:
            raise InputError(f"model input must be one-hot (n, 4), got shape {x.shape}")
        if x.shape[0] <= sum(self.context):
            raise InputError(
                f"model input of {x.shape[0]} nt is too short: needs more than {sum(self.context)}"
            )
        values: dict[str, np.ndarray] = {}
        trim: dict[str, tuple[int, int]] = {}
        for i, node in enumerate(self.nodes):
            ins = [values[s] for s in node.inputs]
            tins = [trim[s] for s in node.inputs]
            out_trim = self._trim_after(node, tins)
            if node.kind == "input":
                out = x
            elif node.kind == "conv":
                out = _conv_valid(ins[0], node.weight, node.bias, node.dilation, node.half)
                if node.softmax:
                    out = _softmax(out)
            elif node.kind == "bn":
                out = ins[0] * node.scale
                out += node.bias
            elif node.kind == "relu":
                src = ins[0]
                # in place when nothing else reads the input and it owns its memory
                own = self._last_use.get(node.inputs[0]) == i and src.base is None and src is not x
                out = np.maximum(src, 0.0, out=src if own else None)
            elif node.kind == "add":
                out = None
                for arr, t in zip(ins, tins):
                    lo = out_trim[0] - t[0]
                    part = arr[lo : arr.shape[0] - (out_trim[1] - t[1])]
                    out = part.copy() if out is None else _iadd(out, part)
            elif node.kind == "crop":
                (a, b), (left, right) = node.crop, tins[0]
                arr = ins[0]
                out = arr[a - left : arr.shape[0] - (b - right)]
            else:  # pragma: no cover - _parse_layer rejects other kinds
                raise InputError(f"unsupported layer kind {node.kind}")
            values[node.name] = out
            trim[node.name] = out_trim
            for src in node.inputs:
                if self._last_use.get(src) == i:
                    del values[src]
            yield node.name, out

    def forward(self, x: np.ndarray, *, threads: int | None = 1) -> np.ndarray:
        """Class probabilities ``(n - context, 3)`` [neither, acceptor, donor] for one-hot ``x``."""
        out = None
        with blas_threads(threads):
            for name, value in self.layers(x):
                if name == self.output:
                    out = value
        assert out is not None
        return out


def _as_str(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _weights_of(group, layer_name: str) -> dict[str, np.ndarray]:
    """The weight arrays of one layer, keyed by short name (kernel, bias, gamma, ...)."""
    g = group[layer_name]
    names = [_as_str(n) for n in g.attrs["weight_names"]]
    return {n.split("/")[-1].split(":")[0]: np.asarray(g[n], dtype=np.float32) for n in names}


def _parse_layer(layer: dict, weights) -> _Node:
    """Compile one Keras layer description (+ its weights) into a :class:`_Node`."""
    cls, cfg, name = layer["class_name"], layer["config"], layer["name"]
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise InputError(f"layer {name}: shared layers are not supported")
    inputs = tuple(src[0] for src in nodes[0]) if nodes else ()
    if cls == "InputLayer":
        return _Node(name, "input", ())
    if cls == "Conv1D":
        k, d = int(cfg["kernel_size"][0]), int(cfg["dilation_rate"][0])
        if int(cfg["strides"][0]) != 1:
            raise InputError(f"layer {name}: strides other than 1 are not supported")
        if cfg["padding"] == "same":
            if k % 2 != 1:
                raise InputError(f"layer {name}: even kernel with 'same' padding not supported")
            half = (k - 1) // 2 * d
        elif cfg["padding"] == "valid" and k == 1:
            half = 0
        else:
            raise InputError(f"layer {name}: padding {cfg['padding']!r} with kernel {k} unsupported")
        if cfg["activation"] not in ("linear", "softmax"):
            raise InputError(f"layer {name}: activation {cfg['activation']!r} unsupported")
        w = _weights_of(weights, name)
        bias = w["bias"] if cfg.get("use_bias", True) else np.zeros(cfg["filters"], np.float32)
        return _Node(
            name, "conv", inputs, weight=np.ascontiguousarray(w["kernel"]), bias=bias,
            dilation=d, half=half, softmax=cfg["activation"] == "softmax",
        )
    if cls == "BatchNormalization":
        if cfg.get("axis", -1) not in (-1, 2):
            raise InputError(f"layer {name}: BatchNormalization axis {cfg['axis']} unsupported")
        w = _weights_of(weights, name)
        n = w["moving_mean"].shape[0]
        gamma = w["gamma"] if cfg.get("scale", True) else np.ones(n, np.float32)
        beta = w["beta"] if cfg.get("center", True) else np.zeros(n, np.float32)
        scale = (gamma / np.sqrt(w["moving_variance"] + np.float32(cfg["epsilon"]))).astype(np.float32)
        shift = (beta - w["moving_mean"] * scale).astype(np.float32)
        return _Node(name, "bn", inputs, scale=scale, bias=shift)
    if cls == "Activation":
        if cfg["activation"] == "relu":
            return _Node(name, "relu", inputs)
        raise InputError(f"layer {name}: activation {cfg['activation']!r} unsupported")
    if cls == "Add":
        return _Node(name, "add", inputs)
    if cls == "Cropping1D":
        a, b = cfg["cropping"]
        return _Node(name, "crop", inputs, crop=(int(a), int(b)))
    raise InputError(f"layer {name}: Keras layer type {cls} unsupported")


def _toposort(nodes: list[_Node]) -> list[_Node]:
    """Order nodes so every input comes before its use (Keras lists them nearly so already)."""
    by_name = {n.name: n for n in nodes}
    done: set[str] = set()
    order: list[_Node] = []
    pending = list(nodes)
    while pending:
        rest = [n for n in pending if not all(s in done for s in n.inputs)]
        ready = [n for n in pending if all(s in done for s in n.inputs)]
        if not ready:
            raise InputError(f"cyclic or dangling layer graph near {[n.name for n in rest][:3]}")
        for n in ready:
            if any(s not in by_name for s in n.inputs):
                raise InputError(f"layer {n.name}: unknown input")
            order.append(n)
            done.add(n.name)
        pending = rest
    return order


def _fold_batchnorm(nodes: list[_Node]) -> list[_Node]:
    """Fold each BN whose sole input is a conv used by nothing else into that conv."""
    consumers: dict[str, int] = {}
    for n in nodes:
        for s in n.inputs:
            consumers[s] = consumers.get(s, 0) + 1
    by_name = {n.name: n for n in nodes}
    folded: dict[str, _Node] = {}  # conv name -> folded conv renamed to the BN's name
    drop: set[str] = set()
    for n in nodes:
        if n.kind != "bn":
            continue
        src = by_name[n.inputs[0]]
        if src.kind == "conv" and not src.softmax and consumers.get(src.name) == 1:
            w = (src.weight * n.scale).astype(np.float32)
            b = (src.bias * n.scale + n.bias).astype(np.float32)
            folded[n.name] = _Node(
                n.name, "conv", src.inputs, weight=w, bias=b, dilation=src.dilation, half=src.half
            )
            drop.add(src.name)
    return [folded.get(n.name, n) for n in nodes if n.name not in drop]


def _iadd(out: np.ndarray, part: np.ndarray) -> np.ndarray:
    out += part
    return out


def _conv_valid(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, dilation: int, half: int
) -> np.ndarray:
    """Dilated 1-D convolution (Keras cross-correlation) over the positions needing no padding.

    ``x`` is ``(n, c_in)``, ``weight`` ``(k, c_in, c_out)``; output ``(n - 2 * half, c_out)`` is a
    sum of ``k`` shifted matmuls, done in row blocks so the working set stays in cache.
    """
    k = weight.shape[0]
    n_out = x.shape[0] - (k - 1) * dilation
    out = np.empty((n_out, weight.shape[2]), dtype=np.float32)
    if k == 1:
        np.matmul(x[:n_out], weight[0], out=out)
        out += bias
        return out
    tmp = np.empty((min(_ROW_BLOCK, n_out), weight.shape[2]), dtype=np.float32)
    for a in range(0, n_out, _ROW_BLOCK):
        b = min(n_out, a + _ROW_BLOCK)
        block = out[a:b]
        t = tmp[: b - a]
        np.matmul(x[a:b], weight[0], out=block)
        for j in range(1, k):
            off = j * dilation
            np.matmul(x[a + off : b + off], weight[j], out=t)
            block += t
        block += bias
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


@functools.lru_cache(maxsize=1)
def _openblas_thread_setter():
    """numpy's bundled OpenBLAS ``openblas_set_num_threads_local`` (thread-local), or None."""
    candidates: list[str] = []
    try:
        with open("/proc/self/maps") as maps:
            candidates += sorted({ln.split()[-1] for ln in maps if "openblas" in ln.lower() and "/" in ln})
    except OSError:
        pass
    base = os.path.dirname(os.path.dirname(np.__file__))
    for pattern in ("numpy.libs/*openblas*", "numpy/.dylibs/*openblas*"):
        candidates += sorted(glob.glob(os.path.join(base, pattern)))
    for path in candidates:
        try:
            fn = getattr(ctypes.CDLL(path), "openblas_set_num_threads_local")
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    return None


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit numpy's OpenBLAS to ``n`` threads in the calling thread (no-op if ``None``/unavailable).

    The convolutions are many small matrix products: OpenBLAS threading them gains little and, on
    a shared or busy machine, loses a lot. Parallelism comes from running genes in parallel.
    """
    setter = _openblas_thread_setter() if n is not None else None
    if setter is None:
        yield
        return
    previous = setter(int(n))
    try:
        yield
    finally:
        setter(previous)


@functools.lru_cache(maxsize=4)
def load_models(folder: str | None = None, *, fold_bn: bool = True) -> tuple[SpliceAIModel, ...]:
    """The five SpliceAI models (cached per process). ``folder`` defaults to :func:`weights_dir`."""
    base = Path(folder) if folder is not None else weights_dir()
    paths = model_paths(base)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"{_WEIGHTS_HELP}; missing: {', '.join(missing)}")
    return tuple(SpliceAIModel.from_h5(p, fold_bn=fold_bn) for p in paths)


def predict_onehot(
    x: np.ndarray,
    models: Sequence[SpliceAIModel],
    *,
    chunk_size: int = DEFAULT_CHUNK,
    threads: int | None = 1,
) -> np.ndarray:
    """Average class probabilities ``(n - 10000, 3)`` of ``models`` for one-hot ``x`` ``(n, 4)``.

    The output is computed in independent chunks of ``chunk_size`` positions (each chunk reads its
    own 5,000-nt flanks), which is exact because the receptive field equals the crop.
    ``threads``: OpenBLAS threads for the products (default 1; ``None`` leaves OpenBLAS as is).
    """
    if not models:
        raise ConfigError("no SpliceAI models given")
    left, right = models[0].context
    if any(m.context != (left, right) for m in models):
        raise ConfigError("models with different receptive fields cannot be averaged")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n_out = x.shape[0] - left - right
    if n_out <= 0:
        raise InputError(f"input of {x.shape[0]} nt is too short: needs more than {left + right}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be positive, not {chunk_size}")
    out = np.zeros((n_out, 3), dtype=np.float32)
    with blas_threads(threads):
        for a in range(0, n_out, chunk_size):
            b = min(n_out, a + chunk_size)
            piece = x[a : b + left + right]
            acc = out[a:b]
            for model in models:
                acc += model.forward(piece)
    out /= np.float32(len(models))
    return out


def predict_gene(
    sequence_codes_with_flank: np.ndarray | bytes | str,
    strand: str,
    models: Sequence[SpliceAIModel],
    *,
    chunk_size: int = DEFAULT_CHUNK,
    threads: int | None = 1,
) -> np.ndarray:
    """SpliceAI scores ``(L, 3)`` [neither, acceptor, donor] for a gene, in forward genomic order.

    ``sequence_codes_with_flank``: ASCII codes (uint8) of the forward-strand sequence of the gene
    span plus 5,000 nt each side (``L + 10000``; positions beyond the chromosome given as ``N``).
    On the ``-`` strand the one-hot input is reverse-complemented (SpliceAI's ``x[::-1, ::-1]``)
    and the output reversed back, so row ``i`` always scores the ``i``-th span nucleotide.
    """
    if strand not in ("+", "-"):
        raise InputError(f"strand must be '+' or '-', not {strand!r}")
    x = one_hot(sequence_codes_with_flank)
    if strand == "-":
        x = x[::-1, ::-1]
    y = predict_onehot(x, models, chunk_size=chunk_size, threads=threads)
    if strand == "-":
        y = np.ascontiguousarray(y[::-1])
    return y
