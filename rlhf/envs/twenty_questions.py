"""`twenty_questions`: identify a hidden object by asking yes/no questions about it.

A rule-based version of the Twenty Questions benchmark of ArCHer (Zhou et al. 2024, "ArCHer:
Training Language Model Agents via Hierarchical Multi-Turn RL"), where an LLM oracle answers
free-form questions. Here the oracle is a fixed catalogue (`rlhf/envs/data/twenty_questions.json`,
or a file of the same shape named by env.kwargs `catalogue`): objects × yes/no attributes.
Information-seeking is what it tests, as in the paper: good questions halve the candidates.

Rules (one episode):
- The row's `ground_truth` is the hidden object's name; `reset` returns ''.
- An action holds "is it <word>?" or "it is <word>" (anywhere in its text, case, articles and
  punctuation ignored: "Is it a cat?" and "it is cat." both work). When <word> is an
  attribute the answer is "yes" or "no" (reward 0). When it is an object the action is a
  guess: right, the observation is "yes", reward 1.0, the episode ends with
  `info["success"] = True`; wrong, "no", reward 0, and the episode goes on (as in ArCHer,
  where a wrong guess is just a question answered no).
- Anything else is an invalid move: the observation names the two forms, reward 0, and the
  turn is used (`info["invalid"] = True`).
- Every step but the winning one has `info["success"] = False`.

With the built-in catalogue (16 objects whose attributes alive, big, flying and wet are
independent halvings) optimal play asks 4 questions and then guesses: 5 turns. `demo_action`
plays legal but unskilled moves (see :meth:`TwentyQuestions.demo_action`).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rlhf.envs.base import Step

INVALID = "ask: is it <attribute>? or guess: it is <object>"
ASK_PROBABILITY = 0.5
"""How often `demo_action` asks a question (when any is left), rather than guessing, by default."""
_MOVE = re.compile(r"\b(?:is it|it is)\s+(?:(?:a|an|the)\s+)?([a-z]+)")
_NAME = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Catalogue:
    """The objects and the attributes each one has (every other attribute is 'no')."""

    attributes: tuple[str, ...]
    objects: dict[str, frozenset[str]]


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The catalogue in `path` (None: the built-in one), checked: names are lowercase words,
    unique, and no object is also an attribute; ValueError naming the file otherwise."""
    if path is None:
        text = resources.files("rlhf.envs").joinpath("data", "twenty_questions.json").read_text()
        where = "the built-in twenty_questions catalogue"
    else:
        text, where = Path(path).expanduser().read_text(), f"twenty_questions catalogue {path}"
    try:
        data = json.loads(text)
        attributes, objects = tuple(data["attributes"]), {name: frozenset(has) for name, has in data["objects"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{where} must be JSON {{\"attributes\": [...], \"objects\": {{name: [attribute, ...]}}}}: {error}") from None
    bad = sorted(name for name in (*attributes, *objects) if not isinstance(name, str) or not _NAME.fullmatch(name))
    if bad or len(set(attributes)) != len(attributes) or set(attributes) & set(objects) or not objects:
        raise ValueError(f"{where}: names must be unique lowercase words (a-z), objects distinct from attributes, "
                         f"and there must be objects (bad names: {bad or 'none'})")
    unknown = sorted({a for has in objects.values() for a in has} - set(attributes))
    if unknown:
        raise ValueError(f"{where}: objects use attributes not in its 'attributes' list: {unknown}")
    return Catalogue(attributes, objects)


def parse_move(action: str) -> str | None:
    """The word asked about or guessed in `action` ('cat' in "Is it a cat?"), None if none."""
    match = _MOVE.search(action.lower())
    return match.group(1) if match else None


class TwentyQuestions:
    """One episode of twenty_questions (see the module docstring). Implements Environment and
    Demonstrator.

    Args:
        catalogue: path of a catalogue JSON file; None: the built-in one.
        invalid_observation: the answer to an action that is neither a question nor a guess
            (the default names both forms; a tiny model's recipe uses a short one, which
            leaves its small context to the game).
        demo_ask_probability: how often `demo_action` asks (while a question can still split
            the candidates) rather than guessing. 1.0: ask until one object is left, then
            name it; the demonstrations then never guess blindly, and what they lack is only
            the choice of questions (a tiny model imitating them learns to use the answers,
            and RL has only the information-seeking left to learn).
    """

    def __init__(self, catalogue: str | None = None, invalid_observation: str = INVALID,
                 demo_ask_probability: float = ASK_PROBABILITY):
        if isinstance(demo_ask_probability, bool) or not isinstance(demo_ask_probability, (int, float)) \
                or not 0.0 <= demo_ask_probability <= 1.0:
            raise ValueError(f"twenty_questions: demo_ask_probability must be a number in [0, 1], got {demo_ask_probability!r}")
        self.catalogue = load_catalogue(catalogue)
        self.invalid_observation = invalid_observation
        self.demo_ask_probability = float(demo_ask_probability)
        self.target = ""
        self.answers: dict[str, bool] = {}
        self.wrong_guesses: set[str] = set()

    def reset(self, row: dict) -> str:
        target = str(row.get("ground_truth", "")).strip().lower()
        if target not in self.catalogue.objects:
            raise ValueError(f"twenty_questions: the row's ground_truth {row.get('ground_truth')!r} is not an object of "
                             f"the catalogue ({', '.join(self.catalogue.objects)})")
        self.target, self.answers, self.wrong_guesses = target, {}, set()
        return ""

    def step(self, action: str) -> Step:
        word = parse_move(action)
        if word in self.catalogue.attributes:
            has = word in self.catalogue.objects[self.target]
            self.answers[word] = has
            return Step("yes" if has else "no", 0.0, False, {"success": False})
        if word in self.catalogue.objects:
            if word == self.target:
                return Step("yes", 1.0, True, {"success": True})
            self.wrong_guesses.add(word)
            return Step("no", 0.0, False, {"success": False})
        return Step(self.invalid_observation, 0.0, False, {"success": False, "invalid": True})

    def candidates(self) -> list[str]:
        """Objects consistent with every answer so far (in catalogue order)."""
        return [name for name, has in self.catalogue.objects.items() if name not in self.wrong_guesses
                and all((attribute in has) == answer for attribute, answer in self.answers.items())]

    def demo_action(self, rng: random.Random) -> str:
        """A legal move: with probability `demo_ask_probability` a question about an attribute that
        splits the objects still consistent with the answers ('is it big?'), else a guess among
        them ('it is cat'); the guess when only one is left. Never a move the answers so far
        make useless, yet no skill at choosing questions (a question that splits 1 of 9 off is
        as likely as a halving one): success is non-zero but improvable."""
        candidates = self.candidates()
        objects = self.catalogue.objects
        splitting = [a for a in self.catalogue.attributes if 0 < sum(a in objects[c] for c in candidates) < len(candidates)]
        if splitting and rng.random() < self.demo_ask_probability:
            return f"is it {rng.choice(splitting)}?"
        return f"it is {rng.choice(candidates)}"
