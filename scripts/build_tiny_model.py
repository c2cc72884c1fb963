"""Build a tiny random Llama checkpoint with the char tokenizer, for offline tests and demos.

Example (from the repository root; ``PYTHONPATH=.`` is not needed once the package is installed):
    HF_HUB_OFFLINE=1 PYTHONPATH=. python scripts/build_tiny_model.py --out checkpoints/tiny

The result loads with ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` like any Hugging Face model.
"""

from __future__ import annotations

import argparse
import inspect

from transformers import AutoModelForCausalLM

from rlhf.models.tiny import build_tiny_model, count_parameters


# One line of help per option of build_tiny_model; its signature holds the defaults.
OPTION_HELP = {
    "hidden_size": "residual stream width",
    "num_layers": "number of decoder layers",
    "num_heads": "number of attention heads",
    "intermediate_size": "feed-forward layer width",
    "max_position_embeddings": "longest sequence length",
    "seed": "seed of the random initialisation",
}


def parse_args() -> argparse.Namespace:
    """Command-line options, with the defaults read from ``build_tiny_model``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory to write the model to")
    defaults = inspect.signature(build_tiny_model).parameters
    for name, help_text in OPTION_HELP.items():
        default = defaults[name].default
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=default,
            help=f"{help_text} (default: {default})",
        )
    return parser.parse_args()


def main() -> None:
    """Build the model, reload it to count parameters, print the count and the path."""
    args = parse_args()
    out_dir = build_tiny_model(
        args.out,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        intermediate_size=args.intermediate_size,
        max_position_embeddings=args.max_position_embeddings,
        seed=args.seed,
    )
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    print(f"parameters: {count_parameters(model):,}")
    print(f"path: {out_dir.resolve()}")


if __name__ == "__main__":
    main()
