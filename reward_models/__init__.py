"""Outcome and process reward models: their training (`rlhf rm RECIPE`).

    config.py      the recipe schema and its checks
    synthetic.py   pairs, labelled responses and step-labelled solutions from the addition task
    data.py        jsonl formats, held-out splits, the token layout of ORM and PRM inputs
    checkpoint.py  the network to train and the checkpoint format the RL loop serves
    train.py       Bradley–Terry (TRL RewardTrainer), BCE and PRM training (transformers Trainer)
    evaluate.py    held-out accuracy per kind
    run.py         the recipe runner behind `rlhf rm`

Importing this package imports nothing heavy; the RL loop's scorers are `rlhf.rewards.orm` and
`rlhf.rewards.prm`.
"""
