"""The registered model cards against their seeds (the Ascend ModelZoo guides in shared/seeds/).

For every registered spec: the ``atc`` command the Ascend backend runs, the full profile's input
and output shapes, the reference FPS tables and the published figures are read from the seed's
own text and compared with the card. Every difference must be declared in ``spec.deviations``
(key -> why), and every declaration must still be a difference. The parsers read what the five
seeds write (markdown tables, fenced shell commands); a new seed in another form fails here,
which is the point: it then needs a look.

Difference keys: ``atc:<flag>``, ``input:<name>``, ``output:<name>``, ``fps:<soc>:<batch size>``,
``published:<metric>`` (a card figure the seed lacks), ``published:<figure>`` (a seed figure
no card metric carries) and ``postprocess:<metric>`` (the seed's postprocess script computes the
published metric with other arithmetic than the suite's scorer: both are applied to the same
outputs here, the gap must be declared with its size and lie inside the published band).
"""
from __future__ import annotations

import dataclasses
import math
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import seed_postprocess
import torch

from harness.backends.ascend import atc_command, atc_options, static_input_shapes
from harness.spec import OOM, ModelSpec, Sample

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
# the seeds' example ${chip_name} (their `npu-smi info` shows 310P3); their commands prefix 'Ascend'
SEED_CHIP = "310P3"
SEED_SOC = f"Ascend{SEED_CHIP}"
# a table heads its column by the product family '310P'; the chip it names is the 310P3 above
SOC_FAMILIES = {"310P": SEED_CHIP}
SEED_BATCH_SIZES = (1, 4)  # every seed's command covers them (Efficient-3DCNNs writes both out)



def seed_text(spec: ModelSpec) -> str:
    if not SEEDS.is_dir():
        pytest.skip(f"the seeds folder {SEEDS} is not here: the cards are compared with it")
    path = SEEDS / spec.seed
    if not path.is_file():
        pytest.fail(f"{spec.name}: spec.seed names {path}, which does not exist in {SEEDS}")
    return path.read_text(encoding="utf-8")


# --- reading the seeds -----------------------------------------------------------------------

def seed_atc_commands(text: str, batch_size: int) -> list[list[str]]:
    """Each ``atc`` invocation in a seed, continuation lines joined, shell variables filled in
    with the seeds' own example values."""
    commands, current = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if current is None and re.match(r"atc(\s|\\|$)", stripped):
            current = []
        if current is None:
            continue
        if stripped.startswith("```"):
            commands.append(current)
            current = None
            continue
        current.append(stripped.rstrip("\\").strip())
        if not stripped.endswith("\\"):
            commands.append(current)
            current = None
    return [shlex.split(" ".join(parts).replace("${bs}", str(batch_size)).replace("${chip_name}", SEED_CHIP))
            for parts in commands]


def _flags(tokens: list[str]) -> dict[str, str]:
    """'--name=value' tokens -> {name: value} ('' for a bare flag)."""
    return dict(token.partition("=")[::2] for token in tokens if token.startswith("--"))


def seed_atc_flags(text: str, batch_size: int) -> dict[str, str]:
    """The flags of the seed's command for ``batch_size``: the ``${bs}`` template, or the literal
    command whose --output ends in ``bs<N>`` (Efficient-3DCNNs writes one per batch size)."""
    commands = seed_atc_commands(text, batch_size)
    for command in commands:
        flags = _flags(command[1:])
        if flags.get("--output", "").endswith(f"bs{batch_size}"):
            return flags
    raise AssertionError(f"no atc command for batch size {batch_size} among {len(commands)} in the seed")


def _normal_flag(name: str) -> str:
    return "--" + name[2:].replace("-", "_")  # ATC's flags are spelt with underscores


def _strip_links(cell: str) -> str:
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", cell)


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """(header cells, rows of cells) of each markdown table, links reduced to their text; a row
    with fewer cells than the header is padded with empty ones."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        stripped = line.strip()
        if stripped.startswith("|"):
            block.append([_strip_links(c).strip() for c in stripped.strip("|").split("|")])
            continue
        if len(block) >= 2 and all(re.fullmatch(r":?-+:?", c) for c in block[1] if c):
            width = len(block[0])
            tables.append((block[0], [row + [""] * (width - len(row)) for row in block[2:] if any(row)]))
        block = []
    return tables


def _column(header: list[str], pattern: str) -> int | None:
    return next((i for i, cell in enumerate(header) if re.search(pattern, cell, re.I)), None)


def _per_sample_shape(cell: str) -> tuple[int, ...]:
    """'batchsize x 3 x 224 x 224' / 'bs x 400' -> (3, 224, 224) / (400,)."""
    return tuple(int(d) for d in re.split(r"\s*[x×]\s*", cell.strip())[1:])


def seed_output_shapes(text: str) -> list[tuple[int, ...]]:
    """Per-sample output shapes of the seed's output table, in its order (its names are the
    guide's prose names, e.g. 'output1', not always the ONNX names)."""
    for header, rows in markdown_tables(text):
        shape = _column(header, r"大小|shape")
        if shape is not None and re.search(r"输出|output", header[0], re.I):
            return [_per_sample_shape(row[shape]) for row in rows]
    return []


def _soc(name: str) -> str:
    name = name.strip()
    name = SOC_FAMILIES.get(name, name)
    return f"Ascend{name}" if name[:1].isdigit() else name


def _fps(cell: str) -> float | None:
    number = re.search(r"\d+(?:\.\d+)?", cell)
    return float(number.group()) if number else None


def seed_reference_fps(text: str) -> dict[str, dict[int, float | str]]:
    """{soc: {batch size: fps or OOM}} from the seed's performance tables: rows of (chip, batch
    size, ..., FPS), where an empty FPS beside '内存' (memory) in the row is the out-of-memory
    record; or one column per chip with a batch size per row (Efficient-3DCNNs' table)."""
    fps: dict[str, dict[int, float | str]] = {}
    for header, rows in markdown_tables(text):
        chip, batch, perf = _column(header, r"芯片"), _column(header, r"batch\s*size"), _column(header, r"性能")
        if chip is not None and batch is not None and perf is not None:
            for row in rows:
                value = _fps(row[perf])
                if value is None and any("内存" in cell for cell in row):
                    value = OOM
                if value is not None:
                    fps.setdefault(_soc(row[chip]), {})[int(row[batch])] = value
        elif re.fullmatch(r"throughput", header[0], re.I):
            socs = {i: _soc(cell) for i, cell in enumerate(header) if i and cell and "/" not in cell}
            for row in rows:
                if row[0].isdigit():
                    for i, soc in socs.items():
                        fps.setdefault(soc, {})[int(row[0])] = float(row[i])
    return fps


_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+")


def seed_published_figures(text: str) -> list[str]:
    """The accuracy figures the seed reports, as written: decimals in the accuracy (精度)
    columns of its tables, and in plain-text tables (a word header over rows of figures) in
    fenced blocks of its accuracy sections."""
    figures = []
    for header, rows in markdown_tables(text):
        columns = [i for i, cell in enumerate(header) if "精度" in cell and "性能" not in cell]
        figures += [f for row in rows for i in columns if i < len(row) for f in _DECIMAL.findall(row[i])]
    heading, fenced, block = "", False, []
    for line in text.splitlines():
        if line.strip().startswith("```"):
            if fenced and "精度" in heading:
                figures += _plain_table_figures(block)
            fenced, block = not fenced, []
        elif fenced:
            block.append(line.split())
        elif line.startswith("#"):
            heading = line
    return figures


def _plain_table_figures(lines: list[list[str]]) -> list[str]:
    lines = [tokens for tokens in lines if tokens]
    if len(lines) < 2 or any(_DECIMAL.fullmatch(t) for t in lines[0]):
        return []
    if not all(len(tokens) == len(lines[0]) and any(_DECIMAL.fullmatch(t) for t in tokens) for tokens in lines[1:]):
        return []
    return [t for tokens in lines[1:] for t in tokens if _DECIMAL.fullmatch(t)]


# --- comparing a card with its seed --------------------------------------------------------

def atc_differences(spec: ModelSpec, text: str, batch_size: int) -> dict[str, str]:
    """The Ascend backend's atc command for the full profile against the seed's, flag by flag.
    The file names (--model, --output, --keep_dtype's config) are the seed's own, since where
    the harness keeps its files is not part of the contract."""
    seed = seed_atc_flags(text, batch_size)
    command = atc_command(spec, seed["--model"], static_input_shapes(spec, "full", batch_size), SEED_SOC,
                          seed["--output"], keep_dtype_cfg=seed.get("--keep_dtype", "keep.cfg"))
    assert command[0] == "atc" and len(set(command[1:])) == len(command) - 1, command
    ours = _flags(command[1:])
    seed_by_name = {_normal_flag(name): (name, value) for name, value in seed.items()}
    differences = {}
    for name in sorted(set(seed_by_name) | set(ours)):
        if name not in ours:
            written, value = seed_by_name[name]
            differences[f"atc:{written}"] = f"the seed passes {written}={value}; the harness does not"
        elif name not in seed_by_name:
            differences[f"atc:{name}"] = f"the harness passes {name}={ours[name]}; the seed does not"
        else:
            written, value = seed_by_name[name]
            notes = []
            if written != name:
                notes.append(f"the seed spells {name} as {written}")
            if value != ours[name]:
                notes.append(f"the seed passes {name}={value}, the harness {ours[name]}")
            if notes:
                differences[f"atc:{written}"] = "; ".join(notes)
    return differences


def shape_differences(spec: ModelSpec, text: str) -> dict[str, str]:
    """The full profile's inputs against the seed's atc --input_shape (names, order, shapes),
    its outputs against the seed's output table (shapes, in order)."""
    differences = {}
    seed_shapes = next(value for name, value in seed_atc_flags(text, 1).items()
                       if _normal_flag(name) == "--input_shape")
    seed_inputs = {}
    for entry in seed_shapes.split(";"):
        name, _, dims = entry.partition(":")
        seed_inputs[name] = tuple(int(d) for d in dims.split(","))[1:]
    ours = dict(spec.profile("full").inputs)
    if list(seed_inputs) != list(ours) and set(seed_inputs) == set(ours):
        differences["input:order"] = f"the seed orders the inputs {list(seed_inputs)}, the card {list(ours)}"
    for name in sorted(set(seed_inputs) | set(ours)):
        seed_shape, our_shape = seed_inputs.get(name), ours.get(name)
        if seed_shape != our_shape:
            differences[f"input:{name}"] = f"the seed's per-sample shape is {seed_shape}, the card's {our_shape}"
    seed_outputs = seed_output_shapes(text)
    if seed_outputs:
        our_outputs = dict(spec.profile("full").outputs)
        if len(seed_outputs) != len(our_outputs):
            differences["output:count"] = f"the seed lists {len(seed_outputs)} outputs, the card {len(our_outputs)}"
        for (name, our_shape), seed_shape in zip(our_outputs.items(), seed_outputs):
            if tuple(our_shape) != seed_shape:
                differences[f"output:{name}"] = f"the seed's per-sample shape is {seed_shape}, the card's {tuple(our_shape)}"
    return differences


def fps_differences(spec: ModelSpec, text: str) -> dict[str, str]:
    seed = seed_reference_fps(text)
    differences = {}
    for soc in sorted(set(seed) | set(spec.reference_fps)):
        seed_row, our_row = seed.get(soc, {}), spec.reference_fps.get(soc, {})
        for batch_size in sorted(set(seed_row) | set(our_row)):
            a, b = seed_row.get(batch_size), our_row.get(batch_size)
            if not (a == b or (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b))):
                differences[f"fps:{soc}:{batch_size}"] = f"the seed's table has {a!r}, the card {b!r}"
    return differences


def published_differences(spec: ModelSpec, text: str) -> dict[str, str]:
    """Each published figure of the card against the figures the seed reports, either way; a
    fraction in the seed stands for a percent metric's figure / 100 (Efficient-3DCNNs' 0.81126)."""
    figures = seed_published_figures(text)

    def same(figure: str, metric) -> bool:
        value = float(figure)
        return math.isclose(value, metric.published) or (
            metric.unit == "%" and math.isclose(100 * value, metric.published))

    published = [m for m in spec.metrics if m.published is not None]
    differences = {}
    for metric in published:
        if not any(same(f, metric) for f in figures):
            differences[f"published:{metric.name}"] = (
                f"the card publishes {metric.name}={metric.published}; the seed reports {figures}")
    for figure in figures:
        if not any(same(figure, m) for m in published):
            differences[f"published:{figure}"] = f"the seed reports {figure}; no card metric publishes it"
    return differences


# --- the seeds' postprocess arithmetic, reimplemented from their scripts ---------------------

def efficient3dcnn_seed_topk(clip_scores: np.ndarray, clip_videos: list[str], labels: dict[str, int],
                             listed: int, k: int) -> float:
    """Efficient-3DCNNs_postprocess.py with upstream's eval_ucf101: clips in .info order, softmaxed
    and averaged per video, a video scored when the next video's first clip arrives (so the last
    one never is), hits divided by every video the annotation lists; in percent."""
    scored, buffer, previous = {}, [], None
    for scores, video in zip(clip_scores, clip_videos):
        if previous is not None and video != previous:
            scored[previous] = np.mean(buffer, axis=0)
            buffer = []
        probabilities = np.exp(scores - scores.max())
        buffer.append(probabilities / probabilities.sum())
        previous = video
    hits = sum(labels[v] in np.argsort(s)[::-1][:k] for v, s in scored.items())
    return 100.0 * hits / listed


def flavr_seed_ssim_psnr(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """FLAVR_postprocess.py's myutils.eval_metrics on one frame: SSIM as pytorch_msssim's
    ssim_matlab (one (C, H, W) volume, an 11x11x11 Gaussian of sigma 1.5 after replicate padding
    of 5, both frames clamped) and the squared error's mean, both in float32 as torch holds them."""
    a = torch.from_numpy(np.clip(pred, 0, 1).astype(np.float32))[None, None]
    b = torch.from_numpy(np.clip(gt, 0, 1).astype(np.float32))[None, None]
    size = min(11, a.shape[3], a.shape[4])
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x * x) / (2 * 1.5 ** 2))
    g = g / g.sum()
    window = (g[:, None, None] * g[None, :, None] * g[None, None, :])[None, None]

    def blur(v):
        return torch.nn.functional.conv3d(torch.nn.functional.pad(v, (5,) * 6, mode="replicate"), window)

    mu1, mu2 = blur(a), blur(b)
    var1, var2, cov = blur(a * a) - mu1 ** 2, blur(b * b) - mu2 ** 2, blur(a * b) - mu1 * mu2
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mu1 * mu2 + c1) * (2 * cov + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (var1 + var2 + c2))
    squared = (torch.from_numpy(pred.astype(np.float32)) - torch.from_numpy(gt.astype(np.float32))).pow(2).mean()
    return float(ssim.mean()), -10 * math.log10(float(squared) + 1e-8)


def _efficient3dcnn_gaps(spec: ModelSpec) -> dict[str, float]:
    """Seed minus suite on the complete split with every video right (one clip each)."""
    listed, classes = spec.published_items, spec.profile("full").outputs["class"][0]
    videos = [f"v{i:04d}" for i in range(listed)]
    labels = {v: i % classes for i, v in enumerate(videos)}
    scores = np.zeros((listed, classes))
    scores[np.arange(listed), [labels[v] for v in videos]] = 10.0
    scorer = spec.new_scorer(spec.profile("full"), spec.protocol_for("full"))
    for video, row in zip(videos, scores):
        scorer.add(Sample(video, {}, (video, labels[video])), {"class": row})
    suite = scorer.result()
    return {f"top{k}": efficient3dcnn_seed_topk(scores, videos, labels, listed, k) - suite[f"top{k}"] for k in (1, 5)}


def _flavr_gaps(spec: ModelSpec) -> dict[str, float]:
    """Seed minus suite on one full-size frame: a smooth texture and a noisy rendering of it."""
    rng = np.random.default_rng(0)
    shape = spec.profile("full").outputs[spec.protocol["published_output"]]
    gt = np.clip(0.5 + 0.3 * np.sin(np.arange(shape[2]) / 7.0)[None, None, :]
                 * np.cos(np.arange(shape[1]) / 11.0)[None, :, None], 0, 1) * np.ones(shape)
    pred = gt + 0.05 * rng.standard_normal(shape)
    seed_ssim, seed_psnr = flavr_seed_ssim_psnr(pred, gt)
    from models.flavr.metrics import psnr, ssim_matlab

    return {"ssim": seed_ssim - ssim_matlab(np.clip(pred, 0, 1), np.clip(gt, 0, 1)), "psnr": seed_psnr - psnr(pred, gt)}


def _flow_probe(spec: ModelSpec, count: int = 2) -> list[tuple[Sample, np.ndarray, np.ndarray]]:
    """(sample, network output, its crop to the ground truth) per pass: Sintel-sized flows whose
    errors spread over 0-6 px, so that every threshold of the metrics is crossed."""
    rng = np.random.default_rng(1)
    name, shape = next(iter(spec.profile("full").outputs.items()))
    height, width = 436, shape[2]  # Sintel's frames; the network's output is padded to shape
    probe = []
    for p in spec.protocol["passes"]:
        for i in range(count):
            gt = rng.uniform(-20, 20, (height, width, 2)).astype(np.float32)
            error = rng.uniform(0, 6, (height, width)) * np.exp(1j * rng.uniform(0, 2 * np.pi, (height, width)))
            output = np.zeros(shape, np.float32)
            top = (shape[1] - height) // 2 if spec.name == "gma" else 0  # GMA pads both sides
            crop = (np.moveaxis(gt, -1, 0) + np.stack([error.real, error.imag])).astype(np.float32)
            output[:, top:top + height] = crop
            probe.append((Sample(f"{p}/scene/frame_{i:04d}", {}, gt), {name: output}, crop))
    return probe


def _suite_scores(spec: ModelSpec, probe) -> dict[str, float]:
    scorer = spec.new_scorer(spec.profile("full"), spec.protocol_for("full"))
    for sample, outputs, _ in probe:
        scorer.add(sample, outputs)
    return scorer.result()


def _flownet2_gaps(spec: ModelSpec) -> dict[str, float]:
    """Flownet2_postprocess.py: per-image mean of float32 numpy norms, averaged over images."""
    probe = [case for case in _flow_probe(spec) if case[0].id.startswith("clean/")]
    seed = np.mean([np.mean(np.linalg.norm(sample.target - np.moveaxis(crop, 0, -1), axis=-1))
                    for sample, _, crop in probe])
    return {"epe_clean": float(seed) - _suite_scores(spec, probe)["epe_clean"]}


def _gma_gaps(spec: ModelSpec) -> dict[str, float]:
    """GMA_postprocess.py: float32 torch EPE per pixel, the share below 1 px over a pass's pixels."""
    probe, gaps = _flow_probe(spec), {}
    suite = _suite_scores(spec, probe)
    for p in spec.protocol["passes"]:
        epe = [torch.sum((torch.from_numpy(crop) - torch.from_numpy(sample.target).permute(2, 0, 1)) ** 2,
                         dim=0).sqrt().view(-1).numpy() for sample, _, crop in probe if sample.id.startswith(p)]
        gaps[f"px1_{p}"] = 100.0 * float(np.mean(np.concatenate(epe) < 1)) - suite[f"px1_{p}"]
    return gaps


def _slowfast_gaps(spec: ModelSpec) -> dict[str, float]:
    """slowfast_postprocess.py: one row per file (its preprocess writes one clip per video), the
    network's softmax as it is, mmaction's top-k over the rows; seed minus suite on 40 videos
    whose labels sit at ranks 0 to 9 of their rows."""
    rng = np.random.default_rng(2)
    classes = spec.profile("full").outputs["class"][0]
    logits = rng.standard_normal((40, classes))
    rows = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = [int(np.argsort(row)[::-1][i % 10]) for i, row in enumerate(rows)]
    scorer = spec.new_scorer(spec.profile("full"), spec.protocol_for("full"))
    for i, (row, label) in enumerate(zip(rows, labels)):
        scorer.add(Sample(f"video{i:02d}", {}, (f"video{i:02d}", label)), {"class": row})
    suite = scorer.result()
    return {f"top{k}": seed_postprocess.mmaction_top_k(rows, labels, k) - suite[f"top{k}"] for k in (1, 5)}


# model -> the published metrics' gaps (seed's arithmetic minus the suite's) on a probe
SEED_ARITHMETIC = {"efficient3dcnn": _efficient3dcnn_gaps, "flavr": _flavr_gaps, "flownet2": _flownet2_gaps,
                   "gma": _gma_gaps, "slowfast": _slowfast_gaps}
ARITHMETIC_NOISE = 1e-12  # gaps below this are the same arithmetic


def postprocess_gaps(spec: ModelSpec) -> dict[str, float]:
    if spec.name not in SEED_ARITHMETIC:
        raise LookupError(f"{spec.name}: no reimplementation of its seed's postprocess arithmetic in "
                          "SEED_ARITHMETIC: its published figures are checked against nothing")
    return SEED_ARITHMETIC[spec.name](spec)


def postprocess_differences(spec: ModelSpec) -> dict[str, str]:
    return {f"postprocess:{name}": f"the seed's postprocess gives {gap:+.3g} against the suite's scorer on the "
                                   "same outputs" for name, gap in postprocess_gaps(spec).items()
            if abs(gap) > ARITHMETIC_NOISE}


def card_differences(spec: ModelSpec, text: str) -> dict[str, str]:
    differences = {**shape_differences(spec, text), **fps_differences(spec, text),
                   **published_differences(spec, text), **postprocess_differences(spec)}
    for batch_size in SEED_BATCH_SIZES:
        differences.update(atc_differences(spec, text, batch_size))
    return differences


def undeclared(spec: ModelSpec, differences: dict[str, str]) -> str:
    """'' when every difference is declared in spec.deviations, else a message naming each."""
    missing = {k: v for k, v in differences.items() if k not in spec.deviations}
    if not missing:
        return ""
    lines = [f"{spec.name}: differs from its seed {spec.seed} where spec.deviations declares nothing "
             "(declare each as key -> why, or fix the card):"]
    lines += [f"  {key}: {why}" for key, why in sorted(missing.items())]
    return "\n".join(lines)


def declaration_problems(spec: ModelSpec, differences: dict[str, str]) -> str:
    """'' when every declared deviation is still a difference and gives a reason."""
    problems = [f"  {key}: declared, but no longer differs from the seed"
                for key in sorted(set(spec.deviations) - set(differences))]
    problems += [f"  {key}: declared without a reason" for key, why in sorted(spec.deviations.items())
                 if not (isinstance(why, str) and why.strip())]
    return "\n".join([f"{spec.name}: spec.deviations against {spec.seed}:", *problems]) if problems else ""


# --- the registered cards ------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", SEED_BATCH_SIZES)
def test_atc_command_matches_seed(model, batch_size):
    problem = undeclared(model, atc_differences(model, seed_text(model), batch_size))
    assert not problem, problem


def test_full_profile_shapes_match_seed(model):
    problem = undeclared(model, shape_differences(model, seed_text(model)))
    assert not problem, problem


def test_reference_fps_matches_seed(model):
    problem = undeclared(model, fps_differences(model, seed_text(model)))
    assert not problem, problem


def test_published_figures_match_seed(model):
    problem = undeclared(model, published_differences(model, seed_text(model)))
    assert not problem, problem


def test_seed_postprocess_arithmetic_is_declared_and_inside_the_band(model):
    problem = undeclared(model, postprocess_differences(model))
    assert not problem, problem
    for name, gap in postprocess_gaps(model).items():
        metric = model.metric(name)
        assert abs(gap) <= metric.published_band, (
            f"{model.name}: the seed's postprocess puts {name} {gap:+.3g} from the suite's, outside the published "
            f"band {metric.published_band}: the published verdict would judge another arithmetic")


def test_the_seed_postprocess_is_measured_for_every_published_metric(model):
    """Each card's published metrics go through its seed's postprocess arithmetic on a probe: a
    model without a reimplementation would pass the two tests above on nothing."""
    published = {m.name for m in model.metrics if m.published is not None}
    assert published <= set(postprocess_gaps(model)), f"{model.name}: {sorted(published)} vs {postprocess_gaps(model)}"


def test_an_undeclared_postprocess_gap_is_reported(model):
    """Every gap measured, once its declaration is taken away, is reported with its size; where
    the seed computes as the suite does (every gap below the noise), none is."""
    gaps = {name: gap for name, gap in postprocess_gaps(model).items() if abs(gap) > ARITHMETIC_NOISE}
    silent = dataclasses.replace(model, deviations={k: v for k, v in model.deviations.items()
                                                    if not k.startswith("postprocess:")})
    problem = undeclared(silent, postprocess_differences(silent))
    for name, gap in gaps.items():
        assert f"  postprocess:{name}: the seed's postprocess gives {gap:+.3g} against the suite's scorer" in problem
    assert ("postprocess:" in problem) == bool(gaps), problem


def test_efficient3dcnn_seed_postprocess_leaves_the_last_video_unscored():
    """The reimplementation itself: three videos listed, the last one right, scored by nobody."""
    scores = np.array([[5.0, 0.0], [5.0, 0.0], [0.0, 5.0], [0.0, 5.0]])
    videos, labels = ["a", "a", "b", "c"], {"a": 0, "b": 1, "c": 1}
    assert efficient3dcnn_seed_topk(scores, videos, labels, listed=3, k=1) == pytest.approx(200 / 3)


def test_every_declared_deviation_is_a_difference_with_a_reason(model):
    problem = declaration_problems(model, card_differences(model, seed_text(model)))
    assert not problem, problem


def test_seed_tables_were_read(model):
    """The parsers found what every seed has: an atc command, a reference FPS table, figures."""
    text = seed_text(model)
    assert seed_reference_fps(text).get(SEED_SOC), f"{model.seed}: no {SEED_SOC} FPS table read"
    assert seed_published_figures(text), f"{model.seed}: no published accuracy figure read"
    assert all(seed_atc_flags(text, bs)["--framework"] == "5" for bs in SEED_BATCH_SIZES)


# --- an undeclared deviation fails ----------------------------------------------------------

def _first_input_widened(spec: ModelSpec) -> ModelSpec:
    full = spec.profile("full")
    name, shape = next(iter(full.inputs.items()))
    inputs = {**full.inputs, name: (*shape[:-1], shape[-1] + 8)}
    return dataclasses.replace(spec, profiles={**spec.profiles, "full": dataclasses.replace(full, inputs=inputs)})


def test_undeclared_shape_deviation_is_reported(model):
    changed = _first_input_widened(model)
    name = next(iter(changed.profile("full").inputs))
    problem = undeclared(changed, shape_differences(changed, seed_text(model)))
    assert f"  input:{name}: the seed's per-sample shape is" in problem
    assert problem.startswith(f"{model.name}: differs from its seed {model.seed} where spec.deviations declares nothing")
    # declared, it passes
    declared = dataclasses.replace(changed, deviations={**changed.deviations, f"input:{name}": "wider on purpose"})
    assert not undeclared(declared, shape_differences(declared, seed_text(model)))


def test_undeclared_atc_fps_and_published_deviations_are_reported(model):
    text = seed_text(model)
    other_format = dataclasses.replace(model, compile_options={
        **model.compile_options, "ascend": dataclasses.replace(atc_options(model), input_format="NHWC")})
    assert "atc:--input_format" in undeclared(other_format, atc_differences(other_format, text, 1))

    soc, row = next(iter(model.reference_fps.items()))
    batch_size = next(bs for bs, fps in row.items() if fps != OOM)
    slower = dataclasses.replace(model, reference_fps={**model.reference_fps, soc: {**row, batch_size: row[batch_size] / 2}})
    assert f"fps:{soc}:{batch_size}: the seed's table has" in undeclared(slower, fps_differences(slower, text))

    metric = next(m for m in model.metrics if m.published is not None)
    moved = dataclasses.replace(metric, published=metric.published + 1.0)
    retold = dataclasses.replace(model, metrics=tuple(moved if m is metric else m for m in model.metrics))
    problem = undeclared(retold, published_differences(retold, text))
    assert f"published:{metric.name}: the card publishes {metric.name}={moved.published}" in problem


def test_stale_or_unexplained_declaration_is_reported(model):
    differences = card_differences(model, seed_text(model))
    stale = dataclasses.replace(model, deviations={**model.deviations, "atc:--no_such_flag": "was true once"})
    assert "  atc:--no_such_flag: declared, but no longer differs from the seed" in declaration_problems(stale, differences)
    key = next(iter(differences), None) or pytest.skip(f"{model.name} declares no deviation to blank")
    blank = dataclasses.replace(model, deviations={**model.deviations, key: " "})
    assert f"  {key}: declared without a reason" in declaration_problems(blank, differences)


def test_without_the_seeds_folder_the_comparison_skips_saying_why(model, monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "SEEDS", tmp_path / "seeds")
    with pytest.raises(pytest.skip.Exception, match=rf"the seeds folder {tmp_path / 'seeds'} is not here"):
        seed_text(model)
