"""Open-vocabulary 3D queries (gausstr_core.query) on hand-made scenes with known answers."""

from __future__ import annotations

import pytest
import torch
from query_scene import CAR_AT, GRID, PERSON_AT, street_prediction

from gausstr_core.grid import VoxelGrid
from gausstr_core.query import DEFAULT_THRESHOLD, PromptError, SceneQuery, find_clusters
from gausstr_core.voxelize import voxelize_gaussians


def _distance(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return float(torch.dist(torch.tensor(a), torch.tensor(b)))


def test_top_clusters_sit_on_the_asked_objects_and_absent_concepts_stay_below_threshold() -> None:
    prediction, prototypes, encoder = street_prediction()
    engine = SceneQuery(encoder.encode)
    car, person, giraffe, road = engine.query(prediction, ["car", "pedestrian", "giraffe", "road"], prototypes, 4e-2)
    assert _distance(car.clusters[0].centroid, CAR_AT) < 0.4
    assert _distance(person.clusters[0].centroid, PERSON_AT) < 0.4
    assert car.clusters[0].voxel_count > person.clusters[0].voxel_count > 0
    assert car.clusters[0].max_relevance > 0.9 and all(c.score <= car.clusters[0].score for c in car.clusters)
    assert abs(road.clusters[0].centroid[2]) < 0.3 and road.clusters[0].extent[0] > 15
    assert giraffe.clusters == [] and giraffe.max_relevance < DEFAULT_THRESHOLD
    for answer in (car, person, giraffe, road):
        assert answer.relevance.shape == GRID.dims
        assert float(answer.relevance.min()) >= 0 and float(answer.relevance.max()) <= 1
        assert bool((answer.relevance[prediction.density <= 4e-2] == 0).all())  # free voxels are never relevant
    # Relevant voxels: above the threshold, nearest the ego first.
    centres, values = car.relevant_voxels(GRID)
    assert len(centres) == int((car.relevance > DEFAULT_THRESHOLD).sum()) and bool((values > DEFAULT_THRESHOLD).all())
    assert torch.all(torch.diff(torch.from_numpy(centres).norm(dim=1)) >= -1e-5)


def test_voxel_relevance_is_the_density_weighted_mean_of_gaussian_relevance() -> None:
    prediction, prototypes, encoder = street_prediction(noise=2.0)  # noisy features: many partly relevant Gaussians
    g = prediction.gaussians
    for floor in (0.0, 1e-3):
        engine = SceneQuery(encoder.encode, min_gaussian_relevance=floor)
        answer = engine.query(prediction, ["car"], prototypes, 4e-2)[0]
        density, mean = voxelize_gaussians(g.means[0], g.covariances[0], g.opacities[0],
                                           answer.gaussian_relevance[:, None], GRID)
        expected = torch.where(density > 4e-2, mean[..., 0], 0.0)
        assert torch.allclose(density, prediction.density, atol=1e-6)
        assert float((answer.relevance - expected).abs().max()) <= floor + 1e-5


def test_background_leaves_out_the_query_class_and_near_duplicates() -> None:
    prediction, prototypes, encoder = street_prediction()
    engine = SceneQuery(encoder.encode)
    car, human, obj = engine.query(prediction, ["Car", "human", "object"], prototypes, 4e-2)
    assert car.background == ["person", "road", "sky", "object", "thing", "stuff", "texture"]
    assert "person" not in human.background  # the synthetic encoder gives 'human' the pedestrian prototype
    assert "object" not in obj.background and "car" in obj.background
    assert human.clusters and _distance(human.clusters[0].centroid, PERSON_AT) < 0.4


def test_prototypes_of_seen_prompts_are_cached_and_vocabulary_prompts_never_encoded() -> None:
    prediction, prototypes, encoder = street_prediction()
    calls: list[list[str]] = []

    def encode(prompts: list[str]) -> torch.Tensor:
        calls.append(list(prompts))
        return encoder.encode(prompts)

    engine = SceneQuery(encode)
    first = engine.query(prediction, ["giraffe", "car"], prototypes, 4e-2)
    encoded = [p for call in calls for p in call]
    assert "car" not in encoded and encoded.count("giraffe") == 1 and engine.cached("giraffe")
    calls.clear()
    second = engine.query(prediction, ["giraffe"], prototypes, 4e-2)
    assert calls == []
    assert torch.equal(first[0].relevance, second[0].relevance)


def test_prompts_that_cannot_be_encoded_raise_prompt_error() -> None:
    prediction, prototypes, _ = street_prediction()
    without_encoder = SceneQuery(None)
    answer = without_encoder.query(prediction, ["car"], prototypes, 4e-2)[0]  # vocabulary prompts still work
    assert answer.clusters and "object" not in answer.background
    with pytest.raises(PromptError, match="'giraffe'.*no text encoder"):
        without_encoder.query(prediction, ["car", "giraffe"], prototypes, 4e-2)

    def absent_weights(prompts: list[str]) -> torch.Tensor:
        raise FileNotFoundError("text encoder weights not found: /models/clip")

    with pytest.raises(PromptError, match="'giraffe'.*weights not found") as caught:
        SceneQuery(absent_weights).query(prediction, ["giraffe"], prototypes, 4e-2)
    assert caught.value.prompt == "giraffe"
    with pytest.raises(PromptError, match="empty"):
        without_encoder.query(prediction, ["car", "  "], prototypes, 4e-2)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"threshold": 0.0}, "threshold"), ({"threshold": 1.0}, "threshold"), ({"max_clusters": -1}, "max_clusters")])
def test_bad_query_arguments_are_refused(kwargs: dict, match: str) -> None:
    prediction, prototypes, encoder = street_prediction()
    with pytest.raises(ValueError, match=match):
        SceneQuery(encoder.encode).query(prediction, ["car"], prototypes, 4e-2, **kwargs)
    with pytest.raises(ValueError, match="list of prompts"):
        SceneQuery(encoder.encode).query(prediction, "car", prototypes, 4e-2)
    with pytest.raises(ValueError, match="features"):
        SceneQuery(encoder.encode).query(prediction, ["car"], prototypes[:, :8], 4e-2)


def test_clusters_are_26_connected_components_ranked_by_relevance_mass() -> None:
    grid = VoxelGrid(range=(0.0, 0.0, 0.0, 4.0, 4.0, 4.0), size=1.0)
    relevance = torch.zeros(grid.dims)
    relevance[0, 0, 0], relevance[1, 1, 1] = 0.8, 0.6  # diagonal neighbours: one cluster
    relevance[3, 3, 3] = 0.9
    relevance[3, 0, 0] = 0.4  # below the threshold
    big, small = find_clusters(relevance, grid, 0.5)
    assert (big.voxel_count, small.voxel_count) == (2, 1)
    assert big.score == pytest.approx(1.4) and big.max_relevance == pytest.approx(0.8)
    expected = (0.8 * 0.5 + 0.6 * 1.5) / 1.4
    assert big.centroid == pytest.approx((expected,) * 3)
    assert big.extent == (2.0, 2.0, 2.0) and small.extent == (1.0, 1.0, 1.0)
    assert find_clusters(relevance, grid, 0.5, max_clusters=1) == [big]
    assert find_clusters(relevance, grid, 0.95) == []


def test_predictor_query_reuses_the_prediction_and_encodes_like_the_vocabulary(tmp_path) -> None:
    from tiny_world import synthetic_world, tiny_config, untrained_checkpoint

    from gausstr_core.cli.run_config import run_config
    from gausstr_core.data.nuscenes import NuScenesReader
    from gausstr_core.predict import OccupancyPredictor
    from gausstr_core.prediction_io import load_sample_views

    summary = synthetic_world(tmp_path, samples_per_scene=1)
    config = run_config(tiny_config(), str(summary.config_path), None, [])
    predictor = OccupancyPredictor.from_checkpoint(untrained_checkpoint(tmp_path / "tiny.pth", config), config=config)
    reader = NuScenesReader(config.data.dataroot, config.data.version, config.data.cameras)
    record = reader.sample_record(reader.scene_samples(reader.scene_names[0])[0])
    prediction = predictor.predict(load_sample_views(record, config.data))
    rows = predictor.encode_prompts(["car", "sky"])
    vocabulary = predictor.vocabulary.prompts
    expected = predictor.head.prototypes[[vocabulary.index("car"), vocabulary.index("sky")]]
    assert torch.allclose(rows, expected, atol=1e-6)

    predictor.model = None  # a query must not run the network
    answers = predictor.query(prediction, ["car", "giraffe"], threshold=0.6, max_clusters=2)
    assert [a.prompt for a in answers] == ["car", "giraffe"]
    assert all(a.relevance.shape == predictor.grid.dims and a.threshold == 0.6 for a in answers)
    assert all(len(a.clusters) <= 2 for a in answers)
    assert predictor.scene_query.cached("giraffe") and not predictor.scene_query.cached("car")

    # Text-encoder weights absent (offline): the vocabulary's prompts still answer, a new prompt names the gap.
    from gausstr_core.vocabulary import Prototypes

    offline = OccupancyPredictor(
        torch.nn.Identity(), config, text_encoder={"name": "clip", "model": "local-dir:/absent/clip"},  # never run
        vocabulary=prediction.vocabulary,
        prototypes=Prototypes(prediction.vocabulary, predictor.head.prototypes.cpu(), "test"),
    )
    assert offline.query(prediction, ["car"])[0].background[-1] == "sky"  # no canonical phrases without an encoder
    with pytest.raises(PromptError, match="'giraffe'.*/absent/clip"):
        offline.query(prediction, ["giraffe"])
