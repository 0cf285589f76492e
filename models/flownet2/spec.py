"""FlowNet2 on MPI-Sintel (clean, as published; final beside it), from the Ascend ModelZoo guide (seed 001)."""
from harness.aisbench import SeedBinLayout
from harness.sintel import SINTEL_LAYOUT
from harness.backends.ascend import AtcOptions
from harness.spec import Agreement, OOM, Checkpoint, Elementwise, Metric, ModelSpec, Profile
from models.flownet2 import data, network

# The seed evaluates the clean pass only (published EPE 2.15 is clean); the final pass is scored
# beside it, with no published figure, so a deployment is seen on both renderings.
PASSES = ("clean", "final")

# Deployed vs PyTorch, measured on the smoke profile (random-init network, seed 0; 2 generated
# and 2 real alley_1 pairs; batch 1 and 2; outputs up to 13.8 px):
#   ONNX Runtime fp32   max |diff| 1.8e-5; EPE delta 4e-8, px deltas 0
#   OpenVINO f32        max |diff| 2.9e-5; EPE delta 4e-8, px deltas 0
#   OpenVINO bf16 (AMX) max |diff| 0.153;  EPE delta 0.007, px deltas <= 0.11 points
# Declared with a 4-7x margin; fp16 (Ascend ATC) has 3 more mantissa bits than bf16, so it
# sits between fp32 and bf16.
ELEMENTWISE = {
    "fp32": Elementwise(rtol=1e-4, atol=2e-4),
    "fp16": Elementwise(rtol=3e-2, atol=0.3),
    "bf16": Elementwise(rtol=5e-2, atol=0.6),
}
EPE_TOLERANCE = {"fp32": 1e-4, "fp16": 0.02, "bf16": 0.03}  # px
PX_TOLERANCE = {"fp32": 0.01, "fp16": 0.3, "bf16": 0.5}  # percentage points

SPEC = ModelSpec(
    name="flownet2",
    # the seed's *_preprocess.py output folder (harness/aisbench.py)
    seed_bin_layout=SeedBinLayout(inputs={"x1": "image1", "x2": "image2"}, gt="gt", gt_shape=(1, 448, 1024, 2),
                                  one_folder_per_pass=True, single_pass="clean"),  # its preprocess: clean only
    task="optical flow",
    seed="001_75cf22664f8ec91a.txt",
    upstream="NVIDIA/flownet2-pytorch@2e9e010c98931bc7cef3eb063b195f1e0ab470ba",
    checkpoint=Checkpoint(
        filename="FlowNet2_checkpoint.pth.tar",  # {'epoch', 'state_dict', 'best_EPE'}
        nesting="state_dict",
        strip_prefix=None,
        keys=220,
        parameters=162_518_834,
    ),
    profiles={
        "smoke": Profile(
            inputs={"x1": (3, 64, 128), "x2": (3, 64, 128)},
            outputs={"flow": (2, 64, 128)},
            batch_sizes=(1, 2),
            generated_samples=2,
            # generated frames are shorter than the input and padded at the bottom like
            # Sintel's 436 rows; real 436x1024 frames are cropped to the input here only
            protocol={"generated_size": (56, 128), "oversize": "crop"},
        ),
        "full": Profile(
            inputs={"x1": (3, 448, 1024), "x2": (3, 448, 1024)},
            outputs={"flow": (2, 448, 1024)},
            batch_sizes=(1, 4, 8),
            generated_samples=4,
            protocol={"generated_size": (436, 1024)},
        ),
    },
    metrics=(
        Metric("epe_clean", higher_is_better=False, published=2.15, published_band=0.1,
               tolerance=EPE_TOLERANCE, unit="px"),
        Metric("px1_clean", higher_is_better=True, tolerance=PX_TOLERANCE, unit="%"),
        Metric("px3_clean", higher_is_better=True, tolerance=PX_TOLERANCE, unit="%"),
        Metric("px5_clean", higher_is_better=True, tolerance=PX_TOLERANCE, unit="%"),
        Metric("epe_final", higher_is_better=False, tolerance=EPE_TOLERANCE, unit="px"),
        Metric("px1_final", higher_is_better=True, tolerance=PX_TOLERANCE, unit="%"),
        Metric("px3_final", higher_is_better=True, tolerance=PX_TOLERANCE, unit="%"),
        Metric("px5_final", higher_is_better=True, tolerance=PX_TOLERANCE, unit="%"),
    ),
    agreement=Agreement("flow", ("flow",), limits={
        # end-point error between deployed and PyTorch flows, mean over pixels, worst sample
        "fp32": {"max_epe": 5e-3}, "fp16": {"max_epe": 0.2}, "bf16": {"max_epe": 0.4},
    }),
    elementwise=ELEMENTWISE,
    # Ascend310P3 FPS from the seed's table; batch 8 ran out of device memory
    reference_fps={"Ascend310P3": {1: 14.36, 4: 6.10, 8: OOM}},
    dataset_dir="MPI-Sintel",
    published_items=2082,  # MPI-Sintel training: 1041 pairs in each of the clean and final passes
    dataset_layout=SINTEL_LAYOUT,
    build_network=network.build,
    open_dataset=data.open_dataset,
    generate_dataset=data.generate,
    new_scorer=data.new_scorer,
    opset=11,
    protocol={
        "passes": PASSES,
        "rgb_max": 255.0,
        "oversize": "error",  # full profile: a frame larger than 448x1024 is not Sintel
        "generated_seed": 0,
    },
    compile_options={"ascend": AtcOptions(input_format="NCHW", graph_passes=("int64_to_int32",))},
    # the seed runs fix_onnx.py between onnxsim and atc: int64 constants and casts -> int32
    identify_foreign=network.identify_foreign,
    deviations={
        "atc:--log": "the seed compiles with --log=debug, for troubleshooting; the harness logs errors "
                     "only, as the other seeds' commands do",
        # measured by tests/test_model_cards.py, which applies both to the same flows
        "postprocess:epe_clean": "the seed's Flownet2_postprocess.py takes each image's mean EPE from float32 numpy "
                                 "norms, the suite in float64: 1.2e-7 px apart on a Sintel-sized probe; inside the "
                                 "0.1 px band",
    },
)
