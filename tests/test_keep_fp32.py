"""``harness.keep_fp32``: ATC's --keep_dtype file read and written, the search that finds
``OpType::InstanceNorm`` for the known case within its run budget, ``--keep-fp32 FILE`` checked
as an option, and a found list reaching the ``atc`` command line on the fake toolkit."""
from __future__ import annotations

import json
import zipfile
from types import SimpleNamespace

import pytest
from test_harness_options import options

import instance_norm_model as known
from conftest import TINY_INPUTS
from fixtures.options import resolve_options
from harness.backends.ascend import KEEP_DTYPE_CFG, AscendBackend, AtcOptions, static_input_shapes
from harness.config import RunConfig
from harness.keep_fp32 import KeepSearch, format_keep_dtype, parse_keep_dtype, read_keep_dtype


def test_keep_dtype_file_round_trips_and_skips_comments(tmp_path):
    text = "# kept in fp32\nOpType::InstanceNorm\n\n  /fnet/norm1/InstanceNormalization  \n"
    entries = parse_keep_dtype(text, "keep.cfg")
    assert entries == ("OpType::InstanceNorm", "/fnet/norm1/InstanceNormalization")
    path = tmp_path / "keep.cfg"
    path.write_text(format_keep_dtype(entries))
    assert path.read_text() == "OpType::InstanceNorm\n/fnet/norm1/InstanceNormalization\n"
    assert read_keep_dtype(path).lines == entries and read_keep_dtype(path).source == f"--keep-fp32 {path}"


def test_a_bad_keep_dtype_file_is_named_with_its_line(tmp_path):
    with pytest.raises(ValueError, match=r"keep.cfg line 2: 'OpType::' names no operator type"):
        parse_keep_dtype("OpType::Relu\nOpType::\n", "keep.cfg")
    with pytest.raises(ValueError, match=r"--keep-fp32 .*absent.cfg: no such file \(expected ATC's --keep_dtype"):
        read_keep_dtype(tmp_path / "absent.cfg")


@pytest.fixture(scope="module")
def known_case(tmp_path_factory):
    return known.build(tmp_path_factory.mktemp("known"))


def test_search_proposes_the_instance_norm_type_and_says_what_each_candidate_gave(known_case):
    onnx_path, feeds, reference = known_case
    said = []
    search = KeepSearch(known.SPEC, onnx_path, feeds, reference, max_runs=6, log=said.append)
    found = search.run()
    assert found is not None and found.keep == ("OpType::InstanceNorm",) and found.passed
    assert said[0].startswith("  run 1: nothing kept: outside tolerance")
    assert "localised with nothing kept: divergence on ascend-preview (fp16) starts at node " \
           "/norm/InstanceNormalization" in said[1]
    assert said[2].startswith("  run 3: OpType::InstanceNorm: within tolerance (0/")
    assert search.runs == 3


def test_search_stops_at_its_run_budget(known_case):
    onnx_path, feeds, reference = known_case
    search = KeepSearch(known.SPEC, onnx_path, feeds, reference, max_runs=2, log=lambda _: None)
    assert search.run() is None and search.runs == 2 and [t.keep for t in search.trials] == [()]


def test_keep_fp32_option_is_read_at_once_and_needs_an_ascend_backend(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("OpType::\n")
    with pytest.raises(pytest.UsageError, match=r"bad.cfg line 1: 'OpType::' names no operator type"):
        resolve_options(options(backend="ascend-preview", keep_fp32=str(bad)))
    good = tmp_path / "keep.cfg"
    good.write_text("OpType::InstanceNorm\n")
    with pytest.raises(pytest.UsageError, match=r"--keep-fp32 .*keep.cfg: only the ascend and ascend-preview "
                                                r"backends compile with a keep list; --backend is onnxruntime"):
        resolve_options(options(keep_fp32=str(good)))
    assert resolve_options(options(backend="ascend-preview", keep_fp32=str(good))).keep_fp32 == good.resolve()


def test_a_found_list_reaches_atc_as_keep_dtype_instead_of_the_cards(fake_ascend_toolkit_tools, tiny_onnx, tmp_path):
    found = tmp_path / "found.cfg"
    found.write_text(format_keep_dtype(("OpType::InstanceNorm", "/conv/Conv")))
    spec = SimpleNamespace(input_names=tuple(TINY_INPUTS), profiles={"full": SimpleNamespace(inputs=TINY_INPUTS)},
                           compile_options={"ascend": AtcOptions(input_format=None, keep_fp32=("OpType::Conv3D",))})
    backend = AscendBackend.from_options(RunConfig(backends=("ascend",), soc="Ascend310P3", keep_fp32=found))
    om = backend.compile(tiny_onnx, static_input_shapes(spec, "full", 1), tmp_path / "k.om", spec)
    with zipfile.ZipFile(om) as archive:
        atc = json.loads(archive.read("atc_args.json"))
    assert atc["keep_dtype"] == KEEP_DTYPE_CFG and atc["keep_dtype_lines"] == ["OpType::InstanceNorm", "/conv/Conv"]
    env = backend.environment(spec)
    assert env["keep_fp32"] == ["OpType::InstanceNorm", "/conv/Conv"]
    assert env["keep_fp32_from"] == f"--keep-fp32 {found}"
    card = AscendBackend("default", soc="Ascend310P3").environment(spec)
    assert card["keep_fp32"] == ["OpType::Conv3D"] and card["keep_fp32_from"] == "the model card"
