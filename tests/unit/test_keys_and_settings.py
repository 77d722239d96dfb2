import pytest

from recommender.errors import ConfigurationError
from recommender.settings import Settings
from recommender.store import keys
from recommender.types import Interaction
from recommender.weights import event_weight


def test_pseudonym_is_stable_keyed_and_hides_the_id():
    a = keys.pseudonymize(b"secret-one-123456", "alice@example.com")
    assert a == keys.pseudonymize(b"secret-one-123456", "alice@example.com")
    assert a != keys.pseudonymize(b"secret-two-123456", "alice@example.com")
    assert "alice" not in a and len(a) == 32
    assert "alice" not in keys.user_items(a)


def test_missing_or_short_secret_fails_at_start_up():
    with pytest.raises(ConfigurationError, match="PSEUDONYM_KEY"):
        Settings().require_secrets()
    with pytest.raises(ConfigurationError):
        Settings(pseudonym_key="short").require_secrets()


def test_running_one_part_alone_needs_both_urls():
    with pytest.raises(ConfigurationError, match="KAFKA_URL"):
        Settings(redis_url="redis://x").require_infrastructure()


def test_event_weights_must_cover_every_type():
    with pytest.raises(ValueError, match="event_weights"):
        Settings(event_weights={"view": 1.0})


def test_event_weights_are_bounded_and_ratings_clamped_to_the_scale():
    """On main a weight of 1e300 was taken (every sum it touched became infinite), and a
    rating of 1e9 stars on a 5-star scale weighed 200 million purchases."""
    with pytest.raises(ValueError, match="from 0 to 1000"):
        Settings(event_weights={**Settings().event_weights, "rating": 1e300})
    w = Settings().event_weights
    huge = Interaction("e", "u", "i", "rating", 1, value=1e9)
    assert event_weight(huge, w, 5.0) == w["rating"]


def test_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAMREC_TOPIC_EVENTS", "clicks")
    monkeypatch.setenv(
        "STREAMREC_EVENT_WEIGHTS",
        '{"view":1,"click":3,"cart":4,"purchase":8,"rating":5,"review":3}',
    )
    s = Settings()
    assert s.topic_events == "clicks"
    assert s.event_weights["click"] == 3


def test_rating_scales_its_weight_and_other_types_ignore_value():
    w = Settings().event_weights
    rating = Interaction("e", "u", "i", "rating", 1, value=2.5)
    click = Interaction("e", "u", "i", "click", 1, value=100.0)
    assert event_weight(rating, w, 5.0) == pytest.approx(w["rating"] * 0.5)
    assert event_weight(click, w, 5.0) == w["click"]


def test_settings_survive_the_trip_to_a_child_process(monkeypatch: pytest.MonkeyPatch):
    original = Settings(
        topic_events="clicks",
        pseudonym_key="x" * 20,
        kafka_url="kafka://h:1",
        event_weights={**Settings().event_weights, "view": 0.5},
    )
    for name, value in original.as_env().items():
        monkeypatch.setenv(name, value)
    assert Settings() == original
