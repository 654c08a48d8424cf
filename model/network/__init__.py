"""The dual-attention network (Chen et al.), its layers, the xresnet1d baseline and the ONNX export."""

from hfrisk.model.network.layers import (
    BatchwiseDropout,
    SinusoidalPositionalEncoding,
    FeedForward,
    ResidualBlock2d,
)
from hfrisk.model.network.attention import (
    SelfAttentionBlock,
    CrossLeadAttention,
    LeadTemporalAttention,
    DualAttention,
    AttentionMaps,
)
from hfrisk.model.network.xresnet1d import (
    XResNet1d,
    xresnet1d101,
    BottleneckBlock1d,
)
from hfrisk.model.network.hfrisk_net import (
    DualAttentionEncoder,
    RiskHead,
    ReconstructionDecoder,
    ProjectionHead,
    AlignmentHeads,
    HFRiskNet,
    TrainOutput,
    ServingModule,
    ENCODERS,
    build_encoder,
    count_parameters,
)
from hfrisk.model.network.onnx_export import (
    export_onnx,
    onnx_parity,
    ParityReport,
    ParityError,
    recording_inputs,
    wfdb_record_paths,
    store_weights_float16,
    PARITY_ATOL,
)

__all__ = [
    "BatchwiseDropout",
    "SinusoidalPositionalEncoding",
    "FeedForward",
    "ResidualBlock2d",
    "SelfAttentionBlock",
    "CrossLeadAttention",
    "LeadTemporalAttention",
    "DualAttention",
    "AttentionMaps",
    "XResNet1d",
    "xresnet1d101",
    "BottleneckBlock1d",
    "DualAttentionEncoder",
    "RiskHead",
    "ReconstructionDecoder",
    "ProjectionHead",
    "AlignmentHeads",
    "HFRiskNet",
    "TrainOutput",
    "ServingModule",
    "ENCODERS",
    "build_encoder",
    "count_parameters",
    "export_onnx",
    "onnx_parity",
    "ParityReport",
    "ParityError",
    "recording_inputs",
    "wfdb_record_paths",
    "store_weights_float16",
    "PARITY_ATOL",
]
