"""Region experts: low-rank per-region deltas on a shared backbone, EKS routing, merge, save/load.

Typical use::

    report = add_region_experts(net, REGIONS, encoder_decoder_ranks(4), exclude=["final"])
    with active_regions(net, region_index):        # LongTensor (B,): one region per sample (EKS)
        loss = loss_fn(net(x), y)
    expert = merged_expert(net, "abdomen")          # plain network with W0 + dW_abdomen
    save_expert_set(net, folder, card_extra={"architecture": spec})
"""

from lorkd_core.experts.checkpoint import (
    expert_card,
    expert_state_dict,
    load_expert_set,
    read_expert_card,
    save_expert_set,
)
from lorkd_core.experts.inject import (
    EncoderDecoderRanks,
    ExpertLayerInfo,
    ExpertReport,
    RankSpec,
    add_region_experts,
    encoder_decoder_ranks,
    layer_part,
)
from lorkd_core.experts.layers import (
    EKS_IMPLS,
    ExpertConv,
    ExpertConvTranspose,
    ExpertLayer,
    ExpertLinear,
    RegionFactors,
    UnsupportedLayerError,
    get_default_eks_impl,
    set_default_eks_impl,
    wrap_layer,
)
from lorkd_core.experts.merge import delta_weight, merge, merged_expert, unmerge
from lorkd_core.experts.routing import (
    Routing,
    active_regions,
    expert_layers,
    region_order,
    set_active_regions,
)

__all__ = [
    "EKS_IMPLS",
    "EncoderDecoderRanks",
    "ExpertConv",
    "ExpertConvTranspose",
    "ExpertLayer",
    "ExpertLayerInfo",
    "ExpertLinear",
    "ExpertReport",
    "RankSpec",
    "RegionFactors",
    "Routing",
    "UnsupportedLayerError",
    "active_regions",
    "add_region_experts",
    "delta_weight",
    "encoder_decoder_ranks",
    "expert_card",
    "expert_layers",
    "expert_state_dict",
    "get_default_eks_impl",
    "layer_part",
    "load_expert_set",
    "merge",
    "merged_expert",
    "read_expert_card",
    "region_order",
    "save_expert_set",
    "set_active_regions",
    "set_default_eks_impl",
    "unmerge",
    "wrap_layer",
]
