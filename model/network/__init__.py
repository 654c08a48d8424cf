"""The dual-attention network (Chen et al.), its layers, the xresnet1d baseline and the ONNX export."""
