"""Deployment: ONNX graphs of the tracker's two network calls (``onnx``), the backends that run the network
(``backends``: PyTorch, ONNX Runtime, OpenVINO at fp32 / bf16 / fp16 / int8) and the CPU features that choose
between them (``cpu``). onnx, onnxruntime and openvino are optional (extras ``export`` and ``openvino``)."""
