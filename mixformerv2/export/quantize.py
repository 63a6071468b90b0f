"""Int8 quantisation of the per-frame graph with ``onnxruntime.quantization``.

Only the backbone's matrix products are quantised: the heads see 4 tokens (nothing to gain, and their output is the
box), and the attention products (both inputs activations) stay float, where OpenVINO keeps its fused attention.

* ``quantize_onnx_int8``: dynamic (ONNX Runtime int8: weights int8 per output channel, activations per call);
* ``quantize_static_int8``: static QDQ (OpenVINO int8: activation ranges calibrated on inputs, ``calibration``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .optional import import_optional


class _QuietQuantizer(logging.Filter):
    """Drops the records that ``onnxruntime.quantization`` logs on the root logger: one INFO line per tensor, and a
    suggestion to pre-process the graph first (measured on MixFormerV2-S: same outputs, same speed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname or record.levelno >= logging.ERROR

    def __enter__(self):
        logging.getLogger().addFilter(self)

    def __exit__(self, *exc):
        logging.getLogger().removeFilter(self)


def _head_products(path: str | Path) -> list[str]:
    """Names of the matrix products of a graph that stay fp32: the heads' (their scope names the module, e.g.
    ``/box_head/...``), which see 4 tokens, and products with a constant that is not a matrix (the box decoding).
    ONNX Runtime's quantiser rewrites each Gemm as ``<name>_MatMul`` + ``<name>_Add`` first: both names are listed."""
    onnx = import_optional("onnx")
    graph = onnx.load(str(path)).graph
    shapes = {init.name: len(init.dims) for init in graph.initializer}
    names = [node.name for node in graph.node if node.op_type in ("MatMul", "Gemm") and (
        "_head/" in node.name or any(shapes.get(name, 2) != 2 for name in node.input[1:2]))]
    return names + [f"{name}_MatMul" for name in names]


def quantize_onnx_int8(path: str | Path, out_path: str | Path) -> Path:
    """Dynamic int8 quantisation of a graph's matrix products with ONNX Runtime: int8 weights with one scale per
    output channel, activations quantised per call; the heads stay fp32 (``_head_products``)."""
    import_optional("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _QuietQuantizer():
        quantize_dynamic(str(path), str(out_path), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_exclude=_head_products(path))
    return Path(out_path)


def _linear_products(path: str | Path) -> list[str]:
    """Names of a graph's matrix products with a constant 2-D weight outside the heads: the backbone's linear
    layers (not the attention products, whose both inputs are activations)."""
    onnx = import_optional("onnx")
    graph = onnx.load(str(path)).graph
    weights = {init.name for init in graph.initializer if len(init.dims) == 2}
    excluded = set(_head_products(path))
    return [node.name for node in graph.node if node.op_type in ("MatMul", "Gemm") and node.name not in excluded
            and len(node.input) > 1 and node.input[1] in weights]


def quantize_static_int8(path: str | Path, out_path: str | Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    """Static int8 quantisation of a graph's backbone linear layers (``_linear_products``) as a QDQ graph: int8
    weights with one scale per output channel, uint8 activations whose ranges (min/max) come from running the graph
    on ``feeds`` (its inputs, e.g. ``calibration.calibration_feeds``). Everything else stays float."""
    import_optional("onnxruntime")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self._feeds = iter(feeds)

        def get_next(self):
            return next(self._feeds, None)

    with _QuietQuantizer():
        quantize_static(str(path), str(out_path), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["MatMul", "Gemm"], nodes_to_quantize=_linear_products(path))
    return Path(out_path)
