"""Character-level tokenizer over printable ASCII, for offline tiny models.

Every printable character is its own token, so ``decode(encode(s)) == s`` for any printable
string (spaces and newlines included). It is built with the ``tokenizers`` library (a BPE model
with no merges, so text splits into single characters) and wrapped as a Hugging Face fast
tokenizer: ``save_pretrained`` then ``AutoTokenizer.from_pretrained`` gives it back unchanged,
with no network access.

Ids are stable: the special tokens come first, in ``SPECIAL_TOKENS`` order (``<pad>`` is 0,
``</s>`` 1, ``<s>`` 2), then the characters in ``string.printable`` order.
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
EOS_TOKEN = "</s>"
BOS_TOKEN = "<s>"
UNK_TOKEN = "<unk>"
CHAT_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, BOS_TOKEN, UNK_TOKEN, *CHAT_MARKERS)

# Tab, carriage return and the vertical/form feeds are left out: prompts never need them, and
# keeping '\r' out spares us newline-normalisation surprises in round trips.
CHARACTERS = tuple(c for c in string.printable if c not in "\t\r\x0b\x0c")

# One message per marker block; the system message is optional. Each message ends with
# <|end|>; the generation prompt opens an assistant turn for the policy to complete.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<|system|>{{ message['content'] }}<|end|>"
    "{% elif message['role'] == 'user' %}<|user|>{{ message['content'] }}<|end|>"
    "{% elif message['role'] == 'assistant' %}<|assistant|>{{ message['content'] }}<|end|>"
    "{% else %}{{ raise_exception('unknown chat role: ' + message['role']"
    " + \"; valid roles: system, user, assistant\") }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _char_vocab() -> dict[str, int]:
    """Token -> id: the special tokens first, then one entry per printable character."""
    return {token: token_id for token_id, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """Build the character-level tokenizer (vocabulary of 104 tokens).

    Returns:
        A fast tokenizer with ``<pad>`` (id 0) as pad token, ``</s>`` as EOS, ``<s>`` as BOS
        (never added automatically: ``tok("07+45=")["input_ids"]`` is the 6 character ids),
        ``<unk>`` for characters outside the vocabulary, the chat markers as special tokens,
        a chat template and left padding (prompts are left-padded for generation).
    """
    backend = Tokenizer(models.BPE(vocab=_char_vocab(), merges=[], unk_token=UNK_TOKEN))
    # Registering them as special makes each marker match whole in text and decode as one
    # piece; their ids already exist in the vocabulary, so no new ids are appended.
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    backend.decoder = decoders.Fuse()  # concatenate characters exactly, no spaces inserted
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        unk_token=UNK_TOKEN,
        additional_special_tokens=list(CHAT_MARKERS),
        padding_side="left",
        model_max_length=4096,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
