"""The tiny clip classifier's card: every field the generic tests read."""
from __future__ import annotations

from models.tiny import data, network

from harness.spec import Agreement, Checkpoint, Elementwise, Metric, ModelSpec, Profile

SPEC = ModelSpec(
    name="tiny",
    task="action recognition (5 classes, 4-frame 16x16 clips)",
    seed="tiny.txt",  # no ModelZoo guide: tests/test_model_cards.py is the one generic test it cannot pass
    upstream="example/tiny-c3d@0000000000000000000000000000000000000000",
    checkpoint=Checkpoint(filename="tiny_c3d.pth", nesting="state_dict", strip_prefix="module.",
                          keys=9, parameters=717),
    profiles={
        "smoke": Profile(inputs={"clip": (3, 4, 16, 16)}, outputs={"class": (network.NUM_CLASSES,)},
                         batch_sizes=(1, 2), generated_samples=5),
        "full": Profile(inputs={"clip": (3, 8, 32, 32)}, outputs={"class": (network.NUM_CLASSES,)},
                        batch_sizes=(1, 4), generated_samples=10),
    },
    metrics=(Metric("top1", True, published=60.0, published_band=5.0, unit="%",
                    tolerance={"fp32": 0.1, "fp16": 0.5, "bf16": 1.0}),),
    elementwise={"fp32": Elementwise(rtol=1e-4, atol=1e-4), "fp16": Elementwise(rtol=0.05, atol=0.05),
                 "bf16": Elementwise(rtol=0.1, atol=0.2)},
    agreement=Agreement("classification", ("class",), logits=True, limits={
        "fp32": {"top1_agreement": 99.0, "max_probability_error": 1e-4},
        "fp16": {"top1_agreement": 80.0, "max_probability_error": 0.05},
        "bf16": {"top1_agreement": 80.0, "max_probability_error": 0.1},
    }),
    reference_fps={},
    dataset_dir="tiny",
    published_items=None,
    dataset_layout=data.LAYOUT,
    build_network=network.build,
    open_dataset=data.open_dataset,
    generate_dataset=data.generate,
    new_scorer=data.new_scorer,
    protocol={"mean": 0.5},
)
