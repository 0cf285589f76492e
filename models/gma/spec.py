"""GMA on MPI-Sintel clean and final, from the Ascend ModelZoo guide (seed 002)."""
from __future__ import annotations

from typing import Sequence

from harness.aisbench import SeedBinLayout
from harness.sintel import SINTEL_LAYOUT
from harness.backends.ascend import AtcOptions
from harness.spec import Agreement, OOM, Checkpoint, Elementwise, Metric, ModelSpec, Profile
from models.gma import data, network

PASSES = ("clean", "final")
# The port's GMA.patch changes forward's default to 6 iterations (upstream's evaluate.py runs
# 12 by default); the exported graph unrolls them. build() only sees the Profile, so the value
# goes into both profiles' protocol rather than the spec-wide one.
ITERS = 6

# Deployed vs PyTorch, measured on the smoke profile (seeded weights, 2 generated + 2 real Sintel
# pairs per pass, batch 1 and 2; seeded flows reach only ~3 px, re-measure with gma-sintel.pth):
#   ONNX Runtime fp32     max |diff| 1.7e-6, px1 delta 0, EPE delta < 1e-7
#   OpenVINO f32          max |diff| 3.0e-6, px1 delta 0, EPE delta < 1e-8
#   OpenVINO bf16 (AMX)   max |diff| 0.044 (0.023 beyond rtol 1e-2), px1 delta 0.038 pp,
#                         EPE delta 0.0037 px
#   full 440x1024, ONNX Runtime fp32: max |diff| 3.8e-6 on a real pair
# Tolerances are 3-5x those (fp32 looser for the larger flows of the trained network); fp16
# (Ascend ATC) sits between fp32 and bf16.
ELEMENTWISE = {
    "fp32": Elementwise(rtol=1e-4, atol=5e-4),
    "fp16": Elementwise(rtol=2e-2, atol=0.1),
    "bf16": Elementwise(rtol=5e-2, atol=0.2),
}
PX_TOLERANCE = {"fp32": 0.01, "fp16": 0.1, "bf16": 0.2}  # percentage points
EPE_TOLERANCE = {"fp32": 1e-4, "fp16": 0.01, "bf16": 0.02}  # px


def identify_foreign(keys: Sequence[str]) -> str | None:
    """Name the optical-flow family a non-GMA checkpoint most likely belongs to."""
    keys = set(keys)
    if any(k.startswith(("flownetc.", "flownets_1.", "flownetfusion.")) for k in keys):
        return "FlowNet2 (NVIDIA/flownet2-pytorch)"
    if "update_block.gru.convz1.weight" in keys and "att.to_qk.weight" not in keys:
        return "RAFT (princeton-vl/RAFT), which lacks GMA's attention and aggregator"
    return None


SPEC = ModelSpec(
    name="gma",
    # the seed's *_preprocess.py output folder (harness/aisbench.py)
    seed_bin_layout=SeedBinLayout(inputs={"image1": "image1", "image2": "image2"}, gt="gt", gt_shape=(436, 1024, 2),
                                  one_folder_per_pass=True,  # GMA_preprocess.py --status clean|final
                                  pass_folders=("{pass}", "data_preprocessed_{pass}")),  # its guide's --output
    task="optical flow",
    seed="002_eff5ad236b661a98.txt",
    upstream="zacjiang/GMA@2f1fd29468a86a354d44dd25d107930b3f175043",
    checkpoint=Checkpoint(
        filename="gma-sintel.pth",  # torch.save(DataParallel(model).state_dict())
        nesting=None,
        strip_prefix="module.",
        # with the buffers: BatchNorm running stats and counters, att.pos_emb.rel_ind
        keys=185,
        # includes att.pos_emb.rel_height/rel_width (2 x 319 x 128), which the content-only
        # attention of this checkpoint never reads
        parameters=5_879_873,
    ),
    profiles={
        "smoke": Profile(
            # 124 rows pad to 128 as Sintel's 436 pad to 440; the 1/8 features (16x20) keep
            # every correlation level at least 2 wide, where upstream's grid normalisation
            # (divides by size - 1) is defined
            inputs={"image1": (3, 128, 160), "image2": (3, 128, 160)},
            outputs={"out1": (2, 128, 160)},
            batch_sizes=(1, 2),
            generated_samples=4,
            protocol={"iters": ITERS, "frame_size": (124, 160), "oversize": "crop"},
        ),
        "full": Profile(
            inputs={"image1": (3, 440, 1024), "image2": (3, 440, 1024)},
            outputs={"out1": (2, 440, 1024)},
            batch_sizes=(1, 4, 8, 16),
            generated_samples=4,
            protocol={"iters": ITERS, "frame_size": (436, 1024), "oversize": "error"},
        ),
    },
    metrics=(
        Metric("px1_clean", higher_is_better=True, published=92.65, published_band=1.0,
               tolerance=PX_TOLERANCE, unit="%"),
        Metric("epe_all_px_clean", higher_is_better=False, tolerance=EPE_TOLERANCE, unit="px"),
        Metric("px1_final", higher_is_better=True, published=88.95, published_band=1.0,
               tolerance=PX_TOLERANCE, unit="%"),
        Metric("epe_all_px_final", higher_is_better=False, tolerance=EPE_TOLERANCE, unit="px"),
    ),
    agreement=Agreement("flow", ("out1",), limits={
        # end-point error between deployed and PyTorch flows, mean over pixels, worst sample
        "fp32": {"max_epe": 5e-3}, "fp16": {"max_epe": 0.1}, "bf16": {"max_epe": 0.2},
    }),
    elementwise=ELEMENTWISE,
    # Ascend310P3 FPS from the seed's table; batch 16 ran out of device memory
    reference_fps={"Ascend310P3": {1: 0.766, 4: 0.772, 8: 0.678, 16: OOM}},
    dataset_dir="MPI-Sintel",
    published_items=2082,  # MPI-Sintel training: 1041 pairs in each of the clean and final passes
    dataset_layout=SINTEL_LAYOUT,
    build_network=network.build,
    open_dataset=data.open_dataset,
    generate_dataset=data.generate,
    new_scorer=data.new_scorer,
    opset=12,
    protocol={"passes": PASSES, "pad_multiple": 8, "generated_seed": 0},
    # the seed's atc command: --keep_dtype=keep.cfg and no --input_format; the port's keep.cfg
    # (ACL_PyTorch/contrib/cv/tracking/GMA/keep.cfg) holds this one line
    compile_options={"ascend": AtcOptions(input_format=None, keep_fp32=("OpType::InstanceNorm",),
                                          graph_passes=("int64_to_int32", "float64_to_float32"))},
    # the seed runs `auto_optimizer optimize -k 4` before atc: knowledge 4 is KnowledgeTypeCast
    # (int64 -> int32, float64 -> float32 where the operators allow it)
    identify_foreign=identify_foreign,
    deviations={
        "atc:--log": "the seed's command leaves --log out (ATC's default level); the harness logs errors "
                     "only, as the other seeds' commands do",
        "output:out1": "a typo in the seed's output table (batchsize x 3 x 440 x 1024): the flow has 2 "
                       "channels (u, v), as upstream's GMA returns and Sintel's .flo ground truth holds",
    },
)
