"""The input contract: the model card, the canonical ECG type, lead names and the input errors every reader and
stage raises.
"""

from hfrisk.model.contract.errors import (
    ECGInputError,
    InputErrorReason,
)
from hfrisk.model.contract.card import (
    CANONICAL_LEADS,
    InputSpec,
    WindowSpec,
    FilterSpec,
    QualitySpec,
    OutputSpec,
    ModelCard,
    default_card,
    load_card,
    CARD_FILENAME,
)
from hfrisk.model.contract.risk_scale import (
    AbsoluteRisk,
    ReferenceDistribution,
    RiskScale,
)
from hfrisk.model.contract.ecg import (
    ECG,
    to_millivolts,
    UNIT_SCALE_TO_MV,
)
from hfrisk.model.contract.leads import (
    ConformedECG,
    conform_leads,
    normalise_lead_name,
    LIMB_LEADS,
    IGNORED_CHANNELS,
)
from hfrisk.model.contract.attention_weights import (
    DECIMALS,
    lead_weights,
    encode_lead_weights,
    decode_lead_weights,
)

__all__ = [
    "ECGInputError",
    "InputErrorReason",
    "CANONICAL_LEADS",
    "InputSpec",
    "WindowSpec",
    "FilterSpec",
    "QualitySpec",
    "OutputSpec",
    "ModelCard",
    "default_card",
    "load_card",
    "CARD_FILENAME",
    "RiskScale",
    "ReferenceDistribution",
    "AbsoluteRisk",
    "ECG",
    "to_millivolts",
    "UNIT_SCALE_TO_MV",
    "ConformedECG",
    "conform_leads",
    "normalise_lead_name",
    "LIMB_LEADS",
    "IGNORED_CHANNELS",
    "DECIMALS",
    "lead_weights",
    "encode_lead_weights",
    "decode_lead_weights",
]
