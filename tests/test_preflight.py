"""The preflight: what can only be checked by connecting is checked before anything is written.

Each failure exits 2 with one message naming the field and the cause, prints no traceback and
leaves no study folder.  Checks that come before Ray starts run in this process (``cli.call``);
the cluster's resources need a real local Ray, so that one runs the real CLI process.
"""

import socket
import time

import numpy as np
import pytest
from scaffold import free_port, tiny_spec

from trainers.data.files import DSPRITES_NAMES


def _refused(result, study_dir, *expected):
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert not study_dir.exists(), sorted(p.name for p in study_dir.iterdir())


def test_a_postgresql_port_with_nothing_listening(cli, tmp_path):
    url = f"postgresql://root@127.0.0.1:{free_port()}/optuna"
    spec = cli.write_spec(tiny_spec(search={"storage": url}))
    result = cli.call("run", spec, "--study-dir", tmp_path / "study")
    _refused(result, tmp_path / "study", "search.storage: cannot connect to postgresql://root@127.0.0.1:")


def test_a_tracking_server_that_accepts_but_never_answers(cli, tmp_path):
    with socket.socket() as silent:  # the kernel completes the handshake; nobody ever reads
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        spec = cli.write_spec(tiny_spec(tracking={"uri": uri}))
        began = time.monotonic()
        result = cli.call("run", spec, "--study-dir", tmp_path / "study")
    _refused(result, tmp_path / "study", f"tracking.uri: {uri} did not answer within 10 s")
    assert time.monotonic() - began < 30


@pytest.mark.parametrize(
    "resources, expected",
    [
        ({"gpus": 0}, "training.device: cuda needs a GPU per trial, but resources.gpus is 0"),
        ({"gpus": 1}, "training.device: cuda, but this machine has no usable CUDA device"),
    ],
)
def test_a_device_the_machine_lacks(cli, tmp_path, resources, expected):
    if resources["gpus"] and __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    spec = cli.write_spec(tiny_spec(training={"device": "cuda"}, resources=resources))
    _refused(cli.call("run", spec, "--study-dir", tmp_path / "study"), tmp_path / "study", expected)


def test_a_study_dir_that_is_a_file_and_a_data_file_of_the_wrong_size(cli, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    result = cli.call("run", cli.write_spec(tiny_spec()), "--study-dir", taken)
    assert result.returncode == 2 and f"--study-dir: {taken} is a file, not a folder" in result.stderr
    assert taken.read_text() == "a file"

    sizes = (1, 3, 2, 2, 2, 2)
    classes = np.stack(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij"), -1).reshape(-1, len(DSPRITES_NAMES))
    small = tmp_path / "dsprites_32.npz"
    np.savez(small, imgs=np.zeros((len(classes), 32, 32), np.uint8), latents_classes=classes)
    spec = cli.write_spec(tiny_spec(dataset="dsprites_file", dataset_options={"path": str(small)}))
    result = cli.call("run", spec, "--study-dir", tmp_path / "study")
    _refused(result, tmp_path / "study", f"{small}: imgs are 32×32 images; the models take 64×64")


@pytest.mark.integration
def test_gpus_the_cluster_lacks(cli, tmp_path):
    """A local Ray on this CPU host has no GPU, and no autoscaler can add one: refused in seconds."""
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    began = time.monotonic()
    spec = cli.write_spec(tiny_spec(resources={"gpus": 1}))
    result = cli.run("run", spec, "--study-dir", tmp_path / "study", timeout=120)
    _refused(result, tmp_path / "study", "resources.gpus: each trial asks for 1 GPU(s), but no node of the cluster")
    assert time.monotonic() - began < 60


def test_the_cluster_check_from_a_node_list():
    """What `submit` checks from the dashboard's node list (``autoscaler=None``: cannot tell)."""
    from study.preflight import PreflightError, check_cluster
    from study.spec import parse_spec

    spec = parse_spec(tiny_spec(resources={"cpus": 4}))
    with pytest.raises(PreflightError, match=r"storage\.shared: this Ray cluster has 2 nodes"):
        check_cluster(spec, [{"CPU": 8}, {"CPU": 8}], autoscaler=None)
    assert check_cluster(spec, [{"CPU": 4}], autoscaler=None) is None
    note = check_cluster(spec, [{"CPU": 2}], autoscaler=None)
    assert note.startswith("resources.cpus: no node has 4 CPU(s)") and "driver checks again" in note
    assert "autoscaler adds one" in check_cluster(spec, [{"CPU": 2}], autoscaler=True)
    with pytest.raises(PreflightError, match=r"resources\.cpus: each trial asks for 4 CPU"):
        check_cluster(spec, [{"CPU": 2}], autoscaler=False)
