"""Build a tiny random Llama (or Qwen2) checkpoint with the char tokenizer, for offline tests and demos.

Example (from the repository root; ``PYTHONPATH=.`` is not needed once the package is installed):
    HF_HUB_OFFLINE=1 PYTHONPATH=. python scripts/build_tiny_model.py --out checkpoints/tiny

A random model of a real shape, e.g. Qwen2.5-0.5B's with its 151,936-token vocabulary:
    python scripts/build_tiny_model.py --out checkpoints/qwen-shape --model-type qwen2 \\
        --hidden-size 896 --num-layers 24 --num-heads 14 --num-key-value-heads 2 \\
        --intermediate-size 4864 --vocab-size 151936 --max-position-embeddings 4096

The result loads with ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` like any Hugging Face model.
"""

from __future__ import annotations

import argparse
import inspect

from transformers import AutoModelForCausalLM

from rlhf.models.tiny import MODEL_TYPES, build_tiny_model, count_parameters


# One line of help per integer option of build_tiny_model; its signature holds the defaults.
OPTION_HELP = {
    "hidden_size": "residual stream width",
    "num_layers": "number of decoder layers",
    "num_heads": "number of attention heads",
    "num_key_value_heads": "key/value heads (grouped-query attention; None: as many as --num-heads)",
    "intermediate_size": "feed-forward layer width",
    "max_position_embeddings": "longest sequence length",
    "vocab_size": "rows of the embedding and LM head (None: the tokenizer's 104; more pads them)",
    "seed": "seed of the random initialisation",
}


def parse_args() -> argparse.Namespace:
    """Command-line options, with the defaults read from ``build_tiny_model``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory to write the model to")
    defaults = inspect.signature(build_tiny_model).parameters
    parser.add_argument("--model-type", choices=tuple(MODEL_TYPES), default=defaults["model_type"].default,
                        help=f"architecture (default: {defaults['model_type'].default})")
    for name, help_text in OPTION_HELP.items():
        default = defaults[name].default
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=default,
            help=f"{help_text} (default: {default})",
        )
    parser.add_argument("--untied", action="store_true", help="an LM head of its own instead of the input embedding's weights")
    return parser.parse_args()


def main() -> None:
    """Build the model, reload it to count parameters, print the count and the path."""
    args = parse_args()
    out_dir = build_tiny_model(
        args.out,
        model_type=args.model_type,
        tie_word_embeddings=not args.untied,
        **{name: getattr(args, name) for name in OPTION_HELP},
    )
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    print(f"parameters: {count_parameters(model):,}")
    print(f"path: {out_dir.resolve()}")


if __name__ == "__main__":
    main()
