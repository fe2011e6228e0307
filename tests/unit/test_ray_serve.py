"""The Ray Serve configuration: a serve config file and deployment options, without starting Ray."""

from __future__ import annotations

import pytest
import yaml

from ..conftest import REPO


def test_serve_config_file_and_deployment_options():
    from ray.serve.schema import ServeDeploySchema

    from hebbian_mirror.config import load_settings
    from hebbian_mirror.errors import ConfigError
    from hebbian_mirror.server.ray_serve import app_builder, model_options

    config = yaml.safe_load((REPO / "deploy" / "serve.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    app = config["applications"][0]
    module, name = app["import_path"].split(":")
    assert (module, name) == ("hebbian_mirror.server.ray_serve", "app_builder")
    app_builder(app["args"])  # the deployments and their options build from the file's settings
    options = model_options(load_settings(**app["args"]))
    assert options["autoscaling_config"]["max_replicas"] == 4 and options["max_ongoing_requests"] == 16
    assert model_options(load_settings(ray_replicas=3))["num_replicas"] == 3
    gpu = model_options(load_settings(ray_gpus_per_replica=1, ray_cpus_per_replica=2))["ray_actor_options"]
    assert gpu == {"num_cpus": 2, "num_gpus": 1}
    assert model_options(load_settings(max_batch_size=8))["max_ongoing_requests"] == 16
    with pytest.raises(ConfigError, match="batches could never fill"):
        model_options(load_settings(max_batch_size=8, ray_max_ongoing_requests=4))
    with pytest.raises(ConfigError, match="below"):
        model_options(load_settings(ray_min_replicas=3, ray_max_replicas=2))
