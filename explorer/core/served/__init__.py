"""Members served by an inference engine (vLLM) through its OpenAI-compatible HTTP API.

One engine serves the base model and its LoRA descendants by name, so a workshop room loads the
model once and a 7B family runs on a GPU machine while the explorer runs anywhere. Through the
API the explorer gets sampling (n, seeds, per-token log-probs and top-k alternatives) and
teacher-forced scoring (`echo` with `max_tokens=0`), which is enough for variability,
provenance, cross-scoring and occlusion attribution. Gradient and attention methods need the
weights and say so.

`backend`: the HTTP client; `member`: the `ServedMember` (the member protocol over the API).
"""
