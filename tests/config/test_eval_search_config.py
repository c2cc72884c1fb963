"""The recipe section eval.search: the step beam's width is a whole number or a list of them
(a point of the scaling curve per width), checked with the key and the bad value named."""

import pytest

from rlhf.config.errors import ConfigError
from rlhf.config.loader import load_recipe, save_resolved
from rlhf.config.search_schema import beam_widths
from rlhf.controller.preflight import load_checked_recipe

MODEL = "model.path=org/some-model"


def test_a_single_width_stays_a_number():
    search = load_checked_recipe(None, [MODEL]).eval.search
    assert search.beam_width == 4 and beam_widths(search.beam_width) == (4,)
    search = load_checked_recipe(None, [MODEL, "eval.search.beam_width=2"]).eval.search
    assert search.beam_width == 2 and beam_widths(search.beam_width) == (2,)


def test_a_list_of_widths_is_the_line_sorted_once_each(tmp_path):
    config = load_checked_recipe(None, [MODEL, "eval.search.beam_width=[4, 1, 2, 1]"])
    assert config.eval.search.beam_width == [4, 1, 2, 1] and beam_widths(config.eval.search.beam_width) == (1, 2, 4)
    saved = save_resolved(config, tmp_path / "config.yaml")  # the resolved recipe reads back the same
    assert load_recipe(saved).eval.search.beam_width == [4, 1, 2, 1]


@pytest.mark.parametrize(("value", "message"), [
    ("0", "eval.search.beam_width: must be >= 1, got 0"),
    ("[1, 0]", "eval.search.beam_width: must be >= 1, got 0 in [1, 0]"),
    ("[]", "eval.search.beam_width: needs at least one width, got []"),
    ("a", "eval.search.beam_width: expected an integer or a list of integers, got 'a'"),
    ("1.5", "eval.search.beam_width: expected an integer or a list of integers, got 1.5"),
    ("true", "eval.search.beam_width: expected an integer or a list of integers, got True"),
    ("[2, [1]]", "eval.search.beam_width.1: expected an integer, got [1]"),
    ("{w: 1}", "eval.search.beam_width: expected an integer or a list of integers, got {'w': 1}"),
    ("null", "eval.search.beam_width: expected an integer or a list of integers, got None"),
])
def test_bad_widths_name_the_key_and_the_value(value, message):
    with pytest.raises(ConfigError) as info:
        load_checked_recipe(None, [MODEL, f"eval.search.beam_width={value}"])
    assert message in str(info.value)
