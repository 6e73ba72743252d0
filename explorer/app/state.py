"""The app's single source of truth. Views observe it; only the controller assigns to it, and
always assigns new values (never mutates in place) so observers fire. Every table a view
draws is computed by the controller and held here, so views only lay out what they find."""

from __future__ import annotations

import traitlets as t

from explorer.app.amplify_tab import AmplifySlice
from explorer.app.deciding import DecideSlice


class AppState(AmplifySlice, DecideSlice, t.HasTraits):
    # family
    preset = t.Unicode("fable")
    family = t.Any(None, allow_none=True)  # explorer.core.family.Family
    available = t.List(t.Unicode())  # descendants the loaded family offers
    selected = t.List(t.Unicode())  # descendants chosen for the run
    relations = t.Dict()  # label -> relation
    examples = t.List(t.Unicode())  # example prompts (the zoo's probes for fable)
    load_errors = t.Dict()  # label -> why it failed to load
    weights = t.Bool(True)  # every member's weights are at hand (gradient and attention methods)
    server = t.Unicode("")  # the server of a served family, for messages

    # prompt and sampling
    prompt = t.Unicode("the weather today is")
    chat = t.Unicode("auto")
    n = t.Int(16)
    temperature = t.Float(1.0)
    top_p = t.Float(1.0)
    top_k = t.Int(0)
    max_new_tokens = t.Int(24)
    seed = t.Int(0)
    fresh_seed = t.Bool(False)

    # results of a resample (explorer.core.analysis.Analysis, field by field)
    samples = t.Any(None, allow_none=True)  # SampleSet
    clusters = t.Any(None, allow_none=True)  # Series aligned with samples.df
    variability = t.Any(None, allow_none=True)  # DataFrame
    provenance = t.Any(None, allow_none=True)  # DataFrame
    cluster_counts = t.Any(None, allow_none=True)  # DataFrame
    first_tokens = t.Any(None, allow_none=True)  # DataFrame
    entropy = t.Any(None, allow_none=True)  # DataFrame
    cross = t.Any(None, allow_none=True)  # DataFrame
    log_ratio = t.Any(None, allow_none=True)  # DataFrame
    behaviours = t.Dict()  # name -> regex
    findings = t.Any(None, allow_none=True)  # DataFrame: one row per (behaviour, descendant)
    focus = t.Any(None, allow_none=True)  # (behaviour, model): the finding whose responses are shown
    focus_responses = t.Any(None, allow_none=True)  # DataFrame: the samples behind `focus`

    # attribution
    chosen = t.Any(None, allow_none=True)  # (model, sample) selected for attribution
    chosen_tokens = t.Any(None, allow_none=True)  # DataFrame: the chosen response token by token
    method = t.Unicode("grad_x_input")
    units = t.Unicode("auto")  # "auto" (words where tokens split words), "words" or "tokens"
    methods = t.List()  # (method, needs weights) in registration order
    attribution = t.Any(None, allow_none=True)  # Attribution
    attribution_diff = t.Any(None, allow_none=True)  # DataFrame: each model minus the base
    attribution_note = t.Unicode("")  # what the attribution shows, in a sentence
    attribution_spread = t.Any(None, allow_none=True)  # DataFrame (mean ± sd over samples)
    faithfulness = t.Any(None, allow_none=True)  # DataFrame: (model, method) measured on the chosen response
    agreement = t.Any(None, allow_none=True)  # DataFrame: each descendant against the base, beyond noise

    # inside the network (the Layers tab), for the chosen response
    layer_site = t.Unicode("block")  # what is patched: "block", "attention" or "mlp"
    inside = t.Any(None, allow_none=True)  # explorer.core.layers.inside.Inside
    # what each adaptation adds (activation differences) and steering the base with it
    diffs = t.Any(None, allow_none=True)  # explorer.core.layers.diffs.ActivationDiff
    diff_layer = t.Int(0)  # the block read and steered
    steer_model = t.Unicode("")  # the descendant whose difference steers
    steer_scale = t.Float(8.0)  # multiples of the difference added
    steer_n = t.Int(64)
    steer_behaviour = t.Unicode("")  # a regex; "" measures the run's behaviours
    steered = t.Any(None, allow_none=True)  # SampleSet: the base and the steered base
    steered_table = t.Any(None, allow_none=True)  # DataFrame: provenance of the steered base

    # Discover (the Discover tab): what each adaptation changed over a prompt set
    discover_set = t.Unicode("auto")  # "auto", "probes", "general", or a file / sweep folder path
    discover_n = t.Int(8)  # discovery samples per model and prompt
    discover_confirm = t.Int(128)  # fresh samples per model of each prompt with candidates (0: none)
    discovery = t.Any(None, allow_none=True)  # explorer.core.discover.Discovery
    discover_word = t.Any(None, allow_none=True)  # (model, word) whose contexts are shown
    auto_behaviours = t.Dict()  # name -> regex: behaviours mined for this run (answers that rarely repeat)

    sweep = t.Any(None, allow_none=True)  # a sweep folder read back (dict of DataFrames)
    sweep_summary = t.Any(None, allow_none=True)  # DataFrame: labels across the prompt set
    downloads = t.List()  # explorer.core.export.Download, prepared on request

    # asking before long work
    confirm = t.Unicode("")  # the question ("Attribution ≈ 40 s on this machine — Run or Cancel?")
    confirm_after = t.Float(10.0)  # seconds of estimated work above which the app asks first

    replay = t.Bool(False)  # showing a saved session without its models (read-only)

    # status
    running = t.Unicode("")  # name of the task in flight, "" when idle
    progress = t.Dict()  # model -> fraction done
    status = t.Unicode("")
    error = t.Unicode("")
