"""`reward.process`: defaults, and values checked by key."""

import pytest

from rlhf.cli.main import RECIPES_DIR
from rlhf.config.errors import ConfigError
from rlhf.config.loader import load_recipe


def test_defaults():
    process = load_recipe(RECIPES_DIR / "quickstart.yaml").reward.process
    assert (process.refine, process.eta, process.alpha) == ("clip_delta", 0.5, 1.0)


@pytest.mark.parametrize(("override", "message"), [
    ("reward.process.refine=clipdelta", "reward.process.refine: unknown value 'clipdelta' (did you mean 'clip_delta'?"),
    ("reward.process.alpha=-0.5", "reward.process.alpha: must be >= 0, got -0.5"),
    ("reward.process.eta=.inf", "reward.process.eta: expected a float"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        load_recipe(RECIPES_DIR / "quickstart.yaml", [override])
