"""What a real copy, disk or hand edit puts into a dataset or into the suite's own cache must
never reach a verdict unchecked: the suite run in a sandbox (as tests/test_fault_injection.py)
against an index that lists an item twice, a file holding less than it declares, non-finite
ground truth, and damaged cache entries; red naming the culprit, or green with a note where the
damage is the suite's own and repaired (a rebuilt cache entry)."""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from harness import registry


def _notes(result) -> list[str]:
    return [f["message"] for r in result.results["records"] for f in r.get("findings", []) if f["kind"] == "note"]


def _generated(spec_name: str, root: Path) -> Path:
    spec = registry.get(spec_name)
    spec.generate_dataset(root / spec.dataset_dir, spec.profile("smoke"), spec.protocol_for("smoke"))
    return root


def _run(run_suite, model: str, root: Path, *options: str):
    return run_suite(f"--models={model}", "--batch-sizes=1", f"--data-root={root}", "-m", "accuracy", *options)


def _list_twice(annotation: Path, video_id: str) -> None:
    """The split json with ``video_id``'s entry written twice (json.dumps cannot repeat a key)."""
    index = json.loads(annotation.read_text())
    pairs = [(k, v) for k, v in index["database"].items()] + [(video_id, index["database"][video_id])]
    database = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs)
    annotation.write_text(f'{{"labels": {json.dumps(index["labels"])}, "database": {{{database}}}}}')


def test_a_video_the_split_json_lists_twice_fails_naming_it_unless_accepted(run_suite, tmp_path):
    root = _generated("efficient3dcnn", tmp_path / "data")
    annotation = root / "UCF101" / "annotation" / "ucf101_01.json"
    _list_twice(annotation, "v_Archery_g01_c01")
    result = _run(run_suite, "efficient3dcnn", root)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*unreadable item v_Archery_g01_c01 under *: listed 2 times in {annotation}*"])
    accepted = _run(run_suite, "efficient3dcnn", root, "--accept-bad-items=v_Archery_g01_c01")
    accepted.assert_outcomes(passed=1)
    assert _notes(accepted) == ["left out as accepted with --accept-bad-items: v_Archery_g01_c01"]


def test_a_line_the_kinetics_list_holds_twice_fails_naming_the_video(run_suite, tmp_path):
    root = _generated("slowfast", tmp_path / "data")
    listing = root / "kinetics400" / "kinetics400_val_list_videos.txt"
    first = listing.read_text().splitlines()[0]
    listing.write_text(listing.read_text() + first + "\n")
    result = _run(run_suite, "slowfast", root)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*unreadable item {first.split()[0]} under *: listed 2 times in {listing}*"])


def test_an_n_frames_below_the_frames_the_folder_holds_fails_naming_both(run_suite, tmp_path):
    root = _generated("efficient3dcnn", tmp_path / "data")
    video = sorted((root / "UCF101" / "rawframes").glob("*/*"))[0]
    held = int((video / "n_frames").read_text())
    (video / "n_frames").write_text(str(held - 4))
    result = _run(run_suite, "efficient3dcnn", root)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*unreadable item {video.name} under *: *n_frames says {held - 4} frames, "
                                 f"the folder holds {held}*"])


def _truncate_keeping_the_header(video: Path, fraction: float) -> None:
    """What an interrupted copy of a streaming-ready mp4 leaves: its index (moov, at the front)
    declares every frame, the data after the cut is gone."""
    remuxed = video.with_name("remuxed.mp4")
    with av.open(str(video)) as source, av.open(str(remuxed), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = remuxed.read_bytes()
    remuxed.unlink()
    video.write_bytes(data[: int(len(data) * fraction)])


def test_a_truncated_video_fails_naming_the_frames_declared_and_held(run_suite, tmp_path):
    root = _generated("slowfast", tmp_path / "data")
    video = sorted((root / "kinetics400" / "videos_val").rglob("*.mp4"))[1]
    _truncate_keeping_the_header(video, 0.6)
    result = _run(run_suite, "slowfast", root)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*unreadable item */{video.name} under *: {video}: the container declares 72 "
                                 "frames, its video stream holds * (a truncated or damaged file?)*"])


@pytest.mark.parametrize("value, what", [(np.nan, "NaN or Inf"), (2e9, "unknown flow (|u| or |v| > 1e+09)")])
def test_undefined_ground_truth_flow_fails_the_pair_with_its_count(run_suite, tmp_path, value, what):
    from harness.sintel import read_flo, write_flo

    root = _generated("gma", tmp_path / "data")
    flo = sorted((root / "MPI-Sintel" / "training" / "flow").rglob("*.flo"))[0]
    flow = read_flo(flo)
    flow[:2, :3, 0] = value  # 6 pixels
    write_flo(flo, flow)
    result = _run(run_suite, "gma", root)
    result.assert_outcomes(failed=1)
    pixels = flow.shape[0] * flow.shape[1]
    result.stdout.fnmatch_lines([f"*unreadable item */{flo.parent.name}/{flo.stem} under *: {flo}: 6 of {pixels} "
                                 f"pixels hold {what}; MPI-Sintel's ground truth is dense*"])


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _sample_entries(cache: Path) -> list[Path]:
    return sorted(p.parent for p in (cache / "samples" / "efficient3dcnn").glob("??/*/samples.pkl"))


DAMAGES = {  # what a flipped bit, an interrupted write or a full disk leaves in the cache
    "a flipped bit in a cached sample": lambda cache: _flip_last_byte(sorted(_sample_entries(cache)[0].glob("*.npy"))[0]),
    "a truncated cached array": lambda cache: (lambda npy: npy.write_bytes(npy.read_bytes()[:200]))(
        sorted(_sample_entries(cache)[1].glob("*.npy"))[0]),
    "an empty sample index": lambda cache: (_sample_entries(cache)[2] / "samples.pkl").write_bytes(b""),
    "a flipped bit in a reference output": lambda cache: _flip_last_byte(sorted((cache / "reference").rglob("*.npz"))[0]),
}


def test_damaged_cache_entries_are_rebuilt_never_used_and_said_so(run_suite, tmp_path):
    """One cold run fills a cache; each damage is then found on the next run's read, the entry
    rebuilt from the dataset or the network, and the row green with the rebuild noted (a damaged
    artifact: built again with a warning)."""
    cache = tmp_path / "cache"
    options = ("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy", f"--cache-dir={cache}")
    run_suite(*options).assert_outcomes(passed=1)
    for damage, apply in DAMAGES.items():
        apply(cache)
        result = run_suite(*options)
        result.assert_outcomes(passed=1)
        notes = [n for n in _notes(result) if n.startswith("rebuilt ")]
        assert len(notes) == 1 and notes[0].startswith("rebuilt 1 cache entries: "), (damage, _notes(result))
        assert str(cache) in notes[0], (damage, notes)
        if damage.startswith("a flipped bit"):
            assert "does not match the xxh3_128 digest written with it" in notes[0], notes
        again = run_suite(*options)  # repaired: nothing to rebuild
        assert not [n for n in _notes(again) if n.startswith("rebuilt ")], (damage, _notes(again))

    # a built artifact: built again (one cold run serves both, exporting takes the most of it)
    onnx = sorted((cache / "onnx" / "efficient3dcnn").glob("*.onnx"))[0]
    _flip_last_byte(onnx)
    result = run_suite(*options)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*CacheEntryRebuilt: rebuilding the cache artifact {onnx}: its content does not match the "
                                 "xxh3_128 digest written with it*"])
    assert result.results["artifacts_built"] == 1


def test_nan_in_a_seeds_preprocessed_input_fails_with_its_count(tmp_path, suite_cache):
    """A NaN difference never exceeds a tolerance: the comparison must count it as beyond."""
    from harness import aisbench, stages

    spec = registry.get("efficient3dcnn")
    samples = list(stages.open_dataset(spec, "smoke", None, suite_cache))
    folder = tmp_path / spec.name
    aisbench.write_seed_inputs(folder, spec.seed_bin_layout, samples)
    path = folder / "bin1" / "1.bin"
    clip = np.fromfile(path, dtype=np.float32)
    clip[:5] = np.nan
    clip.tofile(path)
    comparison = aisbench.compare_seed_inputs(folder, spec.seed_bin_layout, samples, spec.profile("smoke").inputs)
    assert not comparison.passed
    assert [d.file for d in comparison.differences] == [f"bin1/1.bin (the seed file holds 5 NaN or Inf of "
                                                         f"{clip.size} values)"], comparison.message()
