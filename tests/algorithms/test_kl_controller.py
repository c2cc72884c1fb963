"""KL penalty coefficient controllers (Ziegler et al. 2019, sec. 2.2)."""

import json

import pytest

from rlhf.algorithms.kl import AdaptiveKLController, FixedKLController

# β = 0.1, target 6, horizon 10000, 256 samples per update: gain n_steps / horizon = 0.0256


def adaptive():
    return AdaptiveKLController(init_coef=0.1, target=6.0, horizon=10000)


@pytest.mark.parametrize(
    ("kl", "expected"),
    [
        (6.6, 0.1 * (1 + 0.1 * 0.0256)),  # error 6.6/6 - 1 = 0.1: β rises
        (5.4, 0.1 * (1 - 0.1 * 0.0256)),  # error -0.1: β falls
        (6.0, 0.1),  # on target: unchanged
        (9.0, 0.1 * (1 + 0.2 * 0.0256)),  # error 0.5, clipped to 0.2
        (60.0, 0.1 * (1 + 0.2 * 0.0256)),  # error 9, clipped to 0.2
        (3.0, 0.1 * (1 - 0.2 * 0.0256)),  # error -0.5, clipped to -0.2
        (0.0, 0.1 * (1 - 0.2 * 0.0256)),  # error -1, clipped to -0.2
    ],
)
def test_adaptive_update_by_hand(kl, expected):
    controller = adaptive()
    controller.update(kl, n_steps=256)
    assert controller.value == pytest.approx(expected, rel=1e-12)


def test_adaptive_gain_scales_with_steps():
    # n_steps = horizon: one full horizon moves β by the whole clipped error, here +20%
    controller = adaptive()
    controller.update(100.0, n_steps=10000)
    assert controller.value == pytest.approx(0.12)


def test_adaptive_tracks_the_target_over_many_updates():
    controller = adaptive()
    for _ in range(50):
        controller.update(12.0, n_steps=1000)
    high = controller.value
    for _ in range(100):
        controller.update(1.0, n_steps=1000)
    assert high > 0.1 > controller.value


@pytest.mark.parametrize(("target", "horizon"), [(0.0, 10.0), (-1.0, 10.0), (1.0, 0.0)])
def test_adaptive_rejects_bad_settings(target, horizon):
    with pytest.raises(ValueError, match="adaptive KL controller"):
        AdaptiveKLController(0.1, target, horizon)


def test_adaptive_state_dict_round_trip_is_exact():
    controller = adaptive()
    for kl in (7.1, 2.3, 6.4):
        controller.update(kl, n_steps=512)
    state = json.loads(json.dumps(controller.state_dict()))  # plain floats, checkpoint-safe
    restored = adaptive()
    restored.load_state_dict(state)
    assert restored.value == controller.value
    controller.update(8.0, n_steps=128)
    restored.update(8.0, n_steps=128)
    assert restored.value == controller.value


def test_fixed_never_changes_and_round_trips():
    controller = FixedKLController(0.05)
    for kl in (0.0, 1e6, 3.0):
        controller.update(kl, n_steps=1000)
    assert controller.value == 0.05
    restored = FixedKLController(1.0)
    restored.load_state_dict(controller.state_dict())
    assert restored.value == 0.05
