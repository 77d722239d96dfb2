"""Model versions in object storage (`STREAMREC_MODELS_URL=s3://...`), against a real S3 server
(moto's, started by the session): written once by the worker, read by any replica through its own
cache, verified by checksum, invisible until whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.als import ALSModel
from models.errors import CorruptModelError, ModelNotFoundError
from models.registry import ModelRegistry
from models.storage import ObjectStore
from recommender.cf.refits import Trainer
from recommender.lifecycle.families import cf_registry
from recommender.lifecycle.state import ModelState
from recommender.serving import reasons
from recommender.serving.service import RecommendationService
from recommender.store.features import FeatureStore
from tests.conftest import S3
from tests.factories import PLAIN_SERVING, SCI_FI, clustered_interactions, clustered_matrix

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model() -> ALSModel:
    m = ALSModel(factors=8, iterations=10, regularization=1.0, random_state=1)
    m.fit(clustered_matrix())
    return m


def _registry(s3: S3, url: str, cache: Path) -> ModelRegistry:
    return ModelRegistry(ObjectStore(url, cache, s3.storage_options), {"cf": ALSModel})


def test_a_version_written_by_one_process_is_read_by_another(s3, model, tmp_path: Path):
    url = f"s3://{s3.bucket()}/models"
    writer = _registry(s3, url, tmp_path / "worker-cache").family("cf")
    reader = _registry(s3, url, tmp_path / "replica-cache").family("cf")
    assert reader.versions() == []
    v1 = writer.save(model, {"watermark": 10})
    v2 = writer.save(model, {"watermark": 20})

    assert reader.versions() == sorted([v1, v2])
    assert reader.metadata(v2)["watermark"] == 20
    history = {item: 1.0 for item in SCI_FI[:4]}
    loaded = reader.load(v1)
    assert loaded.recommend(history, 5)[0].tolist() == model.recommend(history, 5)[0].tolist()
    assert (tmp_path / "replica-cache" / "cf" / v1 / ALSModel.artifact).is_file()
    with pytest.raises(ModelNotFoundError):
        reader.load("20990101T000000-abcdef")

    assert writer.prune(newest=1, keep=set()) == [v1]
    assert reader.versions() == [v2]


def test_a_damaged_object_is_refused_and_a_half_written_version_is_invisible(
    s3, model, tmp_path: Path
):
    bucket = s3.bucket()
    url = f"s3://{bucket}/models"
    writer = _registry(s3, url, tmp_path / "w").family("cf")
    version = writer.save(model, {})
    store = writer.store
    assert isinstance(store, ObjectStore)
    artifact = f"{bucket}/models/cf/{version}/{ALSModel.artifact}"
    store.fs.pipe_file(artifact, store.fs.cat_file(artifact)[:-100])  # truncated in the bucket
    with pytest.raises(CorruptModelError):
        _registry(s3, url, tmp_path / "r").family("cf").load(version)

    # A worker killed between its artifact and its metadata: no reader sees that version.
    store.fs.pipe_file(f"{bucket}/models/cf/20990101T000000-abcdef/{ALSModel.artifact}", b"x")
    assert _registry(s3, url, tmp_path / "r2").family("cf").versions() == [version]


async def test_a_replica_on_another_disk_serves_the_workers_refit_from_s3(
    s3, settings, redis, tmp_path: Path
):
    """The worker's refit lands in the bucket; an API replica with an empty data dir of its own
    serves that version: the pointer in Redis, the artifact from S3."""
    url = f"s3://{s3.bucket()}/models"
    worker = settings.model_copy(
        update={"models_url": url, "models_storage_options": s3.storage_options}
    )
    replica = worker.model_copy(update={"data_dir": tmp_path / "replica"})
    store = FeatureStore(redis, worker)
    await store.apply_interactions(clustered_interactions())
    version = await Trainer(store, ModelState(redis), cf_registry(worker), worker).refit()
    assert not worker.models_dir.exists()  # nothing on the worker's disk but its cache

    service = RecommendationService(store, ModelState(redis), cf_registry(replica), PLAIN_SERVING)
    recs = await service.recommend("a0", 5)
    assert recs.model_version == version
    assert {i.reason for i in recs.items} == {reasons.CF}
    assert (tmp_path / "replica" / "models-cache" / "cf" / version).is_dir()
