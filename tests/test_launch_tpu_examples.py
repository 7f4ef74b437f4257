"""The example cluster definitions in examples/cluster/ (a GCP TPU cluster for `ray up`, a
KubeRay RayCluster on GKE), checked offline by Ray's own validation and TPU arithmetic, and
against this project's planner and slice runner."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from launch.tpu import slice_topology

ROOT = pathlib.Path(__file__).resolve().parent.parent

EXAMPLES = ROOT / "examples" / "cluster"
GKE_TPU_ACCELERATORS = {"tpu-v4-podslice": "v4", "tpu-v5p-slice": "v5p", "tpu-v5-lite-podslice": "v5litepod",
                        "tpu-v6e-slice": "v6e"}


def gcp_example() -> dict:
    return yaml.safe_load((EXAMPLES / "gcp-tpu-v4-16.yaml").read_text())


def test_gcp_tpu_cluster_yaml_passes_rays_config_validation():
    """Ray's own checks that need no cloud: `prepare_config` (merges Ray's GCP defaults, read from
    a file inside Ray) and `validate_config` (Ray's cluster-config JSON schema and its cross-field
    rules), plus Ray's TPU type check on each slice node type. Not checked here: Ray's GCP
    bootstrap (it calls the GCP APIs) and image/zone availability."""
    import copy

    import jsonschema
    from ray._private.accelerators.tpu import TPUAcceleratorManager
    from ray.autoscaler._private.util import prepare_config, validate_config

    from launch.tpu_types import parse_pod_type

    config = prepare_config(copy.deepcopy(gcp_example()))
    validate_config(config)
    types = config["available_node_types"]
    slices = {name: t for name, t in types.items() if "acceleratorType" in t["node_config"]}
    assert slices, "no TPU node type"
    for t in slices.values():
        accelerator = t["node_config"]["acceleratorType"]
        assert TPUAcceleratorManager.is_valid_tpu_accelerator_type(accelerator)
        assert "machineType" not in t["node_config"] and t["node_config"]["runtimeVersion"]
        assert t["resources"] == {"TPU": parse_pod_type(accelerator).spec.chips_per_host}
        assert t["min_workers"] == t["max_workers"]  # multi-host slices are provisioned up front
    head = types[config["head_node_type"]]
    assert "machineType" in head["node_config"] and not head["resources"].get("TPU")
    assert "--num-cpus=0" in " ".join(config["head_start_ray_commands"])
    preset = yaml.safe_load((ROOT / "conf" / "launcher" / "tpu.yaml").read_text())
    assert preset["tpu_type"] in {t["node_config"]["acceleratorType"] for t in slices.values()}

    broken = copy.deepcopy(config)  # the validation has teeth
    broken["available_node_types"][next(iter(slices))]["resources"] = {"TPU": "four"}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(broken)


def test_gcp_tpu_node_configs_pass_rays_gcp_node_checks():
    """Ray's GCP provider's own node-type check (TPU vs compute, accelerator fields). Its module
    imports the Google API client (a test dependency, and the `gcp` extra); nothing is called."""
    from ray.autoscaler._private.gcp.config import get_node_type
    from ray.autoscaler._private.gcp.node import GCPNodeType

    types = gcp_example()["available_node_types"]
    kinds = {name: get_node_type(t["node_config"]) for name, t in types.items()}
    assert kinds["head"] == GCPNodeType.COMPUTE and kinds["tpu_v4_16"] == GCPNodeType.TPU


def test_kuberay_manifest_makes_each_replica_a_whole_slice():
    """Structure only (no Kubernetes API or CRD schema offline): a ray.io/v1 RayCluster whose TPU
    worker group's numOfHosts, google.com/tpu requests/limits and GKE node selectors agree with
    the topology by Ray's own TPU arithmetic, and with this project's planner."""
    import ray
    from ray._private.accelerators.tpu import (TPUAcceleratorManager, get_chips_per_host,
                                               get_num_chips_from_topology, infer_tpu_pod_type_from_topology)

    from launch.tpu_types import parse_pod_type

    docs = [d for d in yaml.safe_load_all((EXAMPLES / "kuberay-tpu-v4-16.yaml").read_text()) if d]
    (cluster,) = [d for d in docs if d.get("kind") == "RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["spec"]["rayVersion"] == ray.__version__
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = [g for g in cluster["spec"]["workerGroupSpecs"]
              if "google.com/tpu" in g["template"]["spec"]["containers"][0]["resources"].get("limits", {})]
    assert groups, "no TPU worker group"
    for group in groups:
        pod = group["template"]["spec"]
        topology = pod["nodeSelector"]["cloud.google.com/gke-tpu-topology"]
        generation = GKE_TPU_ACCELERATORS[pod["nodeSelector"]["cloud.google.com/gke-tpu-accelerator"]]
        assert TPUAcceleratorManager.is_valid_tpu_accelerator_topology(generation, topology)
        per_host = get_chips_per_host(topology, generation)
        assert group["numOfHosts"] == get_num_chips_from_topology(topology) // per_host
        for container in pod["containers"]:
            res = container["resources"]
            assert res["requests"]["google.com/tpu"] == res["limits"]["google.com/tpu"] == str(per_host)
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        pod_type = infer_tpu_pod_type_from_topology(topology, generation)
        assert parse_pod_type(pod_type).hosts == group["numOfHosts"]  # the planner sizes it the same
        assert slice_topology(pod_type) == topology  # and launch/tpu.py reserves this topology
